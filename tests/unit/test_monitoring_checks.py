"""Checks and the alert state machine, driven by the case tables in tests/cases/monitoring/."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
import yaml

from paasport.monitoring import alerts
from paasport.monitoring.checks import (
    CHECKS,
    BounceView,
    CheckResult,
    CheckSettings,
    DeployOutcome,
    InstanceObservation,
)
from paasport.types import AppVersion, DeploymentState, InstanceConfig, MonitoringConfig, Task

CASES = Path(__file__).parent.parent / "cases" / "monitoring"


def _load(name: str) -> list[dict[str, Any]]:
    cases = yaml.safe_load((CASES / name).read_text())
    assert isinstance(cases, list)
    return cases


def _observation(case: dict[str, Any]) -> InstanceObservation:
    config = InstanceConfig(
        service="web",
        cluster="c1",
        instance="main",
        deploy_group="c1.main",
        instances=case.get("instances", 3),
        mem=512,
        monitoring=MonitoringConfig(**case.get("monitoring", {})),
    )
    deployment_spec = case.get("deployment", {})
    deployment = None
    if deployment_spec is not None:
        deployment = DeploymentState(
            docker_image="services-web:paasta-aaaaaaaa",
            git_sha="aaaaaaaa",
            desired_state=deployment_spec.get("desired_state", "start"),
        )
    tasks = tuple(
        Task(
            **{
                "task_id": f"task{i}",
                "service": "web",
                "instance": "main",
                "cluster": "c1",
                "config_hash": "h1",
                "git_sha": "aaaaaaaa",
                "state": "running",
                "health": "healthy",
                **spec,
            }
        )
        for i, spec in enumerate(case.get("tasks", []))
    )
    version = AppVersion(
        service="web",
        instance="main",
        cluster="c1",
        config_hash="h1",
        git_sha="aaaaaaaa",
        image="i",
        tasks=tasks,
    )
    bounce = case.get("bounce")
    return InstanceObservation(
        config=config,
        deployment=deployment,
        app_versions=(version,),
        backends_up=case.get("backends_up"),
        proxy_error=case.get("proxy_error", ""),
        bounce=BounceView(**bounce) if bounce is not None else None,
        crashes=tuple((float(t), str(i)) for t, i in case.get("crashes", [])),
        ooms=tuple((float(t), str(i)) for t, i in case.get("ooms", [])),
        deploys=tuple(DeployOutcome(**d) for d in case.get("deploys", [])),
    )


@pytest.mark.parametrize("case", _load("checks.yaml"), ids=lambda c: c["name"])
def test_check(case: dict[str, Any]) -> None:
    obs = _observation(case)
    result = CHECKS[case["check"]](obs, CheckSettings(), float(case.get("now", 10000)))
    expect = case["expect"]
    assert (result.check, result.service, result.instance, result.cluster) == (
        case["check"],
        "web",
        "main",
        "c1",
    )
    assert result.status == expect["status"], result.message
    assert result.message.startswith("web.main on c1: ")
    if "message" in expect:
        assert expect["message"] in result.message
    if "can_page" in expect:
        assert result.can_page is expect["can_page"]
    if "alert_after" in expect:
        assert result.alert_after == expect["alert_after"]


def test_every_check_has_cases() -> None:
    assert {c["check"] for c in _load("checks.yaml")} == set(CHECKS)


def _result(status: str, **extra: Any) -> CheckResult:
    return CheckResult(
        check="replication",
        service="web",
        instance="main",
        cluster="c1",
        status=status,  # type: ignore[arg-type]
        message=f"web.main is {status}",
        **extra,
    )


@pytest.mark.parametrize("case", _load("alerts.yaml"), ids=lambda c: c["name"])
def test_alert_state_machine(case: dict[str, Any]) -> None:
    routing = MonitoringConfig(**case["routing"])
    state: alerts.AlertState | None = None
    for step in case["steps"]:
        extra = {k: step[k] for k in ("alert_after", "can_page") if k in step}
        state, sent = alerts.step(state, _result(step["status"], **extra), routing, step["now"])
        expect = step["expect"]
        if expect is None:
            assert sent is None, f"at {step['now']}: unexpected {sent}"
            continue
        assert sent is not None, f"at {step['now']}: expected {expect}"
        for name, value in expect.items():
            assert getattr(sent, name) == value, f"at {step['now']}: {name}"
        assert sent.key == ("replication", "web", "main", "c1")
        assert sent.routing == routing
        assert (sent.ends_at is None) == sent.firing


def test_evaluate_dedups_by_key_and_resolve_vanished() -> None:
    routing = MonitoringConfig(alert_after=0)
    crit = _result("CRIT")
    other = replace(crit, instance="canary")
    states, sent = alerts.evaluate({}, [(crit, routing), (crit, routing), (other, routing)], 1.0)
    assert [a.instance for a in sent] == ["main", "canary"]  # the duplicate is deduplicated
    assert len(alerts.active_alerts(states)) == 2

    states, sent = alerts.evaluate(states, [(crit, routing)], 2.0)
    assert sent == []  # still firing, nothing new to say

    states, sent = alerts.resolve_vanished(states, [("web", "main", "c1")], 3.0)
    assert [(a.instance, a.reason, a.ends_at) for a in sent] == [("canary", "resolved", 3.0)]
    assert "no longer configured" in sent[0].message
    assert [a.instance for a in alerts.active_alerts(states)] == ["main"]
