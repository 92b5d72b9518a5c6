"""Webhook sink: one Slack-compatible JSON POST per alert (and per Slack channel), with retries.

Built by ``monitoring.monitor`` when ``monitoring.webhook_url`` is set; a Slack incoming webhook
or any receiver of the same JSON. Each attempt has a timeout; failures raise SinkUnavailable.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING

from paasport.monitoring.alerts import Alert
from paasport.monitoring.sinks import SinkUnavailable

if TYPE_CHECKING:
    import httpx

_COLOURS = {"CRIT": "danger", "WARN": "warning", "OK": "good"}
_ICONS = {"CRIT": ":rotating_light:", "WARN": ":warning:", "OK": ":white_check_mark:"}


def slack_messages(alert: Alert) -> list[dict[str, object]]:
    """The Slack-compatible bodies for one alert: one per slack channel, or one (pure)."""
    routing = alert.routing
    state = "RESOLVED" if not alert.firing else f"{alert.status} ({alert.severity})"
    title = f"[{state}] {alert.check} {alert.service}.{alert.instance} on {alert.cluster}"
    fields: list[dict[str, object]] = [
        {"title": "team", "value": routing.team or "unknown", "short": True},
        {"title": "severity", "value": alert.severity, "short": True},
    ]
    for label, value in (
        ("runbook", routing.runbook),
        ("tip", routing.tip),
        ("priority", routing.priority),
        ("description", routing.description),
    ):
        if value:
            fields.append({"title": label, "value": value, "short": False})
    body: dict[str, object] = {
        "username": "paasport",
        "text": f"{_ICONS[alert.status]} {title}: {alert.message}",
        "attachments": [
            {
                "color": _COLOURS[alert.status],
                "title": title,
                "text": alert.message,
                "fields": fields,
                "ts": int(alert.ends_at if alert.ends_at is not None else alert.starts_at),
            }
        ],
        "paasport": {
            "check": alert.check,
            "service": alert.service,
            "instance": alert.instance,
            "cluster": alert.cluster,
            "status": alert.status,
            "severity": alert.severity,
            "reason": alert.reason,
        },
    }
    if not routing.slack_channels:
        return [body]
    return [{**body, "channel": channel} for channel in routing.slack_channels]


class WebhookSink:
    name = "webhook"
    resend_active = False

    def __init__(
        self,
        url: str,
        timeout: float = 5.0,
        attempts: int = 3,
        backoff: float = 0.5,
        sleep: Callable[[float], None] = time.sleep,
    ) -> None:
        self.url = url
        self.timeout = timeout
        self.attempts = max(1, attempts)
        self.backoff = backoff
        self._sleep = sleep

    def deliver(self, alerts: Sequence[Alert], now: float) -> None:
        import httpx

        failures: list[str] = []
        with httpx.Client(timeout=self.timeout) as client:
            for alert in alerts:
                for body in slack_messages(alert):
                    error = self._post(client, body)
                    if error:
                        failures.append(error)
        if failures:
            raise SinkUnavailable(f"webhook {self.url}: {'; '.join(failures)}")

    def _post(self, client: httpx.Client, body: dict[str, object]) -> str | None:
        import httpx

        error = ""
        for attempt in range(self.attempts):
            if attempt:
                self._sleep(self.backoff * 2 ** (attempt - 1))
            try:
                response = client.post(self.url, json=body)
            except httpx.HTTPError as err:
                error = f"{type(err).__name__}: {err}"
                continue
            if response.status_code < 300:
                return None
            error = f"HTTP {response.status_code}"
            if response.status_code < 500 and response.status_code != 429:
                break  # the receiver rejects this body: retrying will not help
        return f"{error} after {attempt + 1} attempt(s)"
