"""The monitor loop with fakes: alerts after alert_after, resolution, faults that stay contained."""

from __future__ import annotations

import threading
from collections.abc import Sequence
from pathlib import Path

import pytest

from paasport.errors import EngineUnavailable
from paasport.monitoring.alerts import Alert
from paasport.monitoring.checks import CHECKS, BounceView, CheckResult, CheckSettings
from paasport.monitoring.events import Event, EventLog
from paasport.monitoring.monitor import Monitor
from paasport.monitoring.sinks import SinkUnavailable
from paasport.types import AppVersion, DeploymentState, InstanceConfig, MonitoringConfig, Task

ROUTING = MonitoringConfig(team="web-team", page=True, alert_after=30, realert_every=0)
CONFIG = InstanceConfig(
    service="web", cluster="c1", instance="main", deploy_group="c1.main", instances=2,
    monitoring=ROUTING,
)  # fmt: skip
DEPLOYED = DeploymentState(docker_image="img", git_sha="a" * 40)


class FakeEngine:
    cluster = "c1"

    def __init__(self) -> None:
        self.healthy = 2
        self.down = False

    def list_app_versions(
        self, service: str | None = None, instance: str | None = None
    ) -> Sequence[AppVersion]:
        if self.down:
            raise EngineUnavailable("docker daemon did not answer")
        tasks = tuple(
            Task(task_id=f"t{i}", service="web", instance="main", cluster="c1",
                 config_hash="h", git_sha="a" * 40, state="running", health="healthy")
            for i in range(self.healthy)
        )  # fmt: skip
        other = AppVersion(service="web", instance="main", cluster="other", config_hash="h",
                           git_sha="a", image="img", tasks=tasks)  # fmt: skip
        return [
            AppVersion(service="web", instance="main", cluster="c1", config_hash="h",
                       git_sha="a" * 40, image="img", tasks=tasks),
            other,
        ]  # fmt: skip


class RecordingSink:
    def __init__(self, name: str, resend_active: bool = False) -> None:
        self.name = name
        self.resend_active = resend_active
        self.batches: list[list[Alert]] = []

    def deliver(self, alerts: Sequence[Alert], now: float) -> None:
        self.batches.append(list(alerts))


class BlockedSink:
    name = "blocked"
    resend_active = False

    def __init__(self) -> None:
        self.release = threading.Event()

    def deliver(self, alerts: Sequence[Alert], now: float) -> None:
        self.release.wait(30)
        raise SinkUnavailable("connection timed out")


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def events(tmp_path: Path) -> EventLog:
    return EventLog(tmp_path / "events.sqlite")


def _monitor(events: EventLog, engine: FakeEngine, clock: Clock, **kw: object) -> Monitor:
    configs = kw.pop("configs", [CONFIG])
    kw.setdefault("load_deployments", lambda cs: {(c.service, c.instance): DEPLOYED for c in cs})
    return Monitor(
        cluster="c1",
        engine=engine,
        events=events,
        load_instances=lambda: configs,  # type: ignore[return-value,arg-type]
        clock=clock,
        metrics=False,
        **kw,  # type: ignore[arg-type]
    )


def test_replication_alert_fires_after_alert_after_and_resolves(events: EventLog) -> None:
    engine, clock, sink = FakeEngine(), Clock(), RecordingSink("rec")
    monitor = _monitor(events, engine, clock, sinks=[sink])
    assert {r.status for r in monitor.run_once().results} == {"OK"}

    engine.healthy = 0
    clock.now = 1010
    assert monitor.run_once().alerts == ()  # failing, but not for alert_after yet
    clock.now = 1039
    assert monitor.run_once().alerts == ()
    clock.now = 1040
    fired = monitor.run_once().alerts
    assert [(a.check, a.reason, a.severity, a.starts_at) for a in fired] == [
        ("replication", "new", "page", 1010)
    ]
    assert "0/2 healthy tasks" in fired[0].message

    engine.healthy = 2
    clock.now = 1050
    resolved = monitor.run_once().alerts
    assert [(a.check, a.reason, a.ends_at) for a in resolved] == [("replication", "resolved", 1050)]
    monitor.wait_sinks()
    assert [[a.reason for a in b] for b in sink.batches] == [["new"], ["resolved"]]
    kinds = [(e.kind, e.level) for e in events.query(service="web")]
    assert ("alert", "critical") in kinds and ("alert", "info") in kinds
    checks = [e.message for e in events.query(kinds=["check"])]
    assert any("replication OK -> CRIT" in m for m in checks)
    assert any("replication CRIT -> OK" in m for m in checks)
    monitor.close()


