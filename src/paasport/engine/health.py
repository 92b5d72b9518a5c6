"""Task health: probes (http / tcp / cmd), the pure HealthTracker and the shared HealthMonitor.

The reconciler (is a new task happy?), the discovery agent (register it or not) and
``paasport status`` share one HealthMonitor per process; it fills ``Task.health`` for
``bounce.plan`` through ``with_health``. ``probe`` does the I/O, ``HealthTracker`` decides.
"""

from __future__ import annotations

import http.client
import socket
import threading
import time
from collections.abc import Callable, Iterable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace

from paasport.engine.base import ExecResult
from paasport.errors import PaasportError
from paasport.types import AppVersion, HealthCheck, Task, TaskHealth

ExecFn = Callable[[str, str, float], ExecResult]  # engine.exec_in_task(task_id, cmd, timeout)

# How long a tcp probe waits for the peer to hang up at once: Docker's userland port proxy
# accepts every connection and closes it when nothing listens behind the published port.
TCP_SETTLE_SECONDS = 0.1
STARTUP_INTERVAL_SECONDS = 0.25  # probe cadence of a task that has never passed, in its grace
DETAIL_BODY_CHARS = 120


@dataclass(frozen=True)
class ProbeResult:
    ok: bool
    detail: str  # what a person reads: "HTTP 500 from 127.0.0.1:32768/status: boom"


def _snippet(text: str) -> str:
    flat = " ".join(text.split())
    return flat if len(flat) <= DETAIL_BODY_CHARS else flat[: DETAIL_BODY_CHARS - 3] + "..."


def _os_error(err: OSError, where: str, timeout: float) -> str:
    if isinstance(err, ConnectionRefusedError):
        return f"connection refused by {where}"
    if isinstance(err, ConnectionResetError):
        return f"connection reset by {where}"
    if isinstance(err, TimeoutError):
        return f"no answer from {where} within {timeout:g}s"
    return f"{err.strerror or err} ({where})"


def probe_http(host: str, port: int, uri: str, timeout: float) -> ProbeResult:
    """GET ``uri``: any 2xx/3xx answer passes (redirects are not followed)."""
    path = uri if uri.startswith("/") else f"/{uri}"
    where = f"{host}:{port}{path}"
    conn = http.client.HTTPConnection(host, port, timeout=timeout)
    try:
        conn.request("GET", path, headers={"User-Agent": "paasport-health", "Connection": "close"})
        response = conn.getresponse()
        body = response.read(DETAIL_BODY_CHARS * 2).decode("utf-8", "replace")
    except http.client.RemoteDisconnected:
        return ProbeResult(False, f"connection closed without a response by {where}")
    except OSError as err:
        return ProbeResult(False, _os_error(err, where, timeout))
    except http.client.HTTPException as err:
        return ProbeResult(False, f"bad HTTP response from {where}: {err!r}")
    finally:
        conn.close()
    ok = 200 <= response.status < 400
    detail = f"HTTP {response.status} from {where}"
    if not ok and body.strip():
        detail += f": {_snippet(body)}"
    return ProbeResult(ok, detail)


def probe_tcp(host: str, port: int, timeout: float) -> ProbeResult:
    """Connect; a peer that hangs up at once (a port proxy with no listener behind) fails."""
    where = f"{host}:{port}"
    try:
        with socket.create_connection((host, port), timeout=timeout) as sock:
            sock.settimeout(min(timeout, TCP_SETTLE_SECONDS))
            try:
                data = sock.recv(1)
            except TimeoutError:
                return ProbeResult(True, f"tcp connect to {where} ok")
            if not data:
                return ProbeResult(False, f"{where} closed the connection at once (no listener?)")
            return ProbeResult(True, f"tcp connect to {where} ok")
    except OSError as err:
        return ProbeResult(False, _os_error(err, where, timeout))


def probe_cmd(task_id: str, cmd: str, timeout: float, exec_fn: ExecFn | None) -> ProbeResult:
    """Run ``cmd`` inside the task through the engine; exit code 0 passes."""
    if exec_fn is None:
        return ProbeResult(False, "cannot run a command health check: no engine to exec with")
    try:
        result = exec_fn(task_id, cmd, timeout)
    except PaasportError as err:
        return ProbeResult(False, f"health check command `{cmd}` could not run: {err}")
    if result.exit_code == 0:
        return ProbeResult(True, f"`{cmd}` exited 0")
    lines = [line for line in result.output.strip().splitlines() if line.strip()]
    tail = f": {_snippet(lines[-1])}" if lines else ""
    return ProbeResult(False, f"`{cmd}` exited {result.exit_code}{tail}")


