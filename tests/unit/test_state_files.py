"""State folders and files paasport creates are private: 0700 folders, 0600 files."""

from __future__ import annotations

import stat
from pathlib import Path

from paasport.config.state_files import private_dir, private_file
from paasport.discovery.sqlite_registry import SqliteRegistry
from paasport.monitoring.events import Event, EventLog


def mode(path: Path) -> int:
    return stat.S_IMODE(path.stat().st_mode)


def test_the_event_log_and_the_registry_are_private(tmp_path: Path) -> None:
    state = tmp_path / "state"
    with EventLog(state / "events.sqlite") as log:
        log.record(Event(time=1.0, level="info", kind="crash", message="DB_PASSWORD=***"))
        assert mode(state) == 0o700
        assert mode(state / "events.sqlite") == 0o600
        assert mode(state / "events.sqlite-wal") == 0o600
    registry = SqliteRegistry(state / "registry.sqlite")
    assert mode(state / "registry.sqlite") == 0o600
    registry.close()


def test_folders_and_files_left_open_by_older_versions_are_tightened(tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir(mode=0o755)
    state.chmod(0o755)
    (state / "events.sqlite").write_text("")
    (state / "events.sqlite").chmod(0o644)
    private_file(private_dir(state) / "events.sqlite")
    assert mode(state) == 0o700 and mode(state / "events.sqlite") == 0o600


def test_a_shared_sticky_folder_is_never_tightened(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o1777)
    private_dir(shared)
    assert mode(shared) == 0o1777


def test_tightening_an_open_database_keeps_its_locks(tmp_path: Path) -> None:
    """Closing any descriptor of a file drops this process's POSIX locks on it: private_file
    must not open an existing database, or a second EventLog/registry breaks the first."""
    import sqlite3
    import subprocess
    import sys

    path = tmp_path / "db.sqlite"
    holder = sqlite3.connect(path, isolation_level=None)
    holder.execute("CREATE TABLE t (x)")
    holder.execute("BEGIN EXCLUSIVE")
    private_file(path)
    probe = (
        "import sqlite3, sys\n"
        "c = sqlite3.connect(sys.argv[1], timeout=0.1)\n"
        "try:\n    c.execute('INSERT INTO t VALUES (1)'); c.commit(); print('wrote')\n"
        "except sqlite3.OperationalError:\n    print('locked')\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe, str(path)], capture_output=True, text=True, timeout=30
    )
    holder.execute("ROLLBACK")
    holder.close()
    assert out.stdout.strip() == "locked", out.stderr
