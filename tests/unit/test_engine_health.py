"""engine.health without I/O: HealthTracker rules as tables, probe dispatch and HealthMonitor
with a fake exec_fn and an injected clock (real http/tcp probes: tests/integration)."""

from __future__ import annotations

import threading
from dataclasses import replace

import pytest

from paasport.engine.base import ExecResult
from paasport.engine.health import HealthMonitor, HealthState, HealthTracker, ProbeResult, probe
from paasport.errors import EngineError
from paasport.types import AppVersion, HealthCheck, Task

CHECK = HealthCheck(
    mode="http", grace_period_seconds=10, interval_seconds=5, max_consecutive_failures=3
)

# steps "time:ok|fail" -> expected "health/consecutive_failures" after each step (started at 0)
TRACKER_CASES = [
    ("first pass is healthy", CHECK, ["1:ok"], ["healthy/0"]),
    (
        "failures in grace do not count until the task passed once",
        CHECK,
        ["1:fail", "6:fail", "11:fail", "16:fail", "21:fail"],
        ["unknown/0", "unknown/0", "unknown/1", "unknown/2", "unhealthy/3"],
    ),
    (
        "after a pass, failures count even in grace",
        CHECK,
        ["1:ok", "2:fail", "3:fail", "4:fail", "5:ok"],
        ["healthy/0", "healthy/1", "healthy/2", "unhealthy/3", "healthy/0"],
    ),
    (
        "a pass resets the failure count",
        CHECK,
        ["11:fail", "12:fail", "13:ok", "14:fail", "15:fail"],
        ["unknown/1", "unknown/2", "healthy/0", "healthy/1", "healthy/2"],
    ),
    (
        "one failure allowed",
        replace(CHECK, max_consecutive_failures=1),
        ["11:fail", "12:ok"],
        ["unhealthy/1", "healthy/0"],
    ),
    (
        "zero max failures behaves as one",
        replace(CHECK, max_consecutive_failures=0),
        ["11:fail"],
        ["unhealthy/1"],
    ),
    (
        "no grace period",
        replace(CHECK, grace_period_seconds=0),
        ["0:fail", "1:fail", "2:fail"],
        ["unknown/1", "unknown/2", "unhealthy/3"],
    ),
    (
        "unhealthy stays unhealthy while failing",
        replace(CHECK, max_consecutive_failures=2),
        ["11:fail", "12:fail", "13:fail"],
        ["unknown/1", "unhealthy/2", "unhealthy/3"],
    ),
]


@pytest.mark.parametrize(
    ("name", "check", "steps", "expected"), TRACKER_CASES, ids=[c[0] for c in TRACKER_CASES]
)
def test_tracker(name: str, check: HealthCheck, steps: list[str], expected: list[str]) -> None:
    tracker = HealthTracker(check)
    state = tracker.initial(started_at=0.0)
    got = []
    for step in steps:
        at, outcome = step.split(":")
        state = tracker.observe(state, ProbeResult(outcome == "ok", "d"), float(at))
        got.append(f"{state.health}/{state.consecutive_failures}")
    assert got == expected


def test_tracker_detail_marks_grace() -> None:
    tracker = HealthTracker(CHECK)
    state = tracker.observe(tracker.initial(0.0), ProbeResult(False, "HTTP 500"), 1.0)
    assert state.detail == "HTTP 500 (in grace period)"
    state = tracker.observe(state, ProbeResult(False, "HTTP 502"), 20.0)
    assert state.detail == "HTTP 502"


# (ever_passed, last_probe_at, now) -> due; started at 0, grace 10, interval 5, startup 0.5
DUE_CASES = [
    (False, None, 0.0, True),
    (False, 1.0, 1.2, False),
    (False, 1.0, 1.5, True),  # starting up: probed every 0.5 s
    (True, 1.0, 1.5, False),  # passed once: the configured interval
    (True, 1.0, 6.0, True),
    (False, 12.0, 13.0, False),  # out of grace, never passed: configured interval
    (False, 12.0, 17.0, True),
]


