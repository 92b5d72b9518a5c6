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
