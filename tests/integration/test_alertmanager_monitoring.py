"""Real Alertmanager: stopped containers raise a replication alert; restarting them resolves it.

Observed state comes from real busybox containers this test starts (read back with `docker
inspect`); the monitor posts to the Alertmanager at 127.0.0.1:9093 (scripts/services.sh).
"""

from __future__ import annotations

import json
import subprocess
import time
import uuid
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import httpx
import pytest

from paasport.monitoring.events import EventLog
from paasport.monitoring.monitor import Monitor
from paasport.monitoring.sinks.alertmanager import AlertmanagerSink
from paasport.types import AppVersion, DeploymentState, InstanceConfig, MonitoringConfig, Task

TEST_LABEL = "paasport.test-owner"


def _docker(*args: str) -> str:
    out = subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=False, timeout=120
    )
    assert out.returncode == 0, out.stderr
    return out.stdout.strip()


class DockerPsEngine:
    """Observed state from real `docker ps`/`docker inspect` of the test's containers."""

    def __init__(self, cluster: str) -> None:
        self.cluster = cluster

    def list_app_versions(
        self, service: str | None = None, instance: str | None = None
    ) -> Sequence[AppVersion]:
        ids = _docker("ps", "-aq", "--filter", f"label=paasport.cluster={self.cluster}").split()
        if not ids:
            return []
        grouped: dict[tuple[str, str], list[Task]] = {}
        for info in json.loads(_docker("inspect", *ids)):
            labels = info["Config"]["Labels"]
            running = bool(info["State"]["Running"])
            key = (labels["paasport.service"], labels["paasport.instance"])
            grouped.setdefault(key, []).append(
                Task(task_id=info["Id"], service=key[0], instance=key[1], cluster=self.cluster,
                     config_hash="h", git_sha="a" * 40,
                     state="running" if running else "exited",
                     exit_code=None if running else info["State"]["ExitCode"],
                     health="healthy" if running else "unknown")
            )  # fmt: skip
        return [
            AppVersion(service=s, instance=i, cluster=self.cluster, config_hash="h",
                       git_sha="a" * 40, image="img", tasks=tuple(tasks))
            for (s, i), tasks in grouped.items()
        ]  # fmt: skip


@pytest.fixture
def run_id() -> Iterator[str]:
    rid = uuid.uuid4().hex[:8]
    yield rid
    ids = _docker("ps", "-aq", "--filter", f"label={TEST_LABEL}={rid}").split()
    if ids:
        _docker("rm", "-f", *ids)


def _alerts(url: str, service: str) -> list[dict[str, Any]]:
    response = httpx.get(
        f"{url}/api/v2/alerts", params={"filter": f'service="{service}"', "active": "true"}
    )
    response.raise_for_status()
    found: list[dict[str, Any]] = response.json()
    return found


def _wait_for(predicate: Any, what: str, timeout: float = 15.0) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        value = predicate()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}")
        time.sleep(0.2)


def test_replication_alert_reaches_alertmanager_and_resolves(
    busybox_image: str, alertmanager_url: str, run_id: str, tmp_dir: Path
) -> None:
    service, cluster = f"mon-{run_id}", f"test-{run_id}"
    containers = [
        _docker("run", "-d", "--pull=never", "--label", f"{TEST_LABEL}={run_id}",
                "--label", f"paasport.service={service}", "--label", "paasport.instance=main",
                "--label", f"paasport.cluster={cluster}", busybox_image)
        for _ in range(2)
    ]  # fmt: skip
    routing = MonitoringConfig(
        team=f"team-{run_id}", page=True, alert_after=1.0, realert_every=0,
        runbook="https://runbooks.example/replication", tip="paasport status -s web -v",
        description="web serves the front page", replication_crit_percent=75,
    )  # fmt: skip
    config = InstanceConfig(
        service=service, cluster=cluster, instance="main", deploy_group=f"{cluster}.main",
        instances=2, monitoring=routing,
    )  # fmt: skip
    events = EventLog(tmp_dir / "events.sqlite")
    monitor = Monitor(
        cluster=cluster,
        engine=DockerPsEngine(cluster),
        events=events,
        load_instances=lambda: [config],
        load_deployments=lambda cs: {(service, "main"): DeploymentState("img", "a" * 40)},
        sinks=[AlertmanagerSink(alertmanager_url, ttl=120)],
        metrics=False,
    )
    try:
        assert {r.status for r in monitor.run_once().results} == {"OK"}

        _docker("stop", "-t", "0", containers[0])
        first = monitor.run_once()
        assert [r.status for r in first.results if r.check == "replication"] == ["CRIT"]
        assert first.alerts == ()  # alert_after not reached yet
        monitor.wait_sinks()
        assert _alerts(alertmanager_url, service) == []

        time.sleep(1.1)
        assert [a.reason for a in monitor.run_once().alerts] == ["new"]
        assert monitor.wait_sinks()
        alert = _wait_for(lambda: _alerts(alertmanager_url, service), "the alert")[0]
        labels = alert["labels"]
        assert {k: labels[k] for k in ("service", "instance", "cluster", "team", "check",
                                       "severity")} == {
            "service": service, "instance": "main", "cluster": cluster,
            "team": f"team-{run_id}", "check": "replication", "severity": "page",
        }  # fmt: skip
        assert alert["annotations"]["runbook"] == "https://runbooks.example/replication"
        assert alert["annotations"]["tip"] == "paasport status -s web -v"
        assert alert["annotations"]["description"] == "web serves the front page"
        assert "1/2 healthy tasks" in alert["annotations"]["summary"]

        _docker("start", containers[0])
        assert [a.reason for a in monitor.run_once().alerts] == ["resolved"]
        assert monitor.wait_sinks()
        _wait_for(lambda: _alerts(alertmanager_url, service) == [], "the alert to resolve")
        kinds = [(e.kind, e.level) for e in events.query(service=service, kinds=["alert"])]
        assert kinds == [("alert", "critical"), ("alert", "info")]
    finally:
        monitor.close()


def test_unreachable_alertmanager_is_logged_and_does_not_block(tmp_dir: Path, run_id: str) -> None:
    cluster = f"test-{run_id}"
    config = InstanceConfig(service="svc", cluster=cluster, instance="main",
                            deploy_group="g", instances=1,
                            monitoring=MonitoringConfig(alert_after=0))  # fmt: skip
    events = EventLog(tmp_dir / "events.sqlite")
    monitor = Monitor(
        cluster=cluster,
        engine=DockerPsEngine(cluster),  # no containers: replication is CRIT at once
        events=events,
        load_instances=lambda: [config],
        load_deployments=lambda cs: {("svc", "main"): DeploymentState("img", "a" * 40)},
        sinks=[AlertmanagerSink("http://127.0.0.1:9", timeout=1)],
        metrics=False,
    )
    try:
        assert [a.check for a in monitor.run_once().alerts] == ["replication"]
        assert monitor.run_once().results  # the next pass runs while the sink fails
        assert monitor.wait_sinks()
        failures = [e.message for e in events.query(kinds=["monitor"])]
        assert failures and "Alertmanager at http://127.0.0.1:9 unreachable" in failures[0]
        assert len(failures) == 1  # the same failure is reported once, not every pass
        assert [e.kind for e in events.query(kinds=["alert"])] == ["alert"]  # the log still has it
    finally:
        monitor.close()
