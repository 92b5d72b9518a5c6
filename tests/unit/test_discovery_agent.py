"""The agent's pure decisions (tables) and one agent pass over fakes (engine, health, registry)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from typing import Any

import pytest

from paasport.discovery.agent import (
    Agent,
    desired_backends,
    mesh_check,
    registrations_by_instance,
    route_changes,
    tasks_to_check,
)
from paasport.discovery.registry import Backend, MemoryRegistry
from paasport.errors import EngineUnavailable, RegistryUnavailable
from paasport.types import AppVersion, HealthCheck, InstanceConfig, Namespace, Task

WEB = Namespace("web", "main", 20001, healthcheck_uri="/ping", healthcheck_timeout_s=0.5)
NAMESPACES = {"web.main": WEB, "web.disc": Namespace("web", "disc", None)}
MAIN = InstanceConfig("web", "local", "main", "local.main", registrations=("web.main",))
CANARY = InstanceConfig(
    "web", "local", "canary", "local.canary", registrations=("web.main", "web.disc", "nope.x")
)
WORKER = InstanceConfig("web", "local", "worker", "local.worker")


def task(tid: str, instance: str = "main", port: int | None = 1000, **kw: Any) -> Task:
    return Task(
        tid, "web", instance, "local", "h", "sha", kw.pop("state", "running"), port=port, **kw
    )


def test_registrations_by_instance_keeps_existing_namespaces() -> None:
    assert registrations_by_instance([MAIN, CANARY, WORKER], NAMESPACES) == {
        ("web", "main"): ("web.main",),
        ("web", "canary"): ("web.main", "web.disc"),
    }


def test_mesh_check_uses_the_namespace() -> None:
    check = mesh_check(WEB, task("t1", healthcheck=HealthCheck(grace_period_seconds=5)), 0.25)
    assert (check.mode, check.uri, check.timeout_seconds) == ("http", "/ping", 0.5)
    assert (check.interval_seconds, check.grace_period_seconds) == (0.25, 5)


REGS = {("web", "main"): ("web.main",), ("web", "canary"): ("web.main", "web.disc")}
DESIRED_CASES = [
    ("healthy task registers", [task("t1")], {"t1": True}, {("web.main", "t1")}),
    ("unhealthy task does not", [task("t1")], {"t1": False}, set()),
    ("unknown health does not", [task("t1")], {}, set()),
    ("exited task does not", [task("t1", state="exited")], {"t1": True}, set()),
    ("no port does not", [task("t1", port=None)], {"t1": True}, set()),
    (
        "every registration",
        [task("c1", "canary")],
        {"c1": True},
        {("web.main", "c1"), ("web.disc", "c1")},
    ),
    ("unregistered instance ignored", [task("w1", "worker")], {"w1": True}, set()),
]


@pytest.mark.parametrize(
    "name,tasks,healthy,keys", DESIRED_CASES, ids=[c[0] for c in DESIRED_CASES]
)
def test_desired_backends(
    name: str, tasks: list[Task], healthy: dict[str, bool], keys: set[tuple[str, str]]
) -> None:
    assert set(desired_backends("h1", tasks, healthy, REGS, {}, now=5.0)) == keys


def test_desired_backends_keep_registration_time_and_mark_draining() -> None:
    prev = {
        ("web.main", "t1"): Backend("web.main", "t1", "127.0.0.1", 1000, "h1", registered_at=1.0)
    }
    out = desired_backends("h1", [task("t1", draining=True)], {"t1": True}, REGS, prev, now=9.0)
    assert out[("web.main", "t1")].registered_at == 1.0
    assert out[("web.main", "t1")].state == "drain"


def test_route_changes() -> None:
    a = Backend("web.main", "a", "h", 1, "h1")
    b = Backend("web.main", "b", "h", 2, "h1")
    before = {a.key: a, b.key: b}
    after = {
        b.key: replace(b, state="drain"),
        ("web.main", "c"): Backend("web.main", "c", "h", 3, "h1"),
    }
    changes = route_changes(before, after, {a.key: 4.0})
    assert [x.task_id for x in changes.routable] == ["c"]
    assert [(x.task_id, when) for x, when in changes.unroutable] == [("a", 4.0), ("b", None)]


# -- one pass over fakes ---------------------------------------------------------------------
@dataclass
class FakeState:
    health: str


class FakeHealth:
    def __init__(self) -> None:
        self.healthy: set[str] = set()
        self.checks: dict[str, HealthCheck | None] = {}

    def update(
        self,
        tasks: Iterable[Task],
        check_for: Callable[[Task], HealthCheck | None],
        complete: bool = False,
    ) -> dict[str, FakeState]:
        out = {}
        for t in tasks:
            self.checks[t.task_id] = check_for(t)
            out[t.task_id] = FakeState("healthy" if t.task_id in self.healthy else "unknown")
        return out


class FakeEngine:
    cluster = "local"

    def __init__(self) -> None:
        self.tasks: list[Task] = []
        self.calls = 0

    def list_app_versions(
        self, service: str | None = None, instance: str | None = None
    ) -> Sequence[AppVersion]:
        self.calls += 1
        return [AppVersion("web", "main", "local", "h", "sha", "img", tuple(self.tasks))]

    def exec_in_task(self, task_id: str, cmd: str, timeout: float) -> Any:
        raise AssertionError("not used")


class FlakyRegistry(MemoryRegistry):
    down = False

    def snapshot(self):  # type: ignore[no-untyped-def]
        if self.down:
            raise RegistryUnavailable("registry down")
        return super().snapshot()


def make_agent() -> tuple[Agent, FakeEngine, FakeHealth, FlakyRegistry]:
    engine, health, registry = FakeEngine(), FakeHealth(), FlakyRegistry()
    agent = Agent(
        engine,
        registry,
        None,
        lambda: (NAMESPACES, [MAIN]),  # type: ignore[arg-type]
        agent_id="h1",
        health=health,
        clock=lambda: 10.0,
    )  # type: ignore[arg-type]
    return agent, engine, health, registry


def test_agent_pass_registers_deregisters_and_acks() -> None:
    agent, engine, health, registry = make_agent()
    engine.tasks = [task("t1", port=1001), task("t2", port=1002)]
    health.healthy = {"t1"}
    report = agent.run_once()
    assert (report.registered, report.deregistered, report.errors) == (1, 0, [])
    assert [b.task_id for b in registry.backends()] == ["t1"]
    assert registry.acks() == {"h1": registry.version()}
    assert health.checks["t1"].uri == "/ping"  # type: ignore[union-attr]
    health.healthy = {"t2"}
    report = agent.run_once()
    assert (report.registered, report.deregistered) == (1, 1)
    assert [b.task_id for b in registry.backends()] == ["t2"]
    assert engine.calls == 2  # one engine list call per pass


def test_agent_keeps_drain_marks_and_re_registers_what_vanished() -> None:
    agent, engine, health, registry = make_agent()
    engine.tasks = [task("t1", port=1001)]
    health.healthy = {"t1"}
    agent.run_once()
    registry.set_draining("web.main", "t1", True, now=10.0)
    assert agent.run_once().registered == 0  # the mark is not a change to undo
    registry.deregister("web.main", "t1")  # e.g. a ZooKeeper session expired
    assert agent.run_once().registered == 1
    assert registry.backends()[0].state == "drain"


def test_agent_survives_an_unreachable_registry() -> None:
    agent, engine, health, registry = make_agent()
    engine.tasks = [task("t1", port=1001)]
    health.healthy = {"t1"}
    agent.run_once()
    registry.down = True
    report = agent.run_once()
    assert any("registry down" in e for e in report.errors)
    registry.down = False
    assert agent.run_once().errors == []


class FakeProxy:
    """HAProxyProcess's surface the agent uses; ``outcomes`` drive ``supervise``."""

    def __init__(self, outcomes: list[str | Exception | None]) -> None:
        self.outcomes = outcomes
        self.state = None
        self.supervised = 0

    def supervise(self) -> str | None:
        self.supervised += 1
        outcome = self.outcomes.pop(0) if self.outcomes else None
        if isinstance(outcome, Exception):
            raise outcome
        return outcome

    def apply(self, namespaces: Any, backends: Any) -> Any:
        from paasport.discovery.haproxy import ApplyResult

        return ApplyResult(False, False, 0)


