"""EventLog: record/query filters, ordering, limit, follow, and thread-safety."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from paasport.errors import UsageError
from paasport.monitoring.events import Event, EventLog, events_path

EVENTS = [
    Event(time=100.0, level="info", kind="bounce", service="web", instance="main", cluster="c1",
          message="bounce started", data={"method": "crossover"}),
    Event(time=110.0, level="error", kind="crash", service="web", instance="canary", cluster="c1",
          message="task crashed", data={"exit_code": 137}),
    Event(time=120.0, level="warning", kind="check", service="api", instance="main", cluster="c1",
          message="replication 1/2"),
    Event(time=130.0, level="critical", kind="alert", service="web", instance="main", cluster="c2",
          message="replication 0/2"),
    Event(time=140.0, level="debug", kind="reconcile", message="pass done"),
]  # fmt: skip


@pytest.fixture
def log(tmp_path: Path) -> EventLog:
    event_log = EventLog(events_path(tmp_path))
    for event in EVENTS:
        event_log.record(event)
    return event_log


@pytest.mark.parametrize(
    ("filters", "expected_times"),
    [
        ({}, [100, 110, 120, 130, 140]),
        ({"service": "web"}, [100, 110, 130]),
        ({"service": "web", "instance": "main"}, [100, 130]),
        ({"cluster": "c2"}, [130]),
        ({"since": 115.0}, [120, 130, 140]),
        ({"level": "warning"}, [110, 120, 130]),
        ({"level": "error"}, [110, 130]),
        ({"kinds": ["crash", "alert"]}, [110, 130]),
        ({"limit": 2}, [130, 140]),
        ({"service": "web", "limit": 1}, [130]),
        ({"service": "nope"}, []),
    ],
)
def test_query_filters_oldest_first(
    log: EventLog, filters: dict[str, object], expected_times: list[int]
) -> None:
    assert [e.time for e in log.query(**filters)] == expected_times  # type: ignore[arg-type]


def test_roundtrip_keeps_every_field(log: EventLog) -> None:
    assert log.query(service="web", instance="main", limit=2) == [EVENTS[0], EVENTS[3]]


def test_unknown_level_is_a_usage_error(log: EventLog) -> None:
    with pytest.raises(UsageError, match="unknown event level 'loud'"):
        log.query(level="loud")


def test_non_json_data_becomes_strings(tmp_path: Path) -> None:
    event_log = EventLog(tmp_path / "e.sqlite")
    event_log.record(Event(time=1.0, level="info", kind="check", data={"path": Path("/a")}))
    assert event_log.query()[0].data == {"path": "/a"}


def test_follow_yields_backlog_then_new_events(log: EventLog) -> None:
    stop = threading.Event()
    seen: list[Event] = []
    new = Event(time=150.0, level="error", kind="deploy", service="web", message="timed out")

    def consume() -> None:
        for event in log.follow(service="web", limit=1, poll_interval=0.01, stop=stop):
            seen.append(event)
            if len(seen) == 1:
                log.record(Event(time=149.0, level="info", kind="check", service="other"))
                log.record(new)
            if len(seen) == 2:
                stop.set()

    worker = threading.Thread(target=consume)
    worker.start()
    worker.join(timeout=10)
    stop.set()
    assert seen == [EVENTS[3], new]


def test_concurrent_writers_lose_nothing(tmp_path: Path) -> None:
    event_log = EventLog(tmp_path / "e.sqlite")
    second = EventLog(tmp_path / "e.sqlite")  # another process would open its own connection

    def write(target: EventLog, n: int) -> None:
        for i in range(n):
            target.record(Event(time=float(i), level="info", kind="check", message=str(i)))

    threads = [threading.Thread(target=write, args=(t, 50)) for t in (event_log, event_log, second)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert not any(t.is_alive() for t in threads)
    assert len(event_log.query()) == 150
