"""The events and hosts views: their JSON equals what the CLI prints, and a host always shows."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from click.testing import CliRunner

from paasport.cli.main import cli
from paasport.config.system import SystemConfig
from paasport.engine.base import NodeCapacity
from paasport.monitoring.events import Event, EventLog, events_path
from paasport.view.events import load_events
from paasport.view.history import who_by_tag
from paasport.view.hosts import hosts_from


def test_events_view_is_what_events_json_prints(tmp_path: Path) -> None:
    log = EventLog(events_path(tmp_path))
    log.record(Event(time=1.0, level="info", kind="bounce", service="web", message="started"))
    log.record(Event(time=2.0, level="error", kind="crash", service="web", message="exit 1"))
    log.close()
    config = tmp_path / "paasport.yaml"
    config.write_text(f"state_dir: {tmp_path}\nsoa_dir: {tmp_path}\n")
    shown = CliRunner().invoke(cli, ["events", "--config", str(config), "-s", "web", "--json"])
    assert shown.exit_code == 0, shown.output
    view = load_events(SystemConfig(soa_dir=tmp_path, state_dir=tmp_path), service="web")
    assert json.loads(json.dumps(view.to_json(), default=str)) == json.loads(shown.output)
    assert [e.message for e in view.events] == ["started", "exit 1"]


def test_no_event_log_is_no_events(tmp_path: Path) -> None:
    assert load_events(SystemConfig(soa_dir=tmp_path, state_dir=tmp_path)).to_json() == []
    assert not events_path(tmp_path).exists()  # reading never creates it
    assert not load_events(SystemConfig(soa_dir=tmp_path, state_dir=tmp_path)).recorded


def _mark(data: dict[str, object]) -> Event:
    return Event(time=1.0, level="info", kind="mark", service="web", message="m", data=data)


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        ({"user": "ann", "tag": "paasta-prod-1-deploy"}, {"paasta-prod-1-deploy": "ann"}),
        (
            {"user": "bob", "tag": "paasta-prod-2-deploy", "rollback_tag": "paasta-prod-2-rb"},
            {"paasta-prod-2-deploy": "bob", "paasta-prod-2-rb": "bob"},
        ),
        ({"tag": "paasta-prod-3-deploy"}, {}),  # nobody named: "-" in deploy-history
        ({"user": "cat", "tag": 7}, {}),
    ],
)
def test_who_made_each_tag_comes_from_mark_events(
    data: dict[str, object], expected: dict[str, str]
) -> None:
    assert who_by_tag([_mark(data)]) == expected


def test_events_text_without_a_log_says_so(tmp_path: Path) -> None:
    config = tmp_path / "paasport.yaml"
    config.write_text(f"state_dir: {tmp_path}\nsoa_dir: {tmp_path}\n")
    shown = CliRunner().invoke(cli, ["events", "--config", str(config)])
    assert shown.exit_code == 0
    assert shown.output == f"no events recorded yet ({events_path(tmp_path)} does not exist)\n"
    assert not events_path(tmp_path).exists()


@pytest.mark.parametrize(
    ("nodes", "expected"),
    [
        ((), [{"node": "here", "cpus": None, "mem_mb": None, "cpus_reserved": None,
               "mem_reserved_mb": None}]),
        ((NodeCapacity("b", 2, 1024, 0.5, 256), NodeCapacity("a", 4, 2048, 0, 0)),
         [{"node": "a", "cpus": 4, "mem_mb": 2048, "cpus_reserved": 0, "mem_reserved_mb": 0},
          {"node": "b", "cpus": 2, "mem_mb": 1024, "cpus_reserved": 0.5,
           "mem_reserved_mb": 256}]),
    ],
    ids=["engine reports nothing: this host", "nodes sorted by name"],
)  # fmt: skip
def test_hosts_view(nodes: tuple[NodeCapacity, ...], expected: list[dict[str, object]]) -> None:
    assert hosts_from("local", nodes, "here").to_json() == {"cluster": "local", "hosts": expected}
