"""One proxy per port per host: a host-wide flock per proxy port, held by the HAProxyProcess.

``discovery.haproxy`` claims the ports of its listeners before it starts or reloads HAProxy; a
second agent (another state dir, another process) gets ProxyConflict naming the first one.
A "host" is a network namespace: the lock folder is keyed by it, so the lab's hosts (three
namespaces of one machine, one agent and HAProxy each, the same ports) do not refuse each other.
"""

from __future__ import annotations

import contextlib
import fcntl
import os
import tempfile
from collections.abc import Callable, Iterable
from pathlib import Path

from paasport.errors import PermanentError

DEFAULT_LOCK_DIR = Path("/run/paasport/proxy-ports")


def netns_folder(ns_inode: int | None) -> str:
    """The lock sub-folder of one network namespace (ports are per namespace). Pure."""
    return f"netns-{ns_inode}" if ns_inode is not None else "netns-unknown"


def current_netns() -> int | None:
    """The inode of this process's network namespace (None where /proc does not say)."""
    try:
        return os.stat("/proc/self/ns/net").st_ino
    except OSError:
        return None


def default_lock_dir() -> Path:
    """/run/paasport/proxy-ports/netns-<inode> where this user may create it (root), else a
    folder of this user's (SO_REUSEPORT only ever shares a port between processes of one user
    anyway); one folder per network namespace."""
    run = DEFAULT_LOCK_DIR.parent
    if os.access(run if run.exists() else run.parent, os.W_OK):
        base_dir = DEFAULT_LOCK_DIR
    else:
        base = os.environ.get("XDG_RUNTIME_DIR") or tempfile.gettempdir()
        base_dir = Path(base) / f"paasport-{os.geteuid()}" / "proxy-ports"
    return base_dir / netns_folder(current_netns())


class ProxyConflict(PermanentError):
    """Another paasport agent (or its HAProxy) already serves one of the proxy ports here."""


def owner_line(pid: int, workdir: Path) -> str:
    return f"{pid} {workdir}\n"


def parse_owner(text: str) -> tuple[int, Path] | None:
    """``pid workdir`` as written by ``owner_line``; None for an empty or foreign file. Pure."""
    pid, _, workdir = text.strip().partition(" ")
    if not pid.isdigit() or not workdir:
        return None
    return int(pid), Path(workdir)


def conflict_reason(
    port: int,
    workdir: Path,
    owner: tuple[int, Path] | None,
    lock_held: bool,
    my_pid: int,
    proxy_alive: Callable[[Path], int | None],
) -> str | None:
    """Whether claiming ``port`` for ``workdir`` must be refused, and why (one line). Pure apart
    from ``proxy_alive(workdir) -> master pid`` (the HAProxy of a workdir, if it runs)."""
    if owner is None:
        return None if not lock_held else f"proxy port {port} is locked by another process"
    pid, other = owner
    if lock_held:
        if pid == my_pid and other == workdir:
            return None  # this process, same files: a second object adopting the same proxy
        return (
            f"proxy port {port} is already served by the paasport agent pid {pid}"
            f" (HAProxy files in {other}); refusing to start a second HAProxy on it"
        )
    if other != workdir:
        master = proxy_alive(other)
        if master is not None:
            return (
                f"proxy port {port} is already served by HAProxy pid {master} of {other}"
                " (its agent is not running); stop it (`paasport down`) before starting another"
            )
    return None


class PortLocks:
    """The flocks this process holds on proxy ports (one file per port under ``lock_dir``)."""

    def __init__(self, lock_dir: Path, workdir: Path) -> None:
        self.lock_dir = Path(lock_dir)
        self.workdir = Path(workdir)
        self._held: dict[int, int] = {}  # port -> fd

    def hold(self, ports: Iterable[int], proxy_alive: Callable[[Path], int | None]) -> None:
        """Hold exactly ``ports``: claim the new ones (all or none), release the dropped ones."""
        wanted = set(ports)
        claimed: dict[int, int] = {}
        try:
            for port in sorted(wanted - set(self._held)):
                claimed[port] = self._claim(port, proxy_alive)
        except ProxyConflict:
            for fd in claimed.values():
                os.close(fd)
            raise
        self._held.update(claimed)
        for port in set(self._held) - wanted:
            os.close(self._held.pop(port))

    def release(self) -> None:
        for fd in self._held.values():
            os.close(fd)
        self._held = {}

    def _claim(self, port: int, proxy_alive: Callable[[Path], int | None]) -> int:
        try:
            self.lock_dir.mkdir(parents=True, exist_ok=True)
            fd = os.open(self.lock_dir / f"port-{port}.lock", os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as err:
            raise ProxyConflict(f"cannot lock proxy port {port} in {self.lock_dir}: {err}") from err
        try:
            held = False
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                held = True
            owner = parse_owner(os.pread(fd, 4096, 0).decode(errors="replace"))
            why = conflict_reason(port, self.workdir, owner, held, os.getpid(), proxy_alive)
            if why is not None:
                raise ProxyConflict(why)
            if not held:
                line = owner_line(os.getpid(), self.workdir).encode()
                os.ftruncate(fd, 0)
                os.pwrite(fd, line, 0)
        except BaseException:
            with contextlib.suppress(OSError):
                os.close(fd)
            raise
        return fd
