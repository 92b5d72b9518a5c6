"""Watches a soa-configs tree and reports which services' files changed (inotify via ctypes).

deployd's watcher thread calls ``TreeWatcher.changes(timeout)`` in a loop and reloads only the
services it names. Without inotify (another OS, exhausted watches) it falls back to comparing
the mtimes of the tree's files once a second: stat calls only, no file is re-read.
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


@dataclass(frozen=True)
class Change:
    """One service whose folder changed; ``only_deployments``: nothing but deployments.json."""

    service: str
    only_deployments: bool


def _is_service_dir(path: Path) -> bool:
    return path.is_dir() and not path.name.startswith(".")


class TreeWatcher:
    """Reports changed services of ``soa_dir``; coalesces bursts (editors write several times)."""

    def __init__(self, soa_dir: Path, settle_seconds: float = 0.01) -> None:
        self.soa_dir = soa_dir
        self.settle_seconds = settle_seconds
        self._fd: int | None = None
        self._wd_to_service: dict[int, str] = {}
        self._root_wd = -1
        self._mtimes: dict[str, dict[str, float]] = {}
        self._libc: ctypes.CDLL | None = None
        try:
            self._start_inotify()
        except OSError as err:
            log.warning(
                "inotify unavailable (%s): watching %s by mtime, once a second", err, soa_dir
            )
            self._fd = None
            self._mtimes = self._scan()

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
        """Block up to ``timeout`` seconds; return the services whose files changed meanwhile."""
        if self._fd is None:
            return self._poll_mtimes(timeout)
        ready, _, _ = select.select([self._fd], [], [], timeout)
        if not ready:
            return []
        found: dict[str, bool] = {}
        deadline = time.monotonic() + self.settle_seconds
        while True:
            self._drain_events(found)
            left = deadline - time.monotonic()
            if left <= 0:
                break
            ready, _, _ = select.select([self._fd], [], [], left)
            if not ready:
                break
        return [Change(svc, only) for svc, only in sorted(found.items())]

    def _drain_events(self, found: dict[str, bool]) -> None:
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
                self._handle(wd, mask, name, found)

    def _handle(self, wd: int, mask: int, name: str, found: dict[str, bool]) -> None:
        if wd == self._root_wd:
            if not name or name.startswith("."):
                return
            if mask & (IN_CREATE | IN_MOVED_TO) and (self.soa_dir / name).is_dir():
                self._watch_service(name)
            found[name] = False
            return
        service = self._wd_to_service.get(wd)
        if service is None:
            return
        if mask & IN_IGNORED:
            del self._wd_to_service[wd]
            return
        if name.startswith(".") or name.endswith((".swp", "~", ".tmp")):
            return
        only = name == "deployments.json"
        found[service] = found.get(service, True) and only

    def _scan(self) -> dict[str, dict[str, float]]:
        out: dict[str, dict[str, float]] = {}
        if not self.soa_dir.is_dir():
            return out
        for child in self.soa_dir.iterdir():
            if not _is_service_dir(child):
                continue
            files: dict[str, float] = {}
            for f in child.iterdir():
                try:
                    files[f.name] = f.stat().st_mtime
                except OSError:
                    continue
            out[child.name] = files
        return out

    def _poll_mtimes(self, timeout: float) -> list[Change]:
        time.sleep(min(timeout, 1.0))
        new = self._scan()
        changes: list[Change] = []
        for service in sorted(set(new) | set(self._mtimes)):
            before, after = self._mtimes.get(service), new.get(service)
            if before == after:
                continue
            changed = {
                n
                for n in set(before or {}) | set(after or {})
                if (before or {}).get(n) != (after or {}).get(n)
            }
            changes.append(Change(service, changed == {"deployments.json"}))
        self._mtimes = new
        return changes
