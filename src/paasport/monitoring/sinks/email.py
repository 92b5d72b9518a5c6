"""Email sink: one mail per alert to the instance's ``notification_email`` through SMTP.

Built by ``monitoring.monitor`` when ``monitoring.smtp_host`` is set; alerts of instances
without ``notification_email`` are skipped. Uses the standard library's smtplib.
"""

from __future__ import annotations

import smtplib
from collections.abc import Sequence
from datetime import UTC, datetime
from email.message import EmailMessage

from paasport.monitoring.alerts import Alert
from paasport.monitoring.sinks import SinkUnavailable


def alert_mail(alert: Alert, sender: str) -> EmailMessage | None:
    """The mail for one alert, or None when nobody is to be mailed (pure)."""
    to = alert.routing.notification_email
    if not to:
        return None
    state = "RESOLVED" if not alert.firing else f"{alert.status} {alert.severity}"
    msg = EmailMessage()
    msg["From"] = sender
    msg["To"] = ", ".join(a.strip() for a in to.split(",") if a.strip())
    msg["Subject"] = (
        f"[paasport] [{state}] {alert.check} {alert.service}.{alert.instance} on {alert.cluster}"
    )
    routing = alert.routing
    lines = [alert.message, ""]
    for label, value in (
        ("team", routing.team),
        ("severity", alert.severity),
        ("since", datetime.fromtimestamp(alert.starts_at, tz=UTC).isoformat()),
        ("runbook", routing.runbook),
        ("tip", routing.tip),
        ("priority", routing.priority),
        ("description", routing.description),
    ):
        if value:
            lines.append(f"{label}: {value}")
    msg.set_content("\n".join(lines) + "\n")
    return msg


class EmailSink:
    name = "email"
    resend_active = False

    def __init__(
        self, host: str, port: int = 25, sender: str = "paasport@localhost", timeout: float = 10.0
    ) -> None:
        self.host = host
        self.port = port
        self.sender = sender
        self.timeout = timeout

    def deliver(self, alerts: Sequence[Alert], now: float) -> None:
        mails = [m for m in (alert_mail(a, self.sender) for a in alerts) if m is not None]
        if not mails:
            return
        try:
            with smtplib.SMTP(self.host, self.port, timeout=self.timeout) as smtp:
                for mail in mails:
                    smtp.send_message(mail)
        except (OSError, smtplib.SMTPException) as err:
            raise SinkUnavailable(
                f"SMTP server {self.host}:{self.port} did not take the mail: {err}"
            ) from None
