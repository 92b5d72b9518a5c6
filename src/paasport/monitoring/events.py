"""The event log: every bounce, crash, deploy, check result and alert, in one SQLite file.

The reconciler, the discovery agent, wait-for-deployment and the monitor ``record`` events;
``paasport events``, the API and the deploy-failed check ``query``/``follow`` them.
"""

from __future__ import annotations

import json
import sqlite3
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from enum import StrEnum
from pathlib import Path
from typing import Any, Literal, cast

from paasport.config.state_files import private_dir, private_file
from paasport.errors import PermanentError, UsageError

Level = Literal["debug", "info", "warning", "error", "critical"]
LEVELS: tuple[Level, ...] = ("debug", "info", "warning", "error", "critical")
_LEVEL_RANK: dict[str, int] = {name: rank for rank, name in enumerate(LEVELS)}

EVENTS_FILE = "events.sqlite"


class EventKind(StrEnum):
    """What an event is about. ``deploy`` is only wait-for-deployment's verdict on a deploy
    (the deploy_failed check reads it); the reconciler's own steps are ``app_version``."""

    BOUNCE = "bounce"  # a bounce started, stopped tasks, finished
    DEPLOY = "deploy"  # wait-for-deployment: a deploy group runs a sha healthily, or timed out
    APP_VERSION = "app_version"  # the reconciler started tasks of / removed an app version
    CRASH = "crash"
    OOM = "oom"
    UNHEALTHY = "unhealthy"  # a task replaced after failing its health checks
    HOST = "host"  # a task lost with its host (a node down), replaced elsewhere
    RECONCILE = "reconcile"  # deployd's errors for an instance
    CHECK = "check"
    ALERT = "alert"
    MONITOR = "monitor"
    CONFIG = "config"  # a config error: what runs is left as it is
    PROXY = "proxy"  # the discovery agent's HAProxy (restarts, reloads)
    REGISTRY = "registry"  # the discovery registry (unreachable, back)
    LOCK = "lock"  # deployd's cluster lock: held, lost, standing by
    MARK = "mark"  # mark-for-deployment / start / stop / rollback: who tagged what
    CANARY = "canary"  # a new version's (or canary's) errors through the proxy vs the rest's
    RUN = "run"  # a one-off task (``paasport run``) started, ended
    JOB = "job"  # a scheduled job's run: started, an action started/ended, the run ended
    AUTOSCALE = "autoscale"  # the autoscaler changed a count (with its inputs), an override
    ADDON = "addon"  # an add-on's database: provisioned, rotated, role dropped, backup, restore...
    UNKNOWN = "unknown"  # read back from a log written by a version with more kinds


KINDS: tuple[str, ...] = tuple(k.value for k in EventKind if k is not EventKind.UNKNOWN)


def event_kind(value: str | EventKind) -> EventKind:
    """The kind named ``value``; ValueError naming the valid ones for anything else."""
    try:
        return EventKind(value)
    except ValueError:
        raise ValueError(
            f"unknown event kind {value!r}: expected one of {', '.join(KINDS)}"
        ) from None


class _Payload:
    """Typed ``Event.data`` of the structured kinds; ``to_json`` gives the stored mapping."""

    def to_json(self) -> dict[str, object]:
        return dict(asdict(cast(Any, self)))


@dataclass(frozen=True)
class CrashData(_Payload):
    """``crash`` and ``oom``: a dead task of the desired version."""

    task: str
    task_id: str
    exit_code: int | None
    last_lines: list[str]
    restarts: int
    crash_loop: bool
    git_sha: str = ""  # the version the task ran (auto-rollback reads it)
    config_hash: str = ""


@dataclass(frozen=True)
class UnhealthyData(_Payload):
    """``unhealthy``: a running task replaced after its health checks gave up on it."""

    task: str
    task_id: str
    restarts: int
    detail: str = ""  # the last failing check's answer
    git_sha: str = ""
    config_hash: str = ""


@dataclass(frozen=True)
class DeployData(_Payload):
    """``deploy``: wait-for-deployment's outcome for one instance of a deploy group, or the
    auto-rollback guard's (``rolled_back``: the sha it left, why, and where it went)."""

    deploy_group: str
    git_sha: str
    outcome: Literal["ok", "timeout", "rolled_back"]
    reason: str = ""


@dataclass(frozen=True)
class AppVersionData(_Payload):
    """``app_version``: tasks started in, or removal of, one app version."""

    config_hash: str
    git_sha: str = ""
    count: int = 0
    removed: bool = False
    # the version's merged config (bounce.desired.version_document) when it was started:
    # what ``paasport diff`` compares the desired config with
    config: dict[str, Any] | None = None