def test_resend_active_sinks_get_every_firing_alert_each_pass(events: EventLog) -> None:
    engine, clock = FakeEngine(), Clock()
    am = RecordingSink("am", resend_active=True)
    monitor = _monitor(events, engine, clock, sinks=[am])
    engine.healthy = 0
    for now in (1000, 1030, 1040):
        clock.now = now
        monitor.run_once()
    engine.healthy = 2
    clock.now = 1050
    monitor.run_once()
    monitor.wait_sinks()
    assert [[(a.reason, a.ends_at) for a in b] for b in am.batches] == [
        [("new", None)],
        [("new", None)],
        [("resolved", 1050)],
    ]
    monitor.close()


def test_a_check_that_raises_is_logged_and_the_others_keep_working(events: EventLog) -> None:
    def broken(*_: object) -> CheckResult:
        raise ZeroDivisionError("boom")

    engine, clock = FakeEngine(), Clock()
    monitor = _monitor(events, engine, clock, checks={**CHECKS, "broken": broken})
    report = monitor.run_once()
    assert {r.check for r in report.results} == set(CHECKS)
    assert report.errors == ("check broken raised on web.main: ZeroDivisionError: boom",)
    logged = events.query(kinds=["check"], level="error")
    assert [e.message for e in logged] == [report.errors[0]]
    monitor.close()


def test_a_blocked_sink_does_not_hold_up_passes_or_other_sinks(events: EventLog) -> None:
    engine, clock = FakeEngine(), Clock()
    blocked, rec = BlockedSink(), RecordingSink("rec")
    monitor = _monitor(events, engine, clock, sinks=[blocked, rec])
    engine.healthy = 0
    for now in (1000, 1030, 1031, 1032):
        clock.now = now
        monitor.run_once()  # returns although `blocked` hangs in deliver
    assert monitor.workers[2].wait_idle(5)  # rec (index 0 is the event log)
    assert [a.reason for b in rec.batches for a in b] == ["new"]
    blocked.release.set()
    assert monitor.wait_sinks(5)
    failures = events.query(kinds=["monitor"])
    assert [e.message for e in failures] == ["sink blocked failed: connection timed out"]
    monitor.close()


def test_engine_down_keeps_alerts_and_says_so_once(events: EventLog) -> None:
    engine, clock = FakeEngine(), Clock()
    monitor = _monitor(events, engine, clock, sinks=[])
    engine.healthy = 0
    for now in (1000, 1030):
        clock.now = now
        monitor.run_once()
    assert len(monitor.states) == 1
    engine.down = True
    for now in (1040, 1050):
        clock.now = now
        assert monitor.run_once().errors == ("docker daemon did not answer",)
    assert len(monitor.states) == 1  # a blind monitor resolves nothing
    assert len(events.query(kinds=["monitor"])) == 1
    monitor.close()


def test_removed_instance_resolves_its_alerts(events: EventLog) -> None:
    engine, clock = FakeEngine(), Clock()
    configs = [CONFIG]
    monitor = _monitor(events, engine, clock, configs=configs)
    engine.healthy = 0
    for now in (1000, 1030):
        clock.now = now
        monitor.run_once()
    configs.clear()
    clock.now = 1040
    sent = monitor.run_once().alerts
    assert [(a.reason, a.message) for a in sent] == [
        ("resolved", "web.main on c1: no longer configured")
    ]
    monitor.close()