@pytest.mark.parametrize(("ever_passed", "last", "now", "due"), DUE_CASES)
def test_tracker_due(ever_passed: bool, last: float | None, now: float, due: bool) -> None:
    tracker = HealthTracker(CHECK, startup_interval_seconds=0.5)
    state = HealthState(started_at=0.0, ever_passed=ever_passed, last_probe_at=last)
    assert tracker.due(state, now) is due


def make_task(task_id: str, instance: str = "main", **kw: object) -> Task:
    fields: dict[str, object] = {"state": "running", "port": 1, "started_at": 100.0}
    fields.update(kw)
    return Task(
        task_id=task_id,
        service="web",
        instance=instance,
        cluster="local",
        config_hash="h",
        git_sha="abc",
        **fields,  # type: ignore[arg-type]
    )


def fixed_exec(exit_code: int, output: str = "") -> object:
    return lambda task_id, cmd, timeout: ExecResult(exit_code, output)


def raising_exec(task_id: str, cmd: str, timeout: float) -> ExecResult:
    raise EngineError("container is gone")


PROBE_CASES = [
    ("no check, running", make_task("t"), HealthCheck(), None, True, "running (no health check"),
    ("not running", make_task("t", state="exited", exit_code=3), HealthCheck(), None, False,
     "task is exited (exit code 3)"),
    ("starting", make_task("t", state="starting"), HealthCheck(mode="tcp"), None, False,
     "task is starting"),
    ("no port", make_task("t", port=None), HealthCheck(mode="http"), None, False,
     "task has no published port"),
    ("cmd passes", make_task("t"), HealthCheck(mode="cmd", cmd="true"), fixed_exec(0), True,
     "`true` exited 0"),
    ("cmd fails with output", make_task("t"), HealthCheck(mode="cmd", cmd="check"),
     fixed_exec(2, "starting\nnot ready yet\n"), False, "`check` exited 2: not ready yet"),
    ("cmd without command", make_task("t"), HealthCheck(mode="cmd"), fixed_exec(0), False,
     "healthcheck_mode cmd needs healthcheck_cmd"),
    ("cmd without engine", make_task("t"), HealthCheck(mode="cmd", cmd="true"), None, False,
     "no engine to exec with"),
    ("cmd engine error", make_task("t"), HealthCheck(mode="cmd", cmd="true"), raising_exec, False,
     "could not run: container is gone"),
]  # fmt: skip


@pytest.mark.parametrize(
    ("name", "task", "check", "exec_fn", "ok", "detail"),
    PROBE_CASES,
    ids=[c[0] for c in PROBE_CASES],
)
def test_probe_dispatch(
    name: str, task: Task, check: HealthCheck, exec_fn: object, ok: bool, detail: str
) -> None:
    result = probe(task, check, exec_fn)  # type: ignore[arg-type]
    assert result.ok is ok
    assert detail in result.detail


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


class CountingExec:
    """exec_fn whose answer depends on the command; counts calls per task."""

    def __init__(self) -> None:
        self.calls: list[str] = []
        self.lock = threading.Lock()

    def __call__(self, task_id: str, cmd: str, timeout: float) -> ExecResult:
        with self.lock:
            self.calls.append(task_id)
        if cmd == "boom":
            raise RuntimeError("engine bug")
        return ExecResult(0 if cmd == "ok" else 1, "no")


CMD_OK = HealthCheck(mode="cmd", cmd="ok", grace_period_seconds=0, max_consecutive_failures=1)
CMD_BAD = replace(CMD_OK, cmd="bad")