@dataclass(frozen=True)
class BounceData(_Payload):
    """``bounce``: a step of a bounce (its method, the target, the tasks it stopped)."""

    method: str = ""
    target: str = ""
    stopped: list[str] = field(default_factory=list)
    superseded: str = ""  # the target a new mark replaced while the bounce ran


JobState = Literal["started", "action_started", "action_finished", "finished", "late", "skipped"]


@dataclass(frozen=True)
class JobData(_Payload):
    """``job``: one step of one run of a scheduled job (``platform.jobs``). The runs, their
    actions and outcomes are read back from these alone (``monitoring.job_runs``)."""

    job: str
    run_id: str
    state: JobState
    trigger: str = ""  # started: "schedule" | "manual"
    scheduled: float = 0.0  # started/skipped: the schedule's time it is for
    git_sha: str = ""  # started: the sha (and image) every action of the run runs
    image: str = ""
    action: str = ""
    attempt: int = 0
    task_id: str = ""
    task_run_id: str = ""  # the action's one-off task (its kept output: runs/<service>/<id>.log)
    exit_code: int | None = None
    ok: bool | None = None  # finished: the run succeeded
    seconds: float = 0.0
    log: str = ""


AddonAction = Literal["provisioned", "rotated", "role_dropped", "backup", "restore", "destroyed",
                      "failed"]  # fmt: skip


@dataclass(frozen=True)
class AddonData(_Payload):
    """``addon``: one step on a service's add-on (``platform.addons``); never a credential."""

    addon: str
    action: AddonAction
    database: str = ""
    role: str = ""  # provisioned/rotated: the role the service now uses; role_dropped: the old one
    server: str = ""  # host:port
    file: str = ""  # backup/restore: the dump
    bytes: int = 0
    error: str = ""


@dataclass(frozen=True)
class Event:
    """One thing that happened; ``data`` holds JSON-friendly details (others become strings).

    ``kind`` accepts the plain strings (``"bounce"``) and normalises them to EventKind; an
    unknown kind is a ValueError. Structured kinds build ``data`` from a payload's ``to_json``.
    """

    time: float
    level: Level
    kind: EventKind | str
    service: str | None = None
    instance: str | None = None
    cluster: str | None = None
    message: str = ""
    data: Mapping[str, object] = field(default_factory=dict)

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", event_kind(self.kind))

    def to_json(self) -> dict[str, object]:
        return {
            "time": self.time,
            "level": self.level,
            "kind": str(self.kind),
            "service": self.service,
            "instance": self.instance,
            "cluster": self.cluster,
            "message": self.message,
            "data": dict(self.data),
        }


def level_rank(level: str) -> int:
    """Order of a level name; raises UsageError naming the valid ones for anything else."""
    try:
        return _LEVEL_RANK[level]
    except KeyError:
        raise UsageError(
            f"unknown event level {level!r}: expected one of {', '.join(LEVELS)}"
        ) from None


def events_path(state_dir: Path) -> Path:
    """Where the event log of a host lives (``state_dir/events.sqlite``)."""
    return state_dir / EVENTS_FILE


_SCHEMA = """
CREATE TABLE IF NOT EXISTS events (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    time REAL NOT NULL,
    level INTEGER NOT NULL,
    kind TEXT NOT NULL,
    service TEXT,
    instance TEXT,
    cluster TEXT,
    message TEXT NOT NULL,
    data TEXT NOT NULL
);
CREATE INDEX IF NOT EXISTS events_time ON events (time);
CREATE INDEX IF NOT EXISTS events_service ON events (service, instance);
"""


