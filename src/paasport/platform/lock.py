"""One reconciler per state dir and cluster: a non-blocking flock on ``deployd-<cluster>.lock``.

``platform.build.Platform`` takes it for ``paasport up`` and ``paasport deployd``; the second
process gets a ``LockHeld`` naming the PID that holds it.
"""

from __future__ import annotations

import fcntl
import os
from pathlib import Path

from paasport.errors import PaasportError


class LockHeld(PaasportError):
    """Another process already reconciles this state dir and cluster."""

    exit_code = 1


def lock_path(state_dir: Path, cluster: str) -> Path:
    return Path(state_dir) / f"deployd-{cluster}.lock"


class ReconcilerLock:
    """Held from ``acquire`` until ``release`` (or the process ends: the kernel drops it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> ReconcilerLock:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise LockHeld(
                f"another paasport (PID {holder}) already reconciles this cluster with state "
                f"dir {self.path.parent} (lock {self.path}); stop it first"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None


def acquire_reconciler_lock(state_dir: Path, cluster: str) -> ReconcilerLock:
    """Take the lock or raise ``LockHeld`` at once (never waits)."""
    return ReconcilerLock(lock_path(state_dir, cluster)).acquire()