def probe(task: Task, check: HealthCheck, exec_fn: ExecFn | None = None) -> ProbeResult:
    """Check one task once; never raises. No check configured: a running task passes."""
    if task.state != "running":
        code = f" (exit code {task.exit_code})" if task.exit_code is not None else ""
        return ProbeResult(False, f"task is {task.state}{code}")
    if check.mode is None:
        return ProbeResult(True, "running (no health check configured)")
    if check.mode == "cmd":
        if not check.cmd:
            return ProbeResult(False, "healthcheck_mode cmd needs healthcheck_cmd")
        return probe_cmd(task.task_id, check.cmd, check.timeout_seconds, exec_fn)
    if task.port is None:
        return ProbeResult(False, f"task has no published port for a {check.mode} health check")
    if check.mode == "http":
        return probe_http(task.host, task.port, check.uri, check.timeout_seconds)
    return probe_tcp(task.host, task.port, check.timeout_seconds)


@dataclass(frozen=True)
class HealthState:
    """What is known about one task's health; replaced, never mutated."""

    started_at: float
    health: TaskHealth = "unknown"
    consecutive_failures: int = 0
    ever_passed: bool = False
    last_probe_at: float | None = None
    last_ok: bool | None = None
    detail: str = "not checked yet"


@dataclass(frozen=True)
class HealthTracker:
    """Pure rules (Marathon's): a pass makes a task healthy; failures count once the grace
    period is over or the task has passed once; ``max_consecutive_failures`` counted failures
    in a row make it unhealthy. Until then the task keeps its previous health."""

    check: HealthCheck
    startup_interval_seconds: float = STARTUP_INTERVAL_SECONDS

    def initial(self, started_at: float) -> HealthState:
        return HealthState(started_at=started_at)

    def in_grace(self, state: HealthState, now: float) -> bool:
        return now < state.started_at + self.check.grace_period_seconds

    def due(self, state: HealthState, now: float) -> bool:
        """Is a probe due? A task still starting up (never passed, in grace) is probed often."""
        if state.last_probe_at is None:
            return True
        interval = self.check.interval_seconds
        if not state.ever_passed and self.in_grace(state, now):
            interval = min(interval, self.startup_interval_seconds)
        return now - state.last_probe_at >= interval

    def observe(self, state: HealthState, result: ProbeResult, now: float) -> HealthState:
        if result.ok:
            return replace(
                state,
                health="healthy",
                consecutive_failures=0,
                ever_passed=True,
                last_probe_at=now,
                last_ok=True,
                detail=result.detail,
            )
        counts = state.ever_passed or not self.in_grace(state, now)
        failures = state.consecutive_failures + 1 if counts else 0
        limit = max(self.check.max_consecutive_failures, 1)
        health: TaskHealth = "unhealthy" if counts and failures >= limit else state.health
        detail = result.detail if counts else f"{result.detail} (in grace period)"
        return replace(
            state,
            health=health,
            consecutive_failures=failures,
            last_probe_at=now,
            last_ok=False,
            detail=detail,
        )


@dataclass(frozen=True)
class _Entry:
    key: tuple[str, str, str]  # service, instance, cluster
    tracker: HealthTracker
    state: HealthState


def _instance_key(task: Task) -> tuple[str, str, str]:
    return (task.service, task.instance, task.cluster)