class EventLog:
    """SQLite (WAL) event store; one connection guarded by a lock, so threads may share it.

    Several processes (``paasport up`` and a ``paasport events -f`` in another terminal) can use
    the same file at once: WAL lets readers run while a writer appends.
    """

    def __init__(self, path: Path) -> None:
        self.path = path
        self._lock = threading.Lock()
        try:
            private_file(private_dir(path.parent) / path.name)
            self._conn = sqlite3.connect(
                str(path), timeout=10.0, check_same_thread=False, isolation_level=None
            )
            self._conn.execute("PRAGMA journal_mode=WAL")
            self._conn.execute("PRAGMA synchronous=NORMAL")
            self._conn.executescript(_SCHEMA)
        except (OSError, sqlite3.Error) as err:
            raise PermanentError(f"cannot open the event log {path}: {err}") from None

    def close(self) -> None:
        with self._lock:
            self._conn.close()

    def __enter__(self) -> EventLog:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def record(self, event: Event) -> None:
        """Append one event. Raises PermanentError if the file cannot be written."""
        row = (
            event.time,
            level_rank(event.level),
            str(event.kind),
            event.service,
            event.instance,
            event.cluster,
            event.message,
            json.dumps(dict(event.data), default=str, sort_keys=True),
        )
        try:
            with self._lock:
                self._conn.execute(
                    "INSERT INTO events (time, level, kind, service, instance, cluster, message,"
                    " data) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
                    row,
                )
        except sqlite3.Error as err:
            raise PermanentError(f"cannot write to the event log {self.path}: {err}") from None

    def query(
        self,
        service: str | None = None,
        instance: str | None = None,
        since: float | None = None,
        level: str | None = None,
        kinds: Sequence[str] | None = None,
        limit: int | None = None,
        cluster: str | None = None,
    ) -> list[Event]:
        """Matching events, oldest first. ``level`` is a minimum; ``limit`` keeps the newest N."""
        rows = self._select(service, instance, since, level, kinds, limit, cluster, 0)
        return [event for _, event in rows]

    def follow(
        self,
        service: str | None = None,
        instance: str | None = None,
        since: float | None = None,
        level: str | None = None,
        kinds: Sequence[str] | None = None,
        limit: int | None = None,
        cluster: str | None = None,
        poll_interval: float = 0.5,
        stop: threading.Event | None = None,
    ) -> Iterator[Event]:
        """Yield what ``query`` returns, then every new matching event as it is recorded.

        Ends when ``stop`` is set (checked every ``poll_interval``); otherwise runs forever.
        """
        last_id = self._max_id()
        yield from (
            event
            for _, event in self._select(
                service, instance, since, level, kinds, limit, cluster, 0, last_id
            )
        )
        while stop is None or not stop.is_set():
            rows = self._select(service, instance, since, level, kinds, None, cluster, last_id)
            for row_id, event in rows:
                last_id = row_id
                yield event
            if not rows:
                if stop is not None:
                    stop.wait(poll_interval)
                else:
                    time.sleep(poll_interval)

    def _max_id(self) -> int:
        try:
            with self._lock:
                return int(
                    self._conn.execute("SELECT COALESCE(MAX(id), 0) FROM events").fetchone()[0]
                )
        except sqlite3.Error as err:
            raise PermanentError(f"cannot read the event log {self.path}: {err}") from None

    def _select(
        self,
        service: str | None,
        instance: str | None,
        since: float | None,
        level: str | None,
        kinds: Sequence[str] | None,
        limit: int | None,
        cluster: str | None,
        after_id: int,
        upto_id: int | None = None,
    ) -> list[tuple[int, Event]]:
        where = ["id > ?"]
        args: list[object] = [after_id]
        if upto_id is not None:
            where.append("id <= ?")
            args.append(upto_id)
        for column, value in (("service", service), ("instance", instance), ("cluster", cluster)):
            if value is not None:
                where.append(f"{column} = ?")
                args.append(value)
        if since is not None:
            where.append("time >= ?")
            args.append(since)
        if level is not None:
            where.append("level >= ?")
            args.append(level_rank(level))
        if kinds:
            where.append(f"kind IN ({', '.join('?' for _ in kinds)})")
            args.extend(str(event_kind(k)) for k in kinds)
        sql = (
            "SELECT id, time, level, kind, service, instance, cluster, message, data FROM events"
            f" WHERE {' AND '.join(where)} ORDER BY id DESC"
        )
        if limit is not None:
            sql += " LIMIT ?"
            args.append(max(0, limit))
        try:
            with self._lock:
                rows = self._conn.execute(sql, args).fetchall()
        except sqlite3.Error as err:
            raise PermanentError(f"cannot read the event log {self.path}: {err}") from None
        rows.reverse()
        return [(int(row[0]), _event_from_row(row)) for row in rows]


def _event_from_row(row: Sequence[object]) -> Event:
    _, at, level, kind, service, instance, cluster, message, data = row
    try:
        decoded = json.loads(str(data))
    except ValueError:
        decoded = {"raw": data}
    if not isinstance(decoded, dict):
        decoded = {"value": decoded}
    if str(kind) not in KINDS:
        decoded = {**decoded, "raw_kind": str(kind)}
        kind = EventKind.UNKNOWN
    return Event(
        time=float(cast(float, at)),
        level=LEVELS[int(cast(int, level))],
        kind=str(kind),
        service=cast("str | None", service),
        instance=cast("str | None", instance),
        cluster=cast("str | None", cluster),
        message=str(message),
        data=decoded,
    )
