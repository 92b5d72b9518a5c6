"""drain_status (pure) as a table, and RegistryDrainer over the in-memory registry."""

from __future__ import annotations

import pytest

from paasport.discovery.drain import (
    FENCE_SECONDS,
    DrainStatus,
    RegistryDrainer,
    drain_status,
    drains_begun,
    stale_fences,
)
from paasport.discovery.registry import AgentReport, Backend, DrainMark, MemoryRegistry
from paasport.types import InstanceConfig, Task

MARK = DrainMark("web.main", "t1", version=7, since=100.0)


def rep(agent: str, version: int, sessions: int = 0) -> AgentReport:
    return AgentReport(agent, version, 0.0, {"web.main/t1": sessions} if sessions else {})


CASES = [
    ("not in any namespace", [], [], {}, 101.0, True, ""),
    ("no mark yet", ["web.main"], [], {"h1": rep("h1", 9)}, 101.0, False, "drain not marked"),
    ("no live proxy", ["web.main"], [MARK], {}, 101.0, True, ""),
    (
        "one proxy behind",
        ["web.main"],
        [MARK],
        {"h1": rep("h1", 7), "h2": rep("h2", 6)},
        101.0,
        False,
        "proxy h2 (applied version 6 < 7)",
    ),
    ("all acked", ["web.main"], [MARK], {"h1": rep("h1", 7), "h2": rep("h2", 8)}, 101.0, True, ""),
    (
        "sessions still open",
        ["web.main"],
        [MARK],
        {"h1": rep("h1", 8, sessions=3)},
        101.0,
        False,
        "3 open session(s) on proxy h1",
    ),
    (
        "timeout ends the wait",
        ["web.main"],
        [MARK],
        {"h1": rep("h1", 8, sessions=3)},
        160.0,
        True,
        "drain timeout (60s)",
    ),
    (
        "other namespace unmarked",
        ["web.main", "web.alt"],
        [MARK],
        {"h1": rep("h1", 8)},
        101.0,
        False,
        "drain not marked in web.alt",
    ),
]


@pytest.mark.parametrize(
    "name,namespaces,marks,reports,now,done,waiting", CASES, ids=[c[0] for c in CASES]
)
def test_drain_status(
    name: str,
    namespaces: list[str],
    marks: list[DrainMark],
    reports: dict[str, AgentReport],
    now: float,
    done: bool,
    waiting: str,
) -> None:
    status = drain_status("t1", namespaces, marks, reports, now, timeout=60.0)
    assert status.done is done
    assert waiting in status.waiting_on
    if not waiting:
        assert status.waiting_on == ""


TASK = Task("t1", "web", "main", "local", "abc", "sha", "running", port=1001)
CONFIG = InstanceConfig("web", "local", "main", "local.main", registrations=("web.main",))


def test_registry_drainer_round_trip() -> None:
    reg = MemoryRegistry()
    reg.register(Backend("web.main", "t1", "127.0.0.1", 1001, "h1"))
    reg.ack("h1", reg.version(), now=0.0)
    drainer = RegistryDrainer(reg, clock=lambda: 100.0)
    drainer.start(TASK, CONFIG)
    assert reg.backends()[0].state == "drain"
    status = drainer.status(TASK, CONFIG, now=100.5)
    assert not status.done and "proxy h1" in status.waiting_on
    reg.ack("h1", reg.version(), now=100.6, sessions={"web.main/t1": 0})
    assert drainer.status(TASK, CONFIG, now=100.7) == DrainStatus(True, "")
    drainer.forget(TASK)
    assert reg.backends() == () and reg.drain_marks() == ()


def test_noop_drain_method_never_waits() -> None:
    reg = MemoryRegistry()
    reg.register(Backend("web.main", "t1", "127.0.0.1", 1001, "h1"))
    reg.ack("h1", 0, now=0.0)
    config = InstanceConfig("web", "local", "main", "local.main", drain_method="noop")
    drainer = RegistryDrainer(reg)
    drainer.start(TASK, config)
    assert reg.drain_marks() == ()
    assert drainer.status(TASK, config, now=1.0).done


@pytest.mark.parametrize(
    ("task_ids", "marks", "expect"),
    [
        (["t1"], [], {}),
        (["t1"], [MARK], {"t1": 100.0}),
        (["t2"], [MARK], {}),
        (["t1"], [MARK, DrainMark("web.canary", "t1", 9, 90.0)], {"t1": 90.0}),
        (["t1", "t2"], [MARK, DrainMark("web.main", "t2", 8, 105.0)], {"t1": 100.0, "t2": 105.0}),
    ],
    ids=["no mark", "marked", "another task's mark", "earliest of two", "two tasks"],
)
def test_drains_begun(
    task_ids: list[str], marks: list[DrainMark], expect: dict[str, float]
) -> None:
    assert drains_begun(task_ids, marks) == expect


def test_registry_drainer_names_drains_begun_by_an_earlier_process() -> None:
    reg = MemoryRegistry()
    RegistryDrainer(reg, clock=lambda: 100.0).start(TASK, CONFIG)
    fresh = RegistryDrainer(reg)  # deployd restarted
    assert fresh.marked([TASK]) == {"t1": 100.0}
    fresh.forget(TASK)
    assert fresh.marked([TASK]) == {}


def test_a_fenced_task_leaves_the_proxies_and_a_re_registration_stays_drained() -> None:
    reg = MemoryRegistry()
    reg.register(Backend("web.main", "t1", "10.0.0.3", 1001, "lab3"))
    drainer = RegistryDrainer(reg, clock=lambda: 100.0)
    drainer.fence(TASK, CONFIG)
    assert reg.backends() == ()
    # lab3 comes back and its agent registers the task before Swarm stopped it there
    reg.register(Backend("web.main", "t1", "10.0.0.3", 1001, "lab3"))
    assert [b.state for b in reg.backends()] == ["drain"]
    assert drainer.sweep(set(), now=100.0 + FENCE_SECONDS - 1) == 0  # too young
    assert drainer.sweep({"t1"}, now=100.0 + FENCE_SECONDS + 1) == 0  # the task still runs
    assert drainer.sweep(set(), now=100.0 + FENCE_SECONDS + 1) == 1
    assert reg.drain_marks() == ()


@pytest.mark.parametrize(
    ("live", "now", "expect"),
    [
        (set(), 100.0 + FENCE_SECONDS + 1, ["t1"]),
        (set(), 100.0 + FENCE_SECONDS, []),
        ({"t1"}, 10_000.0, []),
    ],
    ids=["old and gone", "not old enough", "still running"],
)
def test_stale_fences(live: set[str], now: float, expect: list[str]) -> None:
    assert [m.task_id for m in stale_fences([MARK], live, now, FENCE_SECONDS)] == expect
