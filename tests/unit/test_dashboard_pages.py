"""api.pages as tables: what needs attention, which actions make sense, and that everything
shown is escaped."""

from __future__ import annotations

from typing import Any

import pytest

from paasport.api.pages import (
    attention_reasons,
    instance_actions,
    log_section,
    overview_body,
    rollback_action,
    service_body,
)


def entry(**kw: Any) -> dict[str, Any]:
    base: dict[str, Any] = {
        "service": "web", "instance": "main", "cluster": "c1", "state": "Running", "ok": True,
        "why": "", "desired_state": "start", "bounce": None, "tasks": [], "app_versions": [],
        "expected": 2, "running": 2, "healthy": 2, "git_sha": "a" * 40,
    }  # fmt: skip
    base.update(kw)
    return base


BOUNCING = {"in_progress": True, "method": "crossover", "new_healthy": 1, "new_total": 2,
            "old_remaining": 1, "waiting_on": "health checks"}  # fmt: skip


@pytest.mark.parametrize(
    ("e", "alerting", "reasons"),
    [
        (entry(), set(), []),
        (entry(ok=False, state="Degraded"), set(), ["degraded"]),
        (entry(ok=False, state="Config error"), set(), ["config error"]),
        (entry(bounce=BOUNCING), set(), ["bouncing"]),
        (entry(), {("web", "main", "c1")}, ["alerting"]),
        (entry(), {("web", "main", "c2")}, []),  # another cluster's alert
        (entry(ok=False, state="Unreachable", instance=None), set(), ["unreachable"]),
    ],
)
def test_what_needs_attention(
    e: dict[str, Any], alerting: set[tuple[str, str, str]], reasons: list[str]
) -> None:
    assert attention_reasons(e, alerting) == reasons


@pytest.mark.parametrize(
    ("e", "enabled"),
    [
        (entry(desired_state="start"), {"restart": True, "stop": True, "start": False}),
        (entry(desired_state="stop"), {"restart": False, "stop": False, "start": True}),
        (entry(cluster="c2"), {}),  # the API changes only its own cluster's instances
        (entry(instance=None), {}),
    ],
)
def test_instance_actions(e: dict[str, Any], enabled: dict[str, bool]) -> None:
    actions = instance_actions(e, "c1")
    assert {a.label: a.enabled for a in actions} == enabled
    assert all(a.url == f"/v1/services/web/main/{a.label}" for a in actions)


def deploy(sha: str, group: str = "c1.main") -> dict[str, Any]:
    return {"kind": "deploy", "deploy_group": group, "git_sha": sha * 40, "time": "t"}


@pytest.mark.parametrize(
    ("history", "enabled"),
    [
        ([], False),
        ([deploy("b")], False),
        ([deploy("b"), deploy("b")], False),  # the same sha again: nothing to go back to
        ([deploy("b"), deploy("a")], True),
        ([deploy("b"), deploy("a", "c2.main")], False),  # another group's history
        ([{"kind": "start", "deploy_group": None, "git_sha": "c" * 40}, deploy("b")], False),
    ],
)
def test_rollback_only_with_an_earlier_sha(history: list[dict[str, Any]], enabled: bool) -> None:
    action = rollback_action("web", "c1.main", history)
    assert action.enabled is enabled
    assert action.url == "/v1/services/web/deployments/c1.main/rollback"
    if enabled:
        assert action.confirm == "Roll web c1.main back from bbbbbbbb to aaaaaaaa?"


def test_everything_shown_is_escaped() -> None:
    evil = "<script>alert(1)</script>"
    html = service_body(
        "web",
        team=evil,
        description=evil,
        local_cluster="c1",
        entries=[entry(ok=False, state="Degraded", why=evil)],
        history=evil,
        deploy_groups=["c1.main"],
        timeline=[{"time": 1.0, "kind": "mark", "level": "info", "message": evil}],
        events=[],
        alerts=[
            {"check": evil, "status": "CRIT", "instance": "main", "cluster": "c1", "message": evil}
        ],
    )
    assert "<script>" not in html and "&lt;script&gt;" in html
    tail = log_section(evil, [{"task": evil, "message": evil}])
    assert "<script>" not in tail and "&lt;script&gt;" in tail
    overview = overview_body([entry(why=evil, ok=False, state="Degraded")], {"web": evil}, [], evil)
    assert "<script>" not in overview


def test_the_overview_lists_attention_first_and_filters_by_team() -> None:
    entries = [entry(), entry(service="api", ok=False, state="Degraded", why="1 task crashed")]
    html = overview_body(entries, {"web": "web-team", "api": "payments"}, [])
    attention = html[html.index("Needs attention") : html.index("All services")]
    assert "api.main" in attention and "1 task crashed" in attention and "web.main" not in attention
    only = overview_body(entries, {"web": "web-team", "api": "payments"}, [], "payments")
    assert "/services/api" in only and "/services/web" not in only