def test_crash_and_deploy_events_feed_the_checks(events: EventLog) -> None:
    engine, clock = FakeEngine(), Clock()
    for i in range(4):
        events.record(Event(time=900 + i, level="error", kind="crash", service="web",
                            instance="main", cluster="c1", message="exit 1",
                            data={"task_id": f"dead{i}"}))  # fmt: skip
    events.record(Event(time=950, level="error", kind="deploy", service="web", cluster="c1",
                        message="timed out waiting for c1.main",
                        data={"deploy_group": "c1.main", "git_sha": "a" * 40}))  # fmt: skip
    events.record(Event(time=950, level="error", kind="crash", service="web",
                        instance="canary", cluster="c1", message="other instance"))  # fmt: skip
    monitor = _monitor(events, engine, clock)
    statuses = {r.check: r.status for r in monitor.run_once().results}
    assert statuses == {
        "replication": "OK",
        "crash_loop": "CRIT",
        "oom": "OK",
        "bounce_stuck": "OK",
        "deploy_failed": "CRIT",
    }
    monitor.close()


def test_bounce_start_is_remembered_when_the_source_does_not_know_it(events: EventLog) -> None:
    engine, clock = FakeEngine(), Clock()
    monitor = _monitor(
        events, engine, clock,
        bounce_view=lambda *_: BounceView(True, "crossover", "1 new task to pass its health check"),
        settings=CheckSettings(bounce_stuck_after_seconds=100),
    )  # fmt: skip
    assert monitor.run_once().results[3].status == "OK"
    clock.now = 1101
    stuck = next(r for r in monitor.run_once().results if r.check == "bounce_stuck")
    assert stuck.status == "CRIT"
    assert "waiting on: 1 new task to pass its health check" in stuck.message
    monitor.close()


def test_a_proxy_that_does_not_answer_makes_replication_crit(events: EventLog) -> None:
    """backends_up returning why this host's proxy is silent: CRIT although every task is
    healthy, and the page fires after alert_after like any replication alert."""
    engine, clock, sink = FakeEngine(), Clock(), RecordingSink("rec")
    answer: list[int | str | None] = [2]
    monitor = _monitor(events, engine, clock, sinks=[sink], backends_up=lambda c, v: answer[0])
    assert {r.status for r in monitor.run_once().results} == {"OK"}
    answer[0] = "this host's HAProxy does not answer: connection refused"
    clock.now = 1010
    replication = [r for r in monitor.run_once().results if r.check == "replication"]
    assert replication[0].status == "CRIT"
    assert "2/2 healthy tasks, but this host's HAProxy does not answer" in replication[0].message
    clock.now = 1040
    assert [a.check for a in monitor.run_once().alerts] == ["replication"]
    answer[0] = None  # not in discovery / registry unknown: the healthy tasks decide
    clock.now = 1050
    assert [(a.check, a.firing) for a in monitor.run_once().alerts] == [("replication", False)]


