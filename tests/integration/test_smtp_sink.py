"""Email sink against a local aiosmtpd server: the team's notification_email gets the alert."""

from __future__ import annotations

import socket
from collections.abc import Iterator
from email import message_from_bytes
from email.message import Message

import pytest
from aiosmtpd.controller import Controller

from paasport.monitoring.alerts import Alert
from paasport.monitoring.sinks import SinkUnavailable
from paasport.monitoring.sinks.email import EmailSink
from paasport.types import MonitoringConfig


class Inbox:
    def __init__(self) -> None:
        self.mails: list[tuple[list[str], Message]] = []

    async def handle_DATA(self, server: object, session: object, envelope: object) -> str:
        content = envelope.content  # type: ignore[attr-defined]
        self.mails.append((list(envelope.rcpt_tos), message_from_bytes(content)))  # type: ignore[attr-defined]
        return "250 OK"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def smtp() -> Iterator[tuple[Inbox, int]]:
    inbox, port = Inbox(), _free_port()
    controller = Controller(inbox, hostname="127.0.0.1", port=port)
    controller.start()
    yield inbox, port
    controller.stop()


def _alert(email: str | None, reason: str = "new") -> Alert:
    routing = MonitoringConfig(team="web-team", notification_email=email, runbook="y/web",
                               tip="paasport status -s web")  # fmt: skip
    return Alert(check="oom", service="web", instance="main", cluster="local",
                 status="CRIT" if reason == "new" else "OK", severity="ticket",
                 reason=reason, message="web.main on local: 1 task(s) killed for running out of"
                 " memory", starts_at=0.0, ends_at=None if reason == "new" else 60.0,
                 routing=routing)  # type: ignore[arg-type]  # fmt: skip


def test_mails_the_notification_email(smtp: tuple[Inbox, int]) -> None:
    inbox, port = smtp
    sink = EmailSink("127.0.0.1", port, sender="paasport@test.local")
    sink.deliver([_alert("web@example.com, oncall@example.com"), _alert(None),
                  _alert("web@example.com", reason="resolved")], now=60.0)  # fmt: skip
    assert [rcpt for rcpt, _ in inbox.mails] == [
        ["web@example.com", "oncall@example.com"],
        ["web@example.com"],
    ]
    first = inbox.mails[0][1]
    assert first["Subject"] == "[paasport] [CRIT ticket] oom web.main on local"
    assert first["From"] == "paasport@test.local"
    body = first.get_payload()
    assert isinstance(body, str)
    assert "1 task(s) killed for running out of memory" in body
    assert "runbook: y/web" in body and "team: web-team" in body
    assert inbox.mails[1][1]["Subject"] == "[paasport] [RESOLVED] oom web.main on local"


def test_unreachable_smtp_server_is_a_sink_error() -> None:
    sink = EmailSink("127.0.0.1", _free_port(), timeout=2)
    with pytest.raises(SinkUnavailable, match=r"SMTP server 127.0.0.1:\d+ did not take the mail"):
        sink.deliver([_alert("web@example.com")], now=0.0)
