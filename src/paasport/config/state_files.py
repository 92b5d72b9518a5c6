"""Private state: folders paasport creates under the state dir are 0700, its files 0600.

The event log (monitoring.events), the SQLite registry and the HAProxy files
(discovery.sqlite_registry, discovery.haproxy) call these when they create or open their files;
existing folders and files from older versions are tightened on the way.
"""

from __future__ import annotations

import contextlib
import os
import stat
from collections.abc import Callable, Iterator
from pathlib import Path

DIR_MODE = 0o700
FILE_MODE = 0o600


def _may_tighten(path: Path) -> bool:
    """Only what this user owns, and never a shared folder (sticky, like /tmp) or the root."""
    try:
        info = path.stat()
    except OSError:
        return False
    shared = bool(info.st_mode & stat.S_ISVTX) or path.resolve() == Path("/")
    return info.st_uid == os.geteuid() and not shared


def private_dir(path: Path) -> Path:
    """Create ``path`` (and missing parents) and make the folder itself 0700."""
    path = Path(path)
    path.mkdir(parents=True, exist_ok=True, mode=DIR_MODE)
    if _may_tighten(path) and stat.S_IMODE(path.stat().st_mode) != DIR_MODE:
        path.chmod(DIR_MODE)
    return path


def private_file(path: Path) -> Path:
    """Create ``path`` empty if missing, and make it 0600 (SQLite gives its -wal/-shm files the
    mode of the database file, so this covers them once the database is private)."""
    path = Path(path)
    # Never open (and close) an existing file: closing any descriptor of a file drops every
    # POSIX lock this process holds on it, which breaks SQLite connections open on it.
    with contextlib.suppress(FileExistsError):
        os.close(os.open(path, os.O_CREAT | os.O_EXCL | os.O_WRONLY, FILE_MODE))
    for each in (path, path.with_name(path.name + "-wal"), path.with_name(path.name + "-shm")):
        if each.exists() and _may_tighten(each) and stat.S_IMODE(each.stat().st_mode) != FILE_MODE:
            each.chmod(FILE_MODE)
    return path


@contextlib.contextmanager
def exclusive_lock(path: Path, seconds: float, busy: Callable[[], Exception],
                   mode: int = FILE_MODE) -> Iterator[None]:  # fmt: skip
    """Hold an exclusive flock on ``path`` (made if missing), waited for at most ``seconds``;
    then ``busy()`` is raised. Closing the file releases it."""
    import fcntl
    import time

    fd = os.open(path, os.O_RDWR | os.O_CREAT, mode)
    try:
        deadline = time.monotonic() + seconds
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    raise busy() from None
                time.sleep(0.05)
        yield
    finally:
        os.close(fd)
