"""Prometheus Alertmanager v2 sink: POST /api/v2/alerts with paasport's labels and annotations.

Built by ``monitoring.monitor`` when ``monitoring.alertmanager_url`` is set. Firing alerts are
re-posted every pass with ``endsAt`` a TTL ahead (as Prometheus does); resolutions end now.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

from paasport.monitoring.alerts import Alert
from paasport.monitoring.sinks import SinkUnavailable


def _iso(at: float) -> str:
    return datetime.fromtimestamp(at, tz=UTC).isoformat().replace("+00:00", "Z")


def alertmanager_payload(
    alerts: Sequence[Alert], now: float, ttl: float
) -> list[dict[str, object]]:
    """The JSON body for /api/v2/alerts (pure)."""
    body: list[dict[str, object]] = []
    for alert in alerts:
        routing = alert.routing
        annotations = {
            "summary": alert.message,
            "description": routing.description or alert.message,
        }
        if routing.runbook:
            annotations["runbook"] = routing.runbook
        if routing.tip:
            annotations["tip"] = routing.tip
        ends_at = alert.ends_at if alert.ends_at is not None else now + ttl
        body.append(
            {
                "labels": {
                    "alertname": f"paasport_{alert.check}",
                    "check": alert.check,
                    "service": alert.service,
                    "instance": alert.instance,
                    "cluster": alert.cluster,
                    "team": routing.team or "unknown",
                    "severity": alert.severity,
                },
                "annotations": annotations,
                "startsAt": _iso(alert.starts_at),
                "endsAt": _iso(ends_at),
            }
        )
    return body


class AlertmanagerSink:
    name = "alertmanager"
    resend_active = True

    def __init__(self, url: str, timeout: float = 5.0, ttl: float = 300.0) -> None:
        self.url = url.rstrip("/")
        self.timeout = timeout
        self.ttl = ttl

    def deliver(self, alerts: Sequence[Alert], now: float) -> None:
        if not alerts:
            return
        import httpx

        try:
            response = httpx.post(
                f"{self.url}/api/v2/alerts",
                json=alertmanager_payload(alerts, now, self.ttl),
                timeout=self.timeout,
            )
        except httpx.HTTPError as err:
            raise SinkUnavailable(f"Alertmanager at {self.url} unreachable: {err}") from None
        if response.status_code >= 300:
            raise SinkUnavailable(
                f"Alertmanager at {self.url} refused the alerts: HTTP {response.status_code}"
                f" {response.text.strip()[:200]}"
            )
