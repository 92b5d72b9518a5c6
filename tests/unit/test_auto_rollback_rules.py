"""The auto-rollback decisions as case tables: when a new version is bad (monitoring.rollback),
which deploys are armed and which sha a rollback goes back to (platform.autorollback)."""

from __future__ import annotations

import pytest

from paasport.config.merge import rollback_policies
from paasport.monitoring.events import Event
from paasport.monitoring.rollback import (
    CrashSeen,
    ErrorCounts,
    HealthFailure,
    Signals,
    judge,
    patience_seconds,
)
from paasport.platform.autorollback import armed_policy, good_sha
from paasport.types import HealthCheck, RollbackPolicy

POLICY = RollbackPolicy(min_restarts=2, error_rate_margin=0.05, min_requests=50)


@pytest.mark.parametrize(
    ("signals", "reason", "message"),
    [
        pytest.param(Signals(), None, None, id="nothing: fine"),
        pytest.param(Signals(crashes=[CrashSeen(1, "t1", 1)]), None, None,
                     id="one crash is no loop"),
        pytest.param(
            Signals(crashes=[CrashSeen(2, "t2", 3, last_line="boom"), CrashSeen(1, "t1", 1)]),
            "crash loop",
            "crash-looping: 2 crashes of the new version (exit codes 1, 3); last line: boom",
            id="two crashes: a loop, codes oldest first",
        ),
        pytest.param(
            Signals(crashes=[CrashSeen(1, "t1", None, oom=True), CrashSeen(2, "t1", 137)]),
            "crash loop", "crash-looping: 2 crashes of the new version (exit codes OOM, 137)",
            id="OOM kills count",
        ),
        pytest.param(
            Signals(health=[HealthFailure(5, "t1", "HTTP 404 from /status")]),
            "health checks", "failing its health checks: task t1: HTTP 404 from /status",
            id="a task that failed its health checks",
        ),
        pytest.param(Signals(new=ErrorCounts(49, 49)), None, None,
                     id="too few requests to judge"),
        pytest.param(
            Signals(new=ErrorCounts(60, 100)), "error rate",
            "error rate through the proxy: new version 60.0% errors (60 of 100 requests) vs no "
            "error before it: worse",
            id="errors and no old version",
        ),
        pytest.param(Signals(new=ErrorCounts(4, 100)), None, None,
                     id="4% is within the 5% margin"),
        pytest.param(
            Signals(new=ErrorCounts(12, 100), old=ErrorCounts(10, 100)), None, None,
            id="as bad as the old version: not worse",
        ),
        pytest.param(
            Signals(new=ErrorCounts(30, 100), old=ErrorCounts(1, 1000)), "error rate",
            "error rate through the proxy: new version 30.0% errors (30 of 100 requests) vs 0.1% "
            "errors (1 of 1,000 requests) of the old version: worse",
            id="worse than the old version",
        ),
    ],
)  # fmt: skip
def test_judge(signals: Signals, reason: str | None, message: str | None) -> None:
    verdict = judge(signals, POLICY)
    assert (verdict.reason if verdict else None) == reason
    assert (verdict.message if verdict else None) == message


def test_a_crash_loop_comes_before_errors_and_carries_its_evidence() -> None:
    verdict = judge(
        Signals(crashes=[CrashSeen(1, "a", 1), CrashSeen(2, "b", 1)], new=ErrorCounts(99, 100)),
        POLICY,
    )
    assert verdict is not None and verdict.reason == "crash loop"
    assert [c["task"] for c in verdict.evidence["crashes"]] == ["a", "b"]


def test_patience() -> None:
    check = HealthCheck(grace_period_seconds=5, interval_seconds=1, timeout_seconds=1)
    assert patience_seconds(check) == 11


def mark(t: float, group: str, sha: str, **data: object) -> Event:
    fields = {"deploy_group": group, "git_sha": sha, "action": "deploy", **data}
    return Event(time=t, level="info", kind="mark", service="web", message="", data=fields)


CONFIGURED = RollbackPolicy(window_seconds=120)


