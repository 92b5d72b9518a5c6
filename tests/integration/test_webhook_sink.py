"""Webhook sink against a local HTTP server: Slack JSON, retries, timeout, never blocking."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from paasport.monitoring.alerts import Alert
from paasport.monitoring.events import EventLog
from paasport.monitoring.monitor import Monitor
from paasport.monitoring.sinks import SinkUnavailable
from paasport.monitoring.sinks.webhook import WebhookSink
from paasport.types import AppVersion, DeploymentState, InstanceConfig, MonitoringConfig

ROUTING = MonitoringConfig(team="web-team", page=True, alert_after=0, slack_channels=("#a", "#b"),
                           runbook="https://runbooks.example/x")  # fmt: skip


class Receiver:
    """A local HTTP server that records JSON bodies; fails the first `fail_first` requests."""

    def __init__(self, fail_first: int = 0, hang: bool = False) -> None:
        self.bodies: list[dict[str, object]] = []
        self.requests = 0
        self.fail_first = fail_first
        self.hang = threading.Event() if hang else None
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers["Content-Length"]))
                receiver.requests += 1
                if receiver.hang is not None:
                    receiver.hang.wait(10)
                if receiver.requests <= receiver.fail_first:
                    self.send_response(503)
                    self.end_headers()
                    return
                receiver.bodies.append(json.loads(body))
                self.send_response(200)
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()
        self.url = f"http://127.0.0.1:{self.server.server_port}/hook"

    def close(self) -> None:
        if self.hang is not None:
            self.hang.set()
        self.server.shutdown()
        self.server.server_close()


@pytest.fixture
def receivers() -> Iterator[list[Receiver]]:
    made: list[Receiver] = []
    yield made
    for r in made:
        r.close()


def _alert(reason: str = "new") -> Alert:
    return Alert(check="replication", service="web", instance="main", cluster="local",
                 status="CRIT" if reason != "resolved" else "OK", severity="page", reason=reason,  # type: ignore[arg-type]
                 message="web.main on local: 0/2 healthy tasks", starts_at=100.0,
                 ends_at=None if reason != "resolved" else 200.0, routing=ROUTING)  # fmt: skip


def test_posts_one_slack_message_per_channel_after_retries(receivers: list[Receiver]) -> None:
    receiver = Receiver(fail_first=2)
    receivers.append(receiver)
    WebhookSink(receiver.url, timeout=2, attempts=3, backoff=0.01).deliver([_alert()], 0)
    assert receiver.requests == 4  # 503, 503, ok (#a), ok (#b)
    assert [b["channel"] for b in receiver.bodies] == ["#a", "#b"]
    body = receiver.bodies[0]
    assert body["text"] == (
        ":rotating_light: [CRIT (page)] replication web.main on local: "
        "web.main on local: 0/2 healthy tasks"
    )
    attachment = body["attachments"][0]  # type: ignore[index]
    assert attachment["color"] == "danger"
    assert {"title": "runbook", "value": "https://runbooks.example/x", "short": False} in (
        attachment["fields"]
    )


def test_gives_up_after_the_attempts_with_a_clear_error(receivers: list[Receiver]) -> None:
    receiver = Receiver(fail_first=100)
    receivers.append(receiver)
    sink = WebhookSink(receiver.url, timeout=2, attempts=2, backoff=0.01)
    with pytest.raises(SinkUnavailable, match=r"HTTP 503 after 2 attempt\(s\)"):
        sink.deliver([_alert()], 0)


def test_a_hanging_webhook_times_out_and_never_blocks_the_monitor(
    receivers: list[Receiver], tmp_dir: Path
) -> None:
    hanging, good = Receiver(hang=True), Receiver()
    receivers.extend([hanging, good])

    class NoTasks:
        cluster = "local"

        def list_app_versions(self, *a: object) -> list[AppVersion]:
            return []

    config = InstanceConfig(service="web", cluster="local", instance="main", deploy_group="g",
                            instances=2, monitoring=ROUTING)  # fmt: skip
    events = EventLog(tmp_dir / "events.sqlite")
    monitor = Monitor(
        cluster="local", engine=NoTasks(), events=events,  # type: ignore[arg-type]
        load_instances=lambda: [config],
        load_deployments=lambda cs: {("web", "main"): DeploymentState("img", "a" * 40)},
        sinks=[WebhookSink(hanging.url, timeout=0.5, attempts=2, backoff=0.01),
               WebhookSink(good.url, timeout=2)],
        metrics=False,
    )  # fmt: skip
    try:
        assert [a.check for a in monitor.run_once().alerts] == ["replication"]
        monitor.run_once()
        # both passes are done while the hanging sink is still busy with the first batch
        assert not monitor.workers[1].wait_idle(0)
        assert monitor.workers[2].wait_idle(10)
        assert [b["channel"] for b in good.bodies] == ["#a", "#b"]
        assert monitor.wait_sinks(20)
        failures = [e.message for e in events.query(kinds=["monitor"])]
        assert len(failures) == 1 and "ReadTimeout" in failures[0], failures
    finally:
        monitor.close()
