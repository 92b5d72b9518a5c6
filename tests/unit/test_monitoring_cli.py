"""`paasport events`: --since parsing, filters, --json, and a clear error for bad input."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from paasport.cli.events import format_event, parse_since
from paasport.cli.main import cli
from paasport.errors import UsageError
from paasport.monitoring.events import Event, EventLog, events_path


@pytest.mark.parametrize(
    ("text", "expected"),
    [("30s", 970.0), ("10m", 400.0), ("1h", -2600.0), ("0.5d", -42200.0), ("123.5", 123.5)],
)
def test_parse_since(text: str, expected: float) -> None:
    assert parse_since(text, now=1000.0) == expected


def test_parse_since_rejects_nonsense() -> None:
    with pytest.raises(UsageError, match="--since 'yesterday': expected a duration"):
        parse_since("yesterday", now=0.0)


def test_format_event_names_where() -> None:
    line = format_event(Event(time=0, level="error", kind="crash", service="web",
                              instance="main", cluster="local", message="exit 1"))  # fmt: skip
    assert line.endswith("ERROR    crash     web.main@local: exit 1")


def test_events_command_filters_and_prints_json(tmp_path: Path) -> None:
    config = tmp_path / "paasport.yaml"
    config.write_text(f"state_dir: {tmp_path}\nsoa_dir: {tmp_path}\n")
    log = EventLog(events_path(tmp_path))
    log.record(Event(time=1.0, level="info", kind="bounce", service="web", message="started"))
    log.record(Event(time=2.0, level="error", kind="crash", service="web", message="exit 1"))
    log.record(Event(time=3.0, level="error", kind="crash", service="api", message="exit 2"))
    runner = CliRunner()
    out = runner.invoke(cli, ["events", "--config", str(config), "-s", "web", "--level", "error",
                              "--json"])  # fmt: skip
    assert out.exit_code == 0, out.output
    assert [e["message"] for e in json.loads(out.output)] == ["exit 1"]
    out = runner.invoke(cli, ["events", "--config", str(config), "-n", "2"])
    assert out.exit_code == 0, out.output
    assert [line.split(": ", 1)[1] for line in out.output.splitlines()] == ["exit 1", "exit 2"]


def test_an_unknown_kind_is_a_usage_error_listing_the_kinds(tmp_path: Path) -> None:
    config = tmp_path / "paasport.yaml"
    config.write_text(f"state_dir: {tmp_path}\nsoa_dir: {tmp_path}\n")
    EventLog(events_path(tmp_path)).close()
    out = CliRunner().invoke(cli, ["events", "--config", str(config), "--kind", "bogus"])
    assert out.exit_code == 2, out.output
    assert "'bogus' is not one of" in out.output and "'crash'" in out.output
    assert "Traceback" not in out.output
    helped = CliRunner().invoke(cli, ["events", "--help"])
    assert "bounce|deploy|app_version|crash" in helped.output


def test_event_kinds_are_normalised_and_unknown_ones_refused() -> None:
    from paasport.monitoring.events import EventKind

    event = Event(time=1.0, level="info", kind="bounce")
    assert event.kind is EventKind.BOUNCE and event.to_json()["kind"] == "bounce"
    with pytest.raises(ValueError, match="unknown event kind 'bogus': expected one of bounce"):
        Event(time=1.0, level="info", kind="bogus")


def test_a_kind_this_version_does_not_know_reads_back_as_unknown(tmp_path: Path) -> None:
    import sqlite3

    log = EventLog(events_path(tmp_path))
    log.record(Event(time=1.0, level="info", kind="check", message="m"))
    conn = sqlite3.connect(events_path(tmp_path), isolation_level=None)
    conn.execute("UPDATE events SET kind = 'from_the_future'")
    conn.close()
    (event,) = log.query()
    assert event.kind == "unknown" and event.data["raw_kind"] == "from_the_future"
    log.close()
