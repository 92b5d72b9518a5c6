"""``platform.build.proxy_event_hook``: what the discovery agent reports lands in the event log."""

from __future__ import annotations

from pathlib import Path

from paasport.monitoring.events import EventKind, EventLog
from paasport.platform.build import proxy_event_hook


def test_agent_events_are_proxy_events_of_the_cluster(tmp_path: Path) -> None:
    events = EventLog(tmp_path / "events.sqlite")
    try:
        hook = proxy_event_hook(events, "c1")
        hook("warning", "HAProxy in /s/haproxy: master (pid 7) is gone; restarted it")
        hook("bogus", "a level the log does not know is recorded as an error")
        got = events.query(kinds=("proxy",))
        assert [(e.kind, e.level, e.cluster) for e in got] == [
            (EventKind.PROXY, "warning", "c1"),
            (EventKind.PROXY, "error", "c1"),
        ]
        assert "restarted" in got[0].message
    finally:
        events.close()
