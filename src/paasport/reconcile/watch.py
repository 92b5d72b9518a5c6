"""Watches a soa-configs tree and reports which services' files changed (inotify via ctypes).

The desired-state store's watcher thread (reconcile/store.py) calls ``TreeWatcher.changes(timeout)``
in a loop and reloads only the services it names. A service is named only once its files are
stable: a file written but not closed holds it back, and any further event restarts a quiet period
(``quiet_seconds``), so a half-written save is never read; deployments.json alone (paasport's own
atomic renames) waits only ``settle_seconds``. Without inotify (another OS, exhausted watches) it
compares the (mtime, size) of the tree's files once a second, stat calls only, with the same rule:
a service is named once its files have not changed for ``quiet_seconds``.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os
import select
import struct
import time
from dataclasses import dataclass
from pathlib import Path

log = logging.getLogger("paasport.reconcile.watch")

IN_MODIFY = 0x00000002
IN_CLOSE_WRITE = 0x00000008
IN_MOVED_FROM = 0x00000040
IN_MOVED_TO = 0x00000080
IN_CREATE = 0x00000100
IN_DELETE = 0x00000200
IN_DELETE_SELF = 0x00000400
IN_MOVE_SELF = 0x00000800
IN_IGNORED = 0x00008000
IN_ISDIR = 0x40000000
IN_NONBLOCK = 0o4000
IN_CLOEXEC = 0o2000000

_DIR_MASK = IN_CLOSE_WRITE | IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_MODIFY
_ROOT_MASK = IN_MOVED_FROM | IN_MOVED_TO | IN_CREATE | IN_DELETE | IN_DELETE_SELF | IN_MOVE_SELF
_HEADER = struct.Struct("iIII")
Stamp = tuple[int, int]  # a file's (mtime in ns, size), for the fallback without inotify


@dataclass(frozen=True)
class Change:
    """One service whose folder changed; ``only_deployments``: nothing but deployments.json."""

    service: str
    only_deployments: bool


def _is_service_dir(path: Path) -> bool:
    return path.is_dir() and not path.name.startswith(".")


class TreeWatcher:
    """Reports changed services of ``soa_dir`` once their files are stable (debounced)."""

    def __init__(
        self,
        soa_dir: Path,
        settle_seconds: float = 0.01,
        quiet_seconds: float = 0.4,
        max_open_seconds: float = 5.0,
        *,
        inotify: bool = True,
        poll_seconds: float = 1.0,
    ) -> None:
        self.soa_dir = soa_dir
        self.settle_seconds = settle_seconds  # deployments.json only: atomic renames
        self.quiet_seconds = quiet_seconds  # any other file: no event for this long
        self.max_open_seconds = max_open_seconds  # a file held open for writing longer is read
        self.poll_seconds = poll_seconds  # without inotify: seconds between two scans
        # service -> (only deployments.json, due); service -> file -> first unclosed write
        self._pending: dict[str, tuple[bool, float]] = {}
        self._open: dict[str, dict[str, float]] = {}
        self._fd: int | None = None
        self._wd_to_service: dict[int, str] = {}
        self._root_wd = -1
        self._stamps: dict[str, dict[str, Stamp]] = {}  # without inotify: the last scan
        self._scanned_at = 0.0
        self._libc: ctypes.CDLL | None = None
        try:
            if not inotify:
                raise OSError("not asked for")
            self._start_inotify()
        except OSError as err:
            log.warning(
                "inotify unavailable (%s): watching %s by mtime and size every %gs",
                err,
                soa_dir,
                poll_seconds,
            )
            self.close()
            self._stamps, self._scanned_at = self._scan(), time.monotonic()

    @property
    def uses_inotify(self) -> bool:
        return self._fd is not None

    def close(self) -> None:
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None

    def _start_inotify(self) -> None:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6", use_errno=True)
        fd = libc.inotify_init1(IN_NONBLOCK | IN_CLOEXEC)
        if fd < 0:
            raise OSError(ctypes.get_errno(), os.strerror(ctypes.get_errno()))
        self._libc = libc
        self._fd = fd
        self._root_wd = self._add_watch(self.soa_dir, _ROOT_MASK)
        if self.soa_dir.is_dir():
            for child in self.soa_dir.iterdir():
                if _is_service_dir(child):
                    self._watch_service(child.name)

    def _add_watch(self, path: Path, mask: int) -> int:
        assert self._libc is not None and self._fd is not None
        wd = int(self._libc.inotify_add_watch(self._fd, os.fsencode(path), mask))
        if wd < 0:
            errno = ctypes.get_errno()
            raise OSError(errno, f"inotify_add_watch {path}: {os.strerror(errno)}")
        return wd

    def _watch_service(self, service: str) -> None:
        try:
            wd = self._add_watch(self.soa_dir / service, _DIR_MASK)
        except OSError as err:
            log.warning("cannot watch %s: %s", self.soa_dir / service, err)
            return
        self._wd_to_service[wd] = service

    def changes(self, timeout: float) -> list[Change]:
        """Block up to ``timeout`` seconds; return the services whose files changed and are
        stable now (a service still settling is returned by a later call)."""
        if self._fd is None:
            return self._poll_mtimes(timeout)
        deadline = time.monotonic() + timeout
        while True:
            now = time.monotonic()
            ready = self._ready(now)
            if ready:
                return ready
            wait = deadline - now
            if self._pending:
                wait = min(wait, min(due for _, due in self._pending.values()) - now)
            if wait <= 0 and now >= deadline:
                return []
            readable, _, _ = select.select([self._fd], [], [], max(wait, 0.001))
            if readable:
                self._drain_events()

    def _ready(self, now: float) -> list[Change]:
        out: list[Change] = []
        for service, (only, due) in sorted(self._pending.items()):
            if due > now:
                continue
            writing = self._open.get(service, {})
            if writing and now - min(writing.values()) < self.max_open_seconds:
                continue  # a file is still being written: its close-write restarts the wait
            del self._pending[service]
            self._open.pop(service, None)
            out.append(Change(service, only))
        return out

    def _touch(self, service: str, only: bool) -> None:
        was_only = self._pending.get(service, (True, 0.0))[0]
        only = was_only and only
        delay = self.settle_seconds if only else self.quiet_seconds
        self._pending[service] = (only, time.monotonic() + delay)

    def _drain_events(self) -> None:
        assert self._fd is not None
        while True:
            try:
                buf = os.read(self._fd, 64 * 1024)
            except BlockingIOError:
                return
            offset = 0
            while offset + _HEADER.size <= len(buf):
                wd, mask, _cookie, length = _HEADER.unpack_from(buf, offset)
                raw = buf[offset + _HEADER.size : offset + _HEADER.size + length]
                offset += _HEADER.size + length
                name = raw.rstrip(b"\0").decode(errors="replace")
                self._handle(wd, mask, name)

    def _handle(self, wd: int, mask: int, name: str) -> None:
        if wd == self._root_wd:
            if not name or name.startswith("."):
                return
            if mask & (IN_CREATE | IN_MOVED_TO) and (self.soa_dir / name).is_dir():
                self._watch_service(name)
            self._touch(name, False)
            return
        service = self._wd_to_service.get(wd)
        if service is None:
            return
        if mask & IN_IGNORED:
            del self._wd_to_service[wd]
            return
        if name.startswith(".") or name.endswith((".swp", "~", ".tmp")):
            return
        writing = self._open.setdefault(service, {})
        if mask & IN_MODIFY and not mask & IN_CLOSE_WRITE:
            writing.setdefault(name, time.monotonic())
        else:  # closed, renamed in or out, created, deleted: no write in flight for it
            writing.pop(name, None)
        self._touch(service, name == "deployments.json")

    def _scan(self) -> dict[str, dict[str, Stamp]]:
        out: dict[str, dict[str, Stamp]] = {}
        if not self.soa_dir.is_dir():
            return out
        for child in self.soa_dir.iterdir():
            if not _is_service_dir(child):
                continue
            files: dict[str, Stamp] = {}
            for f in child.iterdir():
                try:
                    st = f.stat()
                except OSError:
                    continue
                files[f.name] = (st.st_mtime_ns, st.st_size)
            out[child.name] = files
        return out

    def _poll_mtimes(self, timeout: float) -> list[Change]:
        """The fallback's ``changes``: a scan every ``poll_seconds``; a file whose (mtime, size)
        moved restarts its service's quiet period, as an inotify event does, and a service is
        ready only when a scan after its quiet period saw nothing move."""
        deadline = time.monotonic() + timeout
        while True:
            now = time.monotonic()
            if now - self._scanned_at >= self.poll_seconds:
                self._rescan(now)
            ready = self._ready(self._scanned_at)
            if ready or now >= deadline:
                return ready
            time.sleep(max(min(self._scanned_at + self.poll_seconds, deadline) - now, 0.001))

    def _rescan(self, now: float) -> None:
        new = self._scan()
        for service in sorted(set(new) | set(self._stamps)):
            before, after = self._stamps.get(service, {}), new.get(service, {})
            if before == after:
                continue
            changed = {n for n in set(before) | set(after) if before.get(n) != after.get(n)}
            self._touch(service, changed == {"deployments.json"})
        self._stamps, self._scanned_at = new, now