class HealthMonitor:
    """Thread-safe health state of every task this process watches; probes run concurrently.

    ``update`` is called by whoever lists tasks (the reconciler per instance, the agent per
    pass); ``health_of`` / ``with_health`` read the latest verdict without any I/O.
    """

    def __init__(
        self,
        exec_fn: ExecFn | None = None,
        clock: Callable[[], float] = time.time,
        max_workers: int = 16,
        startup_interval_seconds: float = STARTUP_INTERVAL_SECONDS,
    ) -> None:
        self._exec_fn = exec_fn
        self._clock = clock
        self._max_workers = max_workers
        self._startup_interval = startup_interval_seconds
        self._lock = threading.Lock()
        self._entries: dict[str, _Entry] = {}
        self._in_flight: set[str] = set()

    def update(
        self,
        tasks: Iterable[Task],
        check_for: Callable[[Task], HealthCheck | None] | None = None,
        complete: bool = False,
    ) -> dict[str, HealthState]:
        """Probe the due tasks among ``tasks`` and return their states by task id.

        ``check_for`` overrides a task's own check (the mesh's namespace check). Tasks of the
        same instances that are no longer listed are forgotten; with ``complete`` (the caller
        passed every task it watches) every unlisted task is forgotten.
        """
        listed = list(tasks)
        now = self._clock()
        to_probe: list[tuple[Task, HealthCheck]] = []
        with self._lock:
            self._forget_missing(listed, complete)
            for task in listed:
                check = (check_for(task) if check_for else None) or task.healthcheck
                entry = self._entry_for(task, check or HealthCheck(), now)
                if task.state in ("exited", "dead"):
                    result = probe(task, entry.tracker.check)
                    state = replace(entry.state, health="unhealthy", detail=result.detail)
                    self._entries[task.task_id] = replace(entry, state=state)
                elif (
                    task.state == "running"
                    and task.task_id not in self._in_flight
                    and entry.tracker.due(entry.state, now)
                ):
                    self._in_flight.add(task.task_id)
                    to_probe.append((task, entry.tracker.check))
        try:
            results = self._run_probes(to_probe)
        finally:
            with self._lock:
                self._in_flight.difference_update(t.task_id for t, _ in to_probe)
        with self._lock:
            done = self._clock()
            for (task, check), result in zip(to_probe, results, strict=True):
                current = self._entries.get(task.task_id)
                if current is None or current.tracker.check != check:
                    continue  # forgotten or re-configured while probing
                state = current.tracker.observe(current.state, result, done)
                self._entries[task.task_id] = replace(current, state=state)
            return {
                t.task_id: self._entries[t.task_id].state
                for t in listed
                if t.task_id in self._entries
            }

    def _entry_for(self, task: Task, check: HealthCheck, now: float) -> _Entry:
        entry = self._entries.get(task.task_id)
        started_at = task.started_at if task.started_at > 0 else now
        restarted = (
            entry is not None
            and task.started_at > 0
            and (entry.state.started_at != task.started_at)
        )
        if entry is None or entry.tracker.check != check or restarted:
            tracker = HealthTracker(check, self._startup_interval)
            entry = _Entry(_instance_key(task), tracker, tracker.initial(started_at))
            self._entries[task.task_id] = entry
        return entry

    def _forget_missing(self, tasks: Sequence[Task], complete: bool) -> None:
        listed = {t.task_id for t in tasks}
        instances = {_instance_key(t) for t in tasks}
        for task_id, entry in list(self._entries.items()):
            if task_id not in listed and (complete or entry.key in instances):
                del self._entries[task_id]

    def _run_probes(self, work: Sequence[tuple[Task, HealthCheck]]) -> list[ProbeResult]:
        if len(work) <= 1:
            return [self._probe_safely(task, check) for task, check in work]
        with ThreadPoolExecutor(max_workers=min(len(work), self._max_workers)) as pool:
            return list(pool.map(lambda item: self._probe_safely(*item), work))

    def _probe_safely(self, task: Task, check: HealthCheck) -> ProbeResult:
        try:
            return probe(task, check, self._exec_fn)
        except Exception as err:  # an engine bug must not stop every other probe
            return ProbeResult(False, f"health check failed to run: {err!r}")

    def forget(self, task_ids: Iterable[str]) -> None:
        with self._lock:
            for task_id in task_ids:
                self._entries.pop(task_id, None)

    def state_of(self, task_id: str) -> HealthState | None:
        with self._lock:
            entry = self._entries.get(task_id)
            return entry.state if entry else None

    def health_of(self, task_id: str) -> tuple[TaskHealth, str]:
        """The latest verdict and its detail (the last probe's answer or error)."""
        state = self.state_of(task_id)
        if state is None:
            return "unknown", "not checked yet"
        return state.health, state.detail

    def with_health(self, app_versions: Iterable[AppVersion]) -> tuple[AppVersion, ...]:
        """Copies of ``app_versions`` whose tasks carry the monitor's verdicts in ``health``."""
        with self._lock:
            states = {task_id: entry.state for task_id, entry in self._entries.items()}

        def fill(task: Task) -> Task:
            state = states.get(task.task_id)
            if state is not None:
                return replace(task, health=state.health, health_detail=state.detail)
            return replace(
                task, health="unhealthy" if task.state in ("exited", "dead") else "unknown"
            )

        return tuple(replace(v, tasks=tuple(fill(t) for t in v.tasks)) for v in app_versions)
