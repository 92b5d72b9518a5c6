"""The alerts view: the alerts firing now, with the owning team, from the event log.

The monitor's event-log sink records every alert notification and resolution (``alert``
events); ``firing_alerts`` keeps, per (check, service, instance, cluster), the newest one and
drops the resolved. The API serves ``AlertsView.to_json`` at ``/v1/alerts``.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from paasport.config.system import SystemConfig
from paasport.monitoring.events import Event, EventKind
from paasport.view.events import load_events


@dataclass(frozen=True)
class FiringAlert:
    check: str
    service: str | None
    instance: str | None
    cluster: str | None
    status: str  # WARN | CRIT
    severity: str  # page | ticket
    team: str | None
    message: str
    starts_at: float | None
    last_sent: float  # the time of the newest notification

    def to_json(self) -> dict[str, object]:
        return {
            "check": self.check,
            "service": self.service,
            "instance": self.instance,
            "cluster": self.cluster,
            "status": self.status,
            "severity": self.severity,
            "team": self.team,
            "message": self.message,
            "starts_at": self.starts_at,
            "last_sent": self.last_sent,
        }


def firing_alerts(events: Iterable[Event]) -> list[FiringAlert]:
    """The alerts whose newest ``alert`` event is not a resolution, oldest start first. Pure."""
    newest: dict[tuple[object, ...], Event] = {}
    for event in events:
        if event.kind != EventKind.ALERT:
            continue
        key = (event.data.get("check"), event.service, event.instance, event.cluster)
        if key not in newest or newest[key].time <= event.time:
            newest[key] = event
    out: list[FiringAlert] = []
    for event in newest.values():
        data = event.data
        if data.get("reason") == "resolved":
            continue
        starts = data.get("starts_at")
        team = data.get("team")
        out.append(
            FiringAlert(
                check=str(data.get("check") or ""),
                service=event.service,
                instance=event.instance,
                cluster=event.cluster,
                status=str(data.get("status") or ""),
                severity=str(data.get("severity") or ""),
                team=team if isinstance(team, str) else None,
                message=event.message,
                starts_at=float(starts) if isinstance(starts, int | float) else None,
                last_sent=event.time,
            )
        )
    out.sort(key=lambda a: (a.starts_at or a.last_sent, a.check, a.service or ""))
    return out


@dataclass(frozen=True)
class AlertsView:
    alerts: tuple[FiringAlert, ...]

    def to_json(self) -> list[dict[str, object]]:
        return [a.to_json() for a in self.alerts]


def load_alerts(
    system: SystemConfig, *, service: str | None = None, team: str | None = None
) -> AlertsView:
    """The alerts firing now on this host's cluster (only ``service``'s / ``team``'s)."""
    found = load_events(system, service=service, kinds=(EventKind.ALERT.value,), limit=None)
    alerts = firing_alerts(found.events)
    if team is not None:
        alerts = [a for a in alerts if a.team == team]
    return AlertsView(tuple(alerts))
