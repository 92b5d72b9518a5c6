"""Case tables for reconcile.step: tests/cases/reconcile/{backoff,drain}.yaml.

backoff.yaml: a bounce plan + crash history -> what next_step performs, the events it records,
how long it holds back and the history after; drain.yaml: draining tasks -> which stop now.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from paasport.bounce.actions import (
    Action,
    CreateAppVersion,
    DeleteAppVersion,
    DrainTask,
    KillTask,
    ScaleAppVersion,
)
from paasport.bounce.plan import FAILED_HEALTH_REASON
from paasport.reconcile.step import (
    DrainView,
    StepMemory,
    StepPolicy,
    drain_stops,
    next_step,
)
from paasport.types import AppSpec, Task

CASES_DIR = Path(__file__).parent.parent / "cases" / "reconcile"


def load(name: str) -> list[dict[str, Any]]:
    cases = yaml.safe_load((CASES_DIR / name).read_text())
    assert isinstance(cases, list)
    return cases


def spec(config_hash: str, replicas: int = 1) -> AppSpec:
    return AppSpec(
        service="web",
        instance="main",
        cluster="local",
        config_hash=config_hash,
        git_sha="abc",
        image="img",
        replicas=replicas,
    )


def parse_task(task_id: str, text: str) -> Task:
    config_hash, state, *tokens = text.split()
    fields: dict[str, Any] = {"health": "unknown"}
    for token in tokens:
        if token in ("healthy", "unhealthy"):
            fields["health"] = token
        elif token == "oom":
            fields["oom_killed"] = True
        elif token == "lost":
            fields["host_lost"] = True
            fields["node"] = "lab3"
        elif token.startswith("started="):
            fields["started_at"] = float(token.split("=", 1)[1])
        elif token.startswith("exit="):
            fields["exit_code"] = int(token.split("=", 1)[1])
        else:
            raise ValueError(f"unknown task token {token!r} in {text!r}")
    return Task(task_id, "web", "main", "local", config_hash, "abc", state, **fields)  # type: ignore[arg-type]


def parse_action(text: str, tasks: dict[str, Task], desired: AppSpec | None) -> Action:
    verb, *rest = text.split()
    if verb in ("create", "scale"):
        count = int(rest[1])
        target = desired if desired and desired.config_hash == rest[0] else spec(rest[0])
        return (
            CreateAppVersion(target, count) if verb == "create" else ScaleAppVersion(target, count)
        )
    if verb == "kill":
        return KillTask(tasks[rest[0]], reason="corpse")
    if verb == "failkill":
        return KillTask(tasks[rest[0]], reason=FAILED_HEALTH_REASON)
    if verb == "drain":
        return DrainTask(tasks[rest[0]])
    if verb == "delete":
        return DeleteAppVersion("web", "main", rest[0])
    raise ValueError(f"unknown action {text!r}")


def describe(action: Action) -> str:
    if isinstance(action, CreateAppVersion):
        return f"create {action.spec.config_hash} {action.count}"
    if isinstance(action, ScaleAppVersion):
        return f"scale {action.spec.config_hash} {action.count}"
    if isinstance(action, KillTask):
        verb = "failkill" if action.reason == FAILED_HEALTH_REASON else "kill"
        return f"{verb} {action.task.task_id}"
    if isinstance(action, DrainTask):
        return f"drain {action.task.task_id}"
    return f"delete {action.config_hash}"


@pytest.mark.parametrize("case", load("backoff.yaml"), ids=lambda c: str(c["name"]))
def test_next_step(case: dict[str, Any]) -> None:
    desired = spec(case["desired"]) if case.get("desired") else None
    tasks = {tid: parse_task(tid, text) for tid, text in (case.get("tasks") or {}).items()}
    planned = [parse_action(a, tasks, desired) for a in case["plan"]]
    memory = StepMemory(
        tuple(float(t) for t in case.get("crash_times", ())), frozenset(case.get("seen", ()))
    )
    policy = StepPolicy(
        configured=case.get("configured", True), backoff_seconds=case.get("backoff", 10.0)
    )
    lines = {tid: ["booting", f"fatal {tid}"] for tid in tasks}
    step = next_step(planned, desired, policy, memory, lines, float(case.get("now", 1000.0)))
    expect = case["expect"]
    assert [describe(a) for a in step.actions] == expect["actions"]
    assert [str(e.kind) for e in step.events] == expect["events"]
    assert step.backoff_wait == expect["wait"]
    assert list(step.memory.crash_times) == [float(t) for t in expect["crash_times"]]
    for event in step.events:  # every new corpse is recorded once, with its last lines
        task_id = event.data["task_id"]
        assert task_id in step.memory.seen_corpses and task_id not in memory.seen_corpses
        if str(event.kind) == "host":  # lost with its host: named, no log lines to show
            assert event.data["node"] == "lab3" and "host lab3 is down" in event.message
        elif str(event.kind) != "unhealthy":
            assert event.data["last_lines"] == ["booting", f"fatal {task_id}"]


@pytest.mark.parametrize("case", load("drain.yaml"), ids=lambda c: str(c["name"]))
def test_drain_stops(case: dict[str, Any]) -> None:
    progress = {}
    for tid, text in (case.get("progress") or {}).items():
        done = text == "done"
        progress[tid] = DrainView(tid, done, "" if done else text.split(": ", 1)[1])
    policy = StepPolicy(
        noop_drain=case.get("noop", False), drain_timeout_seconds=case.get("timeout", 60.0)
    )
    decided = drain_stops(
        {k: float(v) for k, v in case["draining_since"].items()},
        progress,
        set(case.get("killing", ())),
        policy,
        float(case.get("now", 1000.0)),
    )
    expect = case["expect"]
    assert list(decided.stop) == expect["stop"]
    assert list(decided.timed_out) == expect["timed_out"]
    assert decided.waiting_on == expect["waiting_on"]