def test_a_timed_out_wait_pages_deploy_failed_and_a_later_healthy_deploy_clears_it(
    events: EventLog,
) -> None:
    from paasport.cli.wait import deploy_events

    engine, clock, sink = FakeEngine(), Clock(), RecordingSink("team")
    deployed = {"sha": "a" * 40}
    monitor = _monitor(
        events,
        engine,
        clock,
        sinks=[sink],
        load_deployments=lambda cs: {
            (c.service, c.instance): DeploymentState(docker_image="img", git_sha=deployed["sha"])
            for c in cs
        },
    )
    assert {r.check: r.status for r in monitor.run_once().results}["deploy_failed"] == "OK"
    # the reconciler's own events (tasks started, versions removed) say nothing about a deploy
    events.record(Event(time=1001, level="info", kind="app_version", service="web",
                        instance="main", cluster="c1", message="started 2 task(s)"))  # fmt: skip
    for event in deploy_events(
        "c1", "web", "c1.main", {"main": ("a" * 40, "0 of 2 healthy")}, 1002
    ):
        events.record(event)
    clock.now = 1003
    fired = monitor.run_once().alerts
    assert [(a.check, a.reason) for a in fired] == [("deploy_failed", "new")]
    assert "timed out" in fired[0].message and fired[0].routing.team == "web-team"
    events.record(Event(time=1004, level="info", kind="app_version", service="web",
                        instance="main", cluster="c1", message="removed app version"))  # fmt: skip
    clock.now = 1005
    assert monitor.run_once().alerts == ()  # still failing: nothing cleared it

    deployed["sha"] = "b" * 40
    for event in deploy_events("c1", "web", "c1.main", {"main": ("b" * 40, "")}, 1006):
        events.record(event)
    clock.now = 1007
    resolved = monitor.run_once().alerts
    assert [(a.check, a.reason) for a in resolved] == [("deploy_failed", "resolved")]
    monitor.wait_sinks()
    assert [[a.reason for a in b] for b in sink.batches] == [["new"], ["resolved"]]
    monitor.close()


class FlakyEvents:
    """A real EventLog whose writes raise a non-paasport error while ``down`` (a dying disk)."""

    def __init__(self, log: EventLog) -> None:
        self.log = log
        self.down = True

    def record(self, event: Event) -> None:
        if self.down:
            raise OSError("disk I/O error")
        self.log.record(event)

    def query(self, **kw: object) -> list[Event]:
        return self.log.query(**kw)  # type: ignore[arg-type]


class FlakyEngine(FakeEngine):
    def __init__(self) -> None:
        super().__init__()
        self.passes = 0
        self.broken = True

    def list_app_versions(
        self, service: str | None = None, instance: str | None = None
    ) -> Sequence[AppVersion]:
        self.passes += 1
        if self.broken:
            raise RuntimeError("connection reset by peer")  # raised mid-call, not wrapped
        return super().list_app_versions(service, instance)


ALERT = Alert("replication", "web", "main", "c1", "CRIT", "page", "new", "x", 1.0, None, ROUTING)


class FailingSink:
    name = "failing"
    resend_active = False

    def deliver(self, alerts: Sequence[Alert], now: float) -> None:
        raise SinkUnavailable("connection refused")


def test_the_loop_and_sink_workers_outlive_the_event_log_and_engine_failing(
    events: EventLog,
) -> None:
    import time

    engine, flaky = FlakyEngine(), FlakyEvents(events)
    monitor = Monitor(
        cluster="c1", engine=engine, events=flaky, load_instances=lambda: [CONFIG],  # type: ignore[arg-type]
        load_deployments=lambda cs: {(c.service, c.instance): DEPLOYED for c in cs},
        sinks=[FailingSink()], interval=0.01, metrics=False,
    )  # fmt: skip
    stop = threading.Event()
    thread = threading.Thread(target=monitor.run_forever, args=(stop,), daemon=True)
    try:
        thread.start()
        deadline = time.monotonic() + 10
        while engine.passes < 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert engine.passes >= 5 and thread.is_alive()
        sink = monitor.workers[1]
        sink.submit([ALERT], 1)
        assert monitor.wait_sinks(5)  # its failure went to the broken event log: still served
        engine.broken, flaky.down = False, False  # both come back
        seen = engine.passes
        while engine.passes < seen + 5 and time.monotonic() < deadline:
            time.sleep(0.01)
        assert engine.passes >= seen + 5 and thread.is_alive()
        sink.submit([ALERT], 2)
        assert monitor.wait_sinks(5) and sink.failed == 2
        assert [e.message for e in events.query(kinds=("monitor",))][-1:] == [
            "sink failing failed: connection refused"
        ]
    finally:
        stop.set()
        thread.join(timeout=10)
        monitor.close()
    assert not thread.is_alive()
