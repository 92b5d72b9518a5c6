"""The events view: what happened (bounces, crashes, deploys, checks, alerts), oldest first.

``load_events`` reads ``state_dir/events.sqlite`` through ``monitoring.events.EventLog`` (never
creating it) and hands a frozen EventsView on; ``follow_events`` keeps yielding new ones.
``paasport events`` and the API render them; ``view.history`` reads the mark events.
"""

from __future__ import annotations

import re
import threading
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from paasport.config.system import ClusterConfig, SystemConfig
from paasport.errors import UsageError
from paasport.monitoring.events import Event, EventLog, events_path
from paasport.view.remote import ClusterAnswer, follow_sse

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhdw])$")
_UNIT = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


@dataclass(frozen=True)
class EventsView:
    events: tuple[Event, ...]
    path: Path | None = None  # the event log read
    recorded: bool = True  # False: the event log does not exist yet (nothing was recorded)

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
        return EventsView((), path, recorded=False)
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
    return EventsView(tuple(found), path)


def follow_events(
    system: SystemConfig,
    stop: threading.Event,
    *,
    service: str | None = None,
    instance: str | None = None,
    cluster: str | None = None,
    since: float | None = None,
    level: str | None = None,
    kinds: Sequence[str] | None = None,
    limit: int | None = 100,
) -> Iterator[Event]:
    """What ``load_events`` returns, then each new matching event until ``stop`` (the event
    log is created when missing, so a follower started before anything happened sees it)."""
    log = EventLog(events_path(system.state_dir))
    try:
        yield from log.follow(
            service=service,
            instance=instance,
            since=since,
            level=level,
            kinds=kinds,
            limit=limit,
            cluster=cluster,
            stop=stop,
        )
    finally:
        log.close()


def parse_since(value: str, now: float) -> float:
    """``10m``/``2h``/``1d`` ago, an ISO date/time, or epoch seconds -> epoch seconds (pure)."""
    text = value.strip()
    match = _DURATION.match(text)
    if match:
        return now - float(match.group(1)) * _UNIT[match.group(2)]
    try:
        return float(text)
    except ValueError:
        pass
    try:
        return datetime.fromisoformat(text).timestamp()
    except ValueError:
        raise UsageError(
            f"--since {value!r}: expected a duration like 30s, 10m, 2h, 1d, an ISO time like "
            "2024-05-01T12:00 or epoch seconds"
        ) from None


def merged_events(answers: Iterable[ClusterAnswer], limit: int | None) -> list[Event]:
    """The events several clusters answered (``/v1/events`` JSON), oldest first, the newest
    ``limit``; what cannot be read as an event is left out. Pure."""
    found: list[Event] = []
    for answer in answers:
        for row in answer.data if answer.answered and isinstance(answer.data, list) else ():
            if not isinstance(row, Mapping):
                continue
            try:
                found.append(event_from_json(row))
            except (KeyError, TypeError, ValueError):
                continue
    found.sort(key=lambda e: e.time)
    return found[-limit:] if limit else found


def event_from_json(row: Mapping[str, Any]) -> Event:
    """An Event from its ``to_json`` (the API's answer)."""
    data = row.get("data")
    return Event(
        time=float(row["time"]),
        level=row["level"],
        kind=str(row["kind"]),
        service=row.get("service"),
        instance=row.get("instance"),
        cluster=row.get("cluster"),
        message=str(row.get("message", "")),
        data=dict(data) if isinstance(data, Mapping) else {},
    )


def event_key(event: Event) -> tuple[object, ...]:
    """What tells two copies of one event apart from two events (time, kind, where, message).
    Pure."""
    return (event.time, event.kind, event.service, event.instance, event.cluster, event.message)


def follow_remote_events(
    cluster: ClusterConfig,
    stop: threading.Event,
    *,
    since: float,
    service: str | None = None,
    instance: str | None = None,
    level: str | None = None,
    kinds: Sequence[str] | None = None,
    token: str | None = None,
    note: Callable[[str], None] = lambda _line: None,
) -> Iterator[Event]:
    """The events ``cluster`` records from ``since`` on (its clock), from its API's stream
    until ``stop``; a lost stream is opened again from the last event seen, and what it
    repeats is not given twice."""
    last, at_last = since, set[tuple[object, ...]]()

    def params() -> dict[str, str | Sequence[str]]:
        found: dict[str, str | Sequence[str]] = {"since": repr(last)}
        for key, value in (("service", service), ("instance", instance), ("level", level)):
            if value:
                found[key] = value
        if kinds:
            found["kind"] = list(kinds)
        return found

    for _name, data in follow_sse(
        cluster, "/v1/events/stream", params, token=token, stop=stop, note=note
    ):
        if not isinstance(data, Mapping):
            continue
        try:
            event = event_from_json(data)
        except (KeyError, TypeError, ValueError):
            continue
        key = event_key(event)
        if event.time < last or (event.time == last and key in at_last):
            continue
        if event.time > last:
            last, at_last = event.time, set()
        at_last.add(key)
        yield event


def bounces_under_way(events: Iterable[Event]) -> dict[tuple[str, str], str]:
    """(service, instance) -> the git sha its bounce goes to, for each bounce started (or
    superseded) and not finished yet, from ``bounce`` events. Pure."""
    going: dict[tuple[str, str], str] = {}
    for event in sorted(events, key=lambda e: e.time):
        if event.kind != "bounce" or not event.service or not event.instance:
            continue
        key = (event.service, event.instance)
        if event.message.endswith(" finished"):
            going.pop(key, None)
        elif " started" in event.message or " superseded by " in event.message:
            going[key] = _target_sha(event.message)
    return going


def _target_sha(message: str) -> str:
    """The sha of the newest target a bounce message names (``... to git 1234abcd config ...``,
    ``... superseded by git 1234abcd config ...``)."""
    words = message.split()
    shas = [words[i + 1] for i, w in enumerate(words[:-1]) if w == "git"]
    return shas[-1] if shas else ""
