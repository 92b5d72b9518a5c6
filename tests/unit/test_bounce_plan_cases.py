"""Case tables for bounce.plan and bounce.status: tests/cases/bounce/*.yaml.

Each case: ``method``, ``margin`` (default 1.0), ``desired`` (``{hash, replicas}`` or null),
``observed`` (app versions: ``hash`` + ``tasks``, each task a string ``"id [state] [health]
[draining] [started=N] [exit=N]"``), ``expect`` (actions, in order: ``create HASH N``,
``scale HASH N``, ``drain ID``, ``kill ID``, ``delete HASH``) and optionally ``status``
(fields of BounceStatus to compare).
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
from paasport.bounce.plan import bounce_status, plan
from paasport.types import AppSpec, AppVersion, Task

CASES_DIR = Path(__file__).parent.parent / "cases" / "bounce"
STATES = {"starting", "running", "exited", "dead"}
HEALTHS = {"unknown", "healthy", "unhealthy"}


def parse_task(text: str, config_hash: str) -> Task:
    task_id, *tokens = text.split()
    fields: dict[str, Any] = {"state": "running", "health": "unknown"}
    for token in tokens:
        if token in STATES:
            fields["state"] = token
        elif token in HEALTHS:
            fields["health"] = token
        elif token == "draining":
            fields["draining"] = True
        elif token.startswith("started="):
            fields["started_at"] = float(token.split("=", 1)[1])
        elif token.startswith("exit="):
            fields["exit_code"] = int(token.split("=", 1)[1])
        else:
            raise ValueError(f"unknown task token {token!r} in {text!r}")
    return Task(
        task_id=task_id,
        service="web",
        instance="main",
        cluster="local",
        config_hash=config_hash,
        git_sha="abc",
        **fields,
    )


def parse_versions(raw: list[dict[str, Any]]) -> list[AppVersion]:
    return [
        AppVersion(
            service="web",
            instance="main",
            cluster="local",
            config_hash=v["hash"],
            git_sha="abc",
            image="img",
            tasks=tuple(parse_task(t, v["hash"]) for t in v.get("tasks") or ()),
        )
        for v in raw
    ]


def spec(raw: dict[str, Any] | None) -> AppSpec | None:
    if raw is None:
        return None
    return AppSpec(
        service="web",
        instance="main",
        cluster="local",
        image="img",
        git_sha="abc",
        config_hash=raw["hash"],
        replicas=raw["replicas"],
    )


def render(action: Action) -> str:
    match action:
        case CreateAppVersion(spec=s, count=n):
            return f"create {s.config_hash} {n}"
        case ScaleAppVersion(spec=s, count=n):
            return f"scale {s.config_hash} {n}"
        case DrainTask(task=t):
            return f"drain {t.task_id}"
        case KillTask(task=t):
            return f"kill {t.task_id}"
        case DeleteAppVersion(config_hash=h):
            return f"delete {h}"
    raise AssertionError(f"unexpected action {action!r}")


def load_cases() -> list[Any]:
    params = []
    for path in sorted(CASES_DIR.glob("*.yaml")):
        for case in yaml.load(path.read_text(), Loader=yaml.CSafeLoader):
            params.append(pytest.param(case, id=f"{path.stem}: {case['name']}"))
    return params


@pytest.mark.parametrize("case", load_cases())
def test_plan_case(case: dict[str, Any]) -> None:
    desired = spec(case["desired"])
    observed = parse_versions(case.get("observed") or [])
    actions = plan(desired, observed, case["method"], case.get("margin", 1.0), now=1000.0)
    assert [render(a) for a in actions] == case["expect"]
    if "status" in case:
        status = bounce_status(desired, observed, case["method"], case.get("margin", 1.0))
        got = {key: getattr(status, key) for key in case["status"]}
        assert got == case["status"]


def test_case_tables_cover_every_method() -> None:
    methods = {case.values[0]["method"] for case in load_cases()}
    assert methods == {"crossover", "upthendown", "downthenup", "brutal"}
