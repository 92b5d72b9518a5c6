"""The embedded registry (one host, the default): one SQLite file (WAL), safe across processes.

The agent, the drainer (inside the reconciler) and read commands open the same file; every route
change bumps the ``version`` row in the same transaction. Agents whose last ack is older than
``stale_after`` seconds are not live.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path

from paasport.config.state_files import private_dir, private_file
from paasport.discovery.registry import (
    AgentReport,
    Backend,
    DrainMark,
    Snapshot,
    apply_drains,
    plain_loads,
)
from paasport.errors import RegistryUnavailable

_SCHEMA = """
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value INTEGER NOT NULL);
INSERT OR IGNORE INTO meta (key, value) VALUES ('version', 0);
CREATE TABLE IF NOT EXISTS backends (
    namespace TEXT NOT NULL, task_id TEXT NOT NULL, host TEXT NOT NULL, port INTEGER NOT NULL,
    agent_id TEXT NOT NULL, state TEXT NOT NULL, weight INTEGER NOT NULL,
    registered_at REAL NOT NULL, share REAL NOT NULL DEFAULT 0,
    PRIMARY KEY (namespace, task_id));
CREATE TABLE IF NOT EXISTS drains (
    namespace TEXT NOT NULL, task_id TEXT NOT NULL, version INTEGER NOT NULL, since REAL NOT NULL,
    PRIMARY KEY (namespace, task_id));
CREATE TABLE IF NOT EXISTS acks (
    agent_id TEXT PRIMARY KEY, version INTEGER NOT NULL, time REAL NOT NULL,
    sessions TEXT NOT NULL, loads TEXT NOT NULL DEFAULT '{}');