def test_agent_supervises_its_proxy_every_pass_and_reports_restarts() -> None:
    """Supervision comes first and does not depend on the registry; a restart is one warning
    event, a proxy that cannot be restarted one error event however many passes fail."""
    from paasport.discovery.haproxy import ProxyUnavailable

    events: list[tuple[str, str]] = []
    agent, _, _, registry = make_agent()
    agent.on_event = lambda level, message: events.append((level, message))
    down = ProxyUnavailable("haproxy did not start: cannot bind")
    agent.proxy = FakeProxy([None, "master gone; restarted", down, down, None])  # type: ignore[assignment]
    agent.run_once()
    registry.down = True  # the registry being unreachable does not stop supervision
    assert agent.run_once().restarted == "master gone; restarted"
    registry.down = False
    for _ in range(2):
        report = agent.run_once()
        assert any("could not be restarted: haproxy did not start" in e for e in report.errors)
    assert agent.run_once().errors == []
    assert agent.proxy.supervised == 5  # type: ignore[union-attr]
    assert [level for level, _ in events] == ["warning", "error"]
    assert "cannot bind" in events[1][1]


def test_a_failing_event_hook_never_stops_a_pass() -> None:
    agent = make_agent()[0]

    def broken(level: str, message: str) -> None:
        raise RuntimeError("event log is gone")

    agent.on_event = broken
    agent.proxy = FakeProxy(["restarted"])  # type: ignore[assignment]
    assert agent.run_once().restarted == "restarted"