@pytest.mark.parametrize(
    ("marks", "configured", "policy", "at"),
    [
        pytest.param([], None, None, None, id="not armed"),
        pytest.param([], CONFIGURED, CONFIGURED, None, id="deploy.yaml arms it (no mark seen)"),
        pytest.param([mark(5, "g", "s")], CONFIGURED, CONFIGURED, 5, id="from its mark"),
        pytest.param([mark(5, "g", "s", auto_rollback=True)], None, RollbackPolicy(), 5,
                     id="--auto-rollback arms it"),
        pytest.param([mark(5, "g", "s", auto_rollback=True, auto_rollback_window=60)], None,
                     RollbackPolicy(window_seconds=60), 5, id="with its window"),
        pytest.param([mark(5, "g", "s", action="rollback")], CONFIGURED, None, 5,
                     id="a rollback is never judged"),
        pytest.param([mark(5, "g", "other", auto_rollback=True), mark(6, "h", "s",
                     auto_rollback=True)], None, None, None, id="another sha or group"),
        pytest.param([mark(9, "g", "s"), mark(5, "g", "s", auto_rollback=True)], None, None, 9,
                     id="the newest mark of that sha decides"),
    ],
)  # fmt: skip
def test_armed_policy(
    marks: list[Event], configured: RollbackPolicy | None, policy: RollbackPolicy | None,
    at: float | None,
) -> None:  # fmt: skip
    assert armed_policy(marks, "g", "s", configured) == (policy, at)


A, B, C = "a" * 40, "b" * 40, "c" * 40


@pytest.mark.parametrize(
    ("refs", "good"),
    [
        pytest.param({"refs/tags/paasta-g-20240101T000000-deploy": A,
                      "refs/tags/paasta-g-20240102T000000-deploy": B}, A, id="the one before"),
        pytest.param({"refs/tags/paasta-g-20240102T000000-deploy": B}, None, id="none before"),
        pytest.param({"refs/tags/paasta-g-20240101T000000-deploy": A,
                      "refs/tags/paasta-g-20240102T000000-deploy": C,
                      "refs/tags/paasta-g-20240102T000001-rollback": C,
                      "refs/tags/paasta-g-20240103T000000-deploy": B}, A,
                     id="skips a sha that was rolled back from"),
        pytest.param({"refs/tags/paasta-g-20240101T000000-deploy": A,
                      "refs/tags/paasta-h-20240102T000000-deploy": C,
                      "refs/tags/paasta-g-20240103T000000-deploy": B}, A,
                     id="only this group's deploys"),
    ],
)  # fmt: skip
def test_good_sha(refs: dict[str, str], good: str | None) -> None:
    assert good_sha(refs, "g", B) == good


def test_deploy_yaml_steps_give_the_policies() -> None:
    pipeline = [
        {"step": "itest"},
        {"step": "canary", "auto_rollback": True, "auto_certify_delay": 120},
        {"parallel": [{"step": "prod.a", "auto_rollback": True,
                       "min_restarts_for_crashloop_rollback": 3}, {"step": "prod.b"}]},
        {"step": "prod.c", "auto_rollback": False},
    ]  # fmt: skip
    assert rollback_policies(pipeline) == {
        "canary": RollbackPolicy(window_seconds=120),
        "prod.a": RollbackPolicy(min_restarts=3),
    }


def test_counts_add_up_and_say_their_latency() -> None:
    total = ErrorCounts(1, 100, 1200.0) + ErrorCounts(0, 100, 800.0)
    assert total == ErrorCounts(1, 200, 2000.0)
    assert total.line() == "0.5% errors (1 of 200 requests, 10 ms)"
    assert ErrorCounts(0, 10).line() == "0.0% errors (0 of 10 requests)"  # no rtime: not said


def test_a_standby_guard_touches_nothing() -> None:
    from typing import Any, cast

    from paasport.config.system import SystemConfig
    from paasport.platform.autorollback import AutoRollback

    class Untouchable:
        def __getattr__(self, name: str) -> Any:
            raise AssertionError(f"a standby guard used {name}")

    nothing = cast(Any, Untouchable())
    guard = AutoRollback(SystemConfig(), nothing, nothing, nothing, may_act=lambda: False)
    assert guard.pass_once() == []