"""


class SqliteRegistry:
    """Registry over one SQLite file; thread-safe (one connection behind a lock)."""

    def __init__(
        self, path: Path, stale_after: float = 10.0, clock: Callable[[], float] = time.time
    ) -> None:
        self.path = Path(path)
        self.stale_after = stale_after
        self._clock = clock
        self._lock = threading.Lock()
        try:
            private_file(private_dir(self.path.parent) / self.path.name)
            self._db = sqlite3.connect(
                str(self.path), timeout=10.0, isolation_level=None, check_same_thread=False
            )
            self._db.execute("PRAGMA journal_mode=WAL")
            self._db.execute("PRAGMA synchronous=NORMAL")
            self._db.executescript(_SCHEMA)
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(backends)")}
            if "share" not in columns:  # a registry file of an older paasport
                self._db.execute("ALTER TABLE backends ADD COLUMN share REAL NOT NULL DEFAULT 0")
            columns = {row[1] for row in self._db.execute("PRAGMA table_info(acks)")}
            if "loads" not in columns:
                self._db.execute("ALTER TABLE acks ADD COLUMN loads TEXT NOT NULL DEFAULT '{}'")
        except (sqlite3.Error, OSError) as err:
            raise RegistryUnavailable(f"registry {self.path}: {err}") from err

    @contextmanager
    def _tx(self, write: bool) -> Iterator[sqlite3.Connection]:
        with self._lock:
            try:
                self._db.execute("BEGIN IMMEDIATE" if write else "BEGIN")
                try:
                    yield self._db
                except BaseException:
                    self._db.execute("ROLLBACK")
                    raise
                self._db.execute("COMMIT")
            except sqlite3.Error as err:
                raise RegistryUnavailable(f"registry {self.path}: {err}") from err

    @staticmethod
    def _bump(db: sqlite3.Connection) -> int:
        db.execute("UPDATE meta SET value = value + 1 WHERE key = 'version'")
        return int(db.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()[0])

    def register(self, backend: Backend) -> None:
        with self._tx(write=True) as db:
            row = db.execute(
                "SELECT host, port, agent_id, state, weight, share FROM backends"
                " WHERE namespace = ? AND task_id = ?",
                backend.key,
            ).fetchone()
            route = (backend.host, backend.port, backend.agent_id, backend.state, backend.weight,
                     backend.share)  # fmt: skip
            if row is not None and tuple(row) == route:
                return
            db.execute(
                "INSERT OR REPLACE INTO backends (namespace, task_id, host, port, agent_id,"
                " state, weight, share, registered_at) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?)",
                (backend.namespace, backend.task_id, *route, backend.registered_at),
            )
            self._bump(db)

    def deregister(self, namespace: str, task_id: str) -> None:
        with self._tx(write=True) as db:
            cur = db.execute(
                "DELETE FROM backends WHERE namespace = ? AND task_id = ?", (namespace, task_id)
            )
            if cur.rowcount:
                self._bump(db)

    def set_draining(self, namespace: str, task_id: str, draining: bool, now: float) -> int:
        with self._tx(write=True) as db:
            key = (namespace, task_id)
            exists = db.execute(
                "SELECT 1 FROM drains WHERE namespace = ? AND task_id = ?", key
            ).fetchone()
            if draining and not exists:
                version = self._bump(db)
                db.execute("INSERT INTO drains VALUES (?, ?, ?, ?)", (*key, version, now))
            elif not draining and exists:
                db.execute("DELETE FROM drains WHERE namespace = ? AND task_id = ?", key)
                self._bump(db)
            return int(db.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()[0])

    def drain_marks(self) -> tuple[DrainMark, ...]:
        return self.snapshot().drains

    def backends(self, namespace: str | None = None) -> tuple[Backend, ...]:
        return tuple(
            b for b in self.snapshot().backends if namespace is None or b.namespace == namespace
        )

    def snapshot(self) -> Snapshot:
        with self._tx(write=False) as db:
            version = int(db.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()[0])
            rows = db.execute(
                "SELECT namespace, task_id, host, port, agent_id, state, weight, registered_at,"
                " share FROM backends"
            ).fetchall()
            drain_rows = db.execute(
                "SELECT namespace, task_id, version, since FROM drains ORDER BY namespace, task_id"
            ).fetchall()
        drains = tuple(DrainMark(str(n), str(t), int(v), float(s)) for n, t, v, s in drain_rows)
        backends = tuple(
            Backend(
                str(n),
                str(t),
                str(h),
                int(p),
                str(a),
                "drain" if s == "drain" else "up",
                int(w),
                float(r),
                float(sh),
            )
            for n, t, h, p, a, s, w, r, sh in rows
        )
        return Snapshot(version, apply_drains(backends, drains), drains)

    def version(self) -> int:
        with self._tx(write=False) as db:
            return int(db.execute("SELECT value FROM meta WHERE key = 'version'").fetchone()[0])

    def ack(
        self, agent_id: str, version: int, now: float, sessions: Mapping[str, int] | None = None,
        loads: Mapping[str, Mapping[str, float]] | None = None,
    ) -> None:  # fmt: skip
        with self._tx(write=True) as db:
            db.execute(
                "INSERT OR REPLACE INTO acks (agent_id, version, time, sessions, loads)"
                " VALUES (?, ?, ?, ?, ?)",
                (agent_id, version, now, json.dumps(dict(sessions or {}), sort_keys=True),
                 json.dumps(plain_loads(loads), sort_keys=True)),
            )  # fmt: skip

    def acks(self) -> Mapping[str, int]:
        return {a: r.version for a, r in self.reports().items()}

    def reports(self) -> Mapping[str, AgentReport]:
        oldest = self._clock() - self.stale_after
        with self._tx(write=False) as db:
            rows = db.execute(
                "SELECT agent_id, version, time, sessions, loads FROM acks WHERE time >= ?",
                (oldest,),
            ).fetchall()
        return {
            str(a): AgentReport(
                str(a),
                int(v),
                float(t),
                {k: int(n) for k, n in json.loads(s).items()},
                plain_loads(json.loads(loads or "{}")),
            )
            for a, v, t, s, loads in rows
        }

    def close(self) -> None:
        with self._lock:
            self._db.close()
