"""The always-on sink: every alert and resolution becomes an ``alert`` event in the event log.

Built by ``monitoring.monitor``; ``paasport events`` shows what it recorded.
"""

from __future__ import annotations

from collections.abc import Sequence

from paasport.errors import PaasportError
from paasport.monitoring.alerts import Alert
from paasport.monitoring.events import Event, EventLog, Level
from paasport.monitoring.sinks import SinkUnavailable


def alert_event(alert: Alert, now: float) -> Event:
    """The event one alert notification is recorded as (pure)."""
    level: Level
    if not alert.firing:
        level = "info"
    elif alert.severity == "page":
        level = "critical"
    elif alert.status == "CRIT":
        level = "error"
    else:
        level = "warning"
    verb = {"new": "firing", "realert": "still firing", "escalated": "escalated"}.get(
        alert.reason, "resolved"
    )
    return Event(
        time=now,
        level=level,
        kind="alert",
        service=alert.service,
        instance=alert.instance,
        cluster=alert.cluster,
        message=f"{alert.check} {verb} ({alert.status}, {alert.severity}): {alert.message}",
        data={
            "check": alert.check,
            "status": alert.status,
            "severity": alert.severity,
            "reason": alert.reason,
            "team": alert.routing.team,
            "starts_at": alert.starts_at,
            "ends_at": alert.ends_at,
        },
    )


class EventLogSink:
    name = "eventlog"
    resend_active = False

    def __init__(self, log: EventLog) -> None:
        self._log = log

    def deliver(self, alerts: Sequence[Alert], now: float) -> None:
        for alert in alerts:
            try:
                self._log.record(alert_event(alert, now))
            except PaasportError as err:
                raise SinkUnavailable(str(err)) from None