def test_monitor_probes_due_tasks_only_and_fills_health() -> None:
    clock, exec_fn = FakeClock(), CountingExec()
    monitor = HealthMonitor(exec_fn, clock=clock)
    good = make_task("good", healthcheck=CMD_OK)
    bad = make_task("bad", healthcheck=CMD_BAD)
    plain = make_task("plain")  # no check: running counts as healthy
    dead = make_task("dead", state="exited", exit_code=137, healthcheck=CMD_OK)
    states = monitor.update([good, bad, plain, dead])
    assert {k: s.health for k, s in states.items()} == {
        "good": "healthy",
        "bad": "unhealthy",
        "plain": "healthy",
        "dead": "unhealthy",
    }
    assert sorted(exec_fn.calls) == ["bad", "good"]
    assert monitor.health_of("bad") == ("unhealthy", "`bad` exited 1: no")
    assert monitor.health_of("dead") == ("unhealthy", "task is exited (exit code 137)")
    assert monitor.health_of("never-seen") == ("unknown", "not checked yet")

    monitor.update([good, bad, plain, dead])  # nothing due at the same instant
    assert len(exec_fn.calls) == 2
    clock.now += CMD_OK.interval_seconds
    monitor.update([good, bad, plain, dead])
    assert len(exec_fn.calls) == 4

    version = AppVersion("web", "main", "local", "h", "abc", "img", tasks=(good, bad))
    unseen = AppVersion("web", "other", "local", "h", "abc", "img", tasks=(make_task("x"),))
    filled = monitor.with_health([version, unseen])
    assert [t.health for v in filled for t in v.tasks] == ["healthy", "unhealthy", "unknown"]
    assert version.tasks[0].health == "unknown"  # originals untouched


def test_monitor_forgets_gone_tasks_of_the_listed_instances_only() -> None:
    monitor = HealthMonitor(CountingExec(), clock=FakeClock())
    a1, a2 = make_task("a1"), make_task("a2")
    b1 = make_task("b1", instance="other")
    monitor.update([a1, a2, b1])
    monitor.update([a1])  # a2 is gone; b1 belongs to another instance
    assert monitor.state_of("a2") is None
    assert monitor.state_of("b1") is not None
    monitor.update([a1], complete=True)
    assert monitor.state_of("b1") is None
    assert monitor.state_of("a1") is not None
    monitor.forget(["a1"])
    assert monitor.state_of("a1") is None


def test_monitor_check_override_and_engine_bugs() -> None:
    exec_fn = CountingExec()
    monitor = HealthMonitor(exec_fn, clock=FakeClock())
    task = make_task("t", healthcheck=CMD_OK)
    monitor.update([task], check_for=lambda t: replace(CMD_OK, cmd="boom"))
    health, detail = monitor.health_of("t")
    assert health == "unhealthy"
    assert "health check failed to run" in detail and "engine bug" in detail


def test_monitor_restarted_task_starts_over() -> None:
    clock = FakeClock()
    monitor = HealthMonitor(CountingExec(), clock=clock)
    check = replace(CMD_OK, grace_period_seconds=60)
    monitor.update([make_task("t", healthcheck=check)])
    assert monitor.health_of("t")[0] == "healthy"
    # a new check (config changed under the same task id) resets the state
    monitor.update([make_task("t", healthcheck=replace(check, cmd="bad"))])
    assert monitor.health_of("t") == ("unknown", "`bad` exited 1: no (in grace period)")
    monitor.update([make_task("t", healthcheck=check)])
    assert monitor.health_of("t")[0] == "healthy"
    # the same container started again: a fresh grace period, health unknown until probed
    clock.now += 1
    monitor.update([make_task("t", healthcheck=check, started_at=clock.now)])
    assert monitor.state_of("t") == HealthState(
        started_at=clock.now, health="healthy", ever_passed=True, last_probe_at=clock.now,
        last_ok=True, detail="`ok` exited 0",
    )  # fmt: skip


def test_monitor_probes_concurrently() -> None:
    barrier = threading.Barrier(3, timeout=5)

    def exec_fn(task_id: str, cmd: str, timeout: float) -> ExecResult:
        barrier.wait(timeout=5)  # passes only if the three probes run at the same time
        return ExecResult(0, "")

    monitor = HealthMonitor(exec_fn, clock=FakeClock())
    tasks = [make_task(f"t{i}", healthcheck=CMD_OK) for i in range(3)]
    states = monitor.update(tasks)
    assert [s.health for s in states.values()] == ["healthy"] * 3
