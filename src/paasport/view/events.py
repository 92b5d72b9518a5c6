"""The events view: what happened (bounces, crashes, deploys, checks, alerts), oldest first.

``load_events`` reads ``state_dir/events.sqlite`` through ``monitoring.events.EventLog`` (never
creating it) and hands a frozen EventsView on; ``paasport events`` and the API render it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

from paasport.config.system import SystemConfig
from paasport.monitoring.events import Event, EventLog, events_path


@dataclass(frozen=True)
class EventsView:
    events: tuple[Event, ...]

    def to_json(self) -> list[dict[str, object]]:
        """``paasport events --json``: one object per event (docs/views.md)."""
        return [e.to_json() for e in self.events]


def load_events(
    system: SystemConfig,
    *,
    service: str | None = None,
    instance: str | None = None,
    cluster: str | None = None,
    since: float | None = None,
    level: str | None = None,
    kinds: Sequence[str] | None = None,
    limit: int | None = 100,
) -> EventsView:
    """The matching events of this host's event log (none when nothing was recorded yet)."""
    path = events_path(system.state_dir)
    if not path.exists():
        return EventsView(())
    log = EventLog(path)
    try:
        found = log.query(
            service=service,
            instance=instance,
            since=since,
            level=level,
            kinds=kinds,
            limit=limit,
            cluster=cluster,
        )
    finally:
        log.close()
    return EventsView(tuple(found))