TO_CHECK_CASES = [
    # name, lost_since, now, withdraw_after, expect tasks kept, withdrawn
    ("engine answers", None, 50.0, 10.0, True, False),
    ("engine away briefly: keep checking", 40.0, 45.0, 10.0, True, False),
    ("engine away past the session: withdraw", 40.0, 50.0, 10.0, False, True),
    ("one host never withdraws", 0.0, 1e6, None, True, False),
]


@pytest.mark.parametrize(
    "name,lost_since,now,after,kept,withdrawn", TO_CHECK_CASES, ids=[c[0] for c in TO_CHECK_CASES]
)
def test_tasks_to_check(
    name: str,
    lost_since: float | None,
    now: float,
    after: float | None,
    kept: bool,
    withdrawn: bool,
) -> None:
    last = [task("t1"), task("t2")]
    tasks, out = tasks_to_check(last, lost_since, now, after)
    assert (list(tasks) == last, out) == (kept, withdrawn)


class DownEngine(FakeEngine):
    down = False

    def list_app_versions(
        self, service: str | None = None, instance: str | None = None
    ) -> Sequence[AppVersion]:
        if self.down:
            raise EngineUnavailable("the Docker engine at unix:///x does not answer")
        return super().list_app_versions(service, instance)


def test_agent_checks_the_last_tasks_while_its_engine_is_away_then_withdraws() -> None:
    engine, health, registry = DownEngine(), FakeHealth(), FlakyRegistry()
    now = [10.0]
    events: list[tuple[str, str]] = []
    agent = Agent(
        engine,  # type: ignore[arg-type]
        registry,
        None,
        lambda: (NAMESPACES, [MAIN]),  # type: ignore[arg-type]
        agent_id="h1",
        health=health,  # type: ignore[arg-type]
        clock=lambda: now[0],
        on_event=lambda level, message: events.append((level, message)),
        withdraw_after=10.0,
    )
    engine.tasks = [task("t1", port=1001), task("t2", port=1002)]
    health.healthy = {"t1", "t2"}
    agent.run_once()
    assert {b.task_id for b in registry.backends()} == {"t1", "t2"}
    engine.down = True
    health.healthy = {"t1"}  # t2's container died with the engine: its checks fail
    now[0] = 12.0
    report = agent.run_once()
    assert any("does not answer" in e for e in report.errors)
    assert {b.task_id for b in registry.backends()} == {"t1"}  # the live one keeps serving
    now[0] = 22.5
    agent.run_once()
    assert list(registry.backends()) == []  # gone longer than a session: the host leaves
    assert [lvl for lvl, _ in events] == ["warning", "error"]
    engine.down = False
    health.healthy = {"t1", "t2"}
    now[0] = 30.0
    agent.run_once()
    assert {b.task_id for b in registry.backends()} == {"t1", "t2"}
    assert events[-1][0] == "info"
