"""The events and hosts views: their JSON equals what the CLI prints, and a host always shows."""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path

import pytest
from click.testing import CliRunner

from paasport.cli.main import cli
from paasport.config.system import SystemConfig
from paasport.engine.base import NodeCapacity
from paasport.monitoring.events import Event, EventLog, events_path
from paasport.view.events import bounces_under_way, load_events
from paasport.view.history import who_by_tag
from paasport.view.hosts import hosts_from

from fake_engine import FakeEngine


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


def _host(node: str, **fields: object) -> dict[str, object]:
    """A host's JSON: ``fields`` over the defaults of a ready node with nothing known."""
    base: dict[str, object] = {
        "node": node, "node_id": "", "address": "", "state": "ready", "down": False,
        "availability": "active", "role": "", "cpus": None, "mem_mb": None,
        "cpus_reserved": None, "mem_reserved_mb": None, "cpus_free": None, "mem_free_mb": None,
        "tasks": None, "labels": {},
    }  # fmt: skip
    return {**base, **fields}


LAB2_DOWN = NodeCapacity(
    "lab2", 2, 1024, 0.5, 256, address="10.251.4.12", state="down", role="worker",
    labels={"pool": "default"}, tasks=2, node_id="n2",
)  # fmt: skip


@pytest.mark.parametrize(
    ("nodes", "expected", "down"),
    [
        ((), [_host("here")], 0),
        (
            (NodeCapacity("b", 2, 1024, 0.5, 256, address="127.0.0.1"),
             NodeCapacity("a", 4, 2048, 0, 0, tasks=3)),
            [_host("a", cpus=4, mem_mb=2048, cpus_reserved=0, mem_reserved_mb=0, cpus_free=4,
                   mem_free_mb=2048, tasks=3),
             _host("b", address="127.0.0.1", cpus=2, mem_mb=1024, cpus_reserved=0.5,
                   mem_reserved_mb=256, cpus_free=1.5, mem_free_mb=768, tasks=0)],
            0,
        ),
        (
            (LAB2_DOWN,
             NodeCapacity("lab1", 2, 1024, 2.25, 0, state="ready", role="manager",
                          availability="drain", labels={"z": "1", "pool": "batch"})),
            [_host("lab1", role="manager", availability="drain", cpus=2, mem_mb=1024,
                   cpus_reserved=2.25, mem_reserved_mb=0, cpus_free=-0.25, mem_free_mb=1024,
                   tasks=0, labels={"pool": "batch", "z": "1"}),
             _host("lab2", node_id="n2", address="10.251.4.12", state="down", down=True,
                   role="worker", cpus=2, mem_mb=1024, cpus_reserved=0.5, mem_reserved_mb=256,
                   cpus_free=1.5, mem_free_mb=768, tasks=2, labels={"pool": "default"})],
            1,
        ),
        (
            (NodeCapacity("x", 1, 512, 0, 0, state="", node_id="2"),
             NodeCapacity("x", 1, 512, 0, 0, state="disconnected", node_id="1")),
            [_host("x", node_id="1", state="disconnected", down=True, cpus=1, mem_mb=512,
                   cpus_reserved=0, mem_reserved_mb=0, cpus_free=1, mem_free_mb=512, tasks=0),
             _host("x", node_id="2", state="unknown", down=True, cpus=1, mem_mb=512,
                   cpus_reserved=0, mem_reserved_mb=0, cpus_free=1, mem_free_mb=512, tasks=0)],
            2,
        ),
    ],
    ids=[
        "engine reports nothing: this host",
        "nodes sorted by name, free = total - reserved",
        "a down node and an overcommitted drained one",
        "same hostname: by node id; no state is unknown",
    ],
)  # fmt: skip
def test_hosts_view(
    nodes: tuple[NodeCapacity, ...], expected: list[dict[str, object]], down: int
) -> None:
    assert hosts_from("local", nodes, "here").to_json() == {
        "cluster": "local", "down": down, "hosts": expected,
    }  # fmt: skip


class _LabEngine(FakeEngine):
    def node_capacity(self) -> Sequence[NodeCapacity]:
        return [
            LAB2_DOWN,
            NodeCapacity("lab1", 2, 1024, 0.5, 128, address="10.251.4.11", role="manager",
                         labels={"pool": "default"}, tasks=1),
        ]  # fmt: skip


@pytest.mark.parametrize("verb", ["hosts", "list-hosts"])
def test_hosts_cli_shows_a_down_node(
    verb: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = _LabEngine()
    monkeypatch.setattr("paasport.engine.factory.engine_for", lambda cluster: engine)
    config = tmp_path / "paasport.yaml"
    config.write_text(f"state_dir: {tmp_path}\nsoa_dir: {tmp_path}\n")
    shown = CliRunner().invoke(cli, [verb, "--config", str(config)])
    assert shown.exit_code == 0, shown.output
    lines = shown.output.splitlines()
    assert lines[0] == "cluster local: 2 node(s), 1 down: lab2"
    lab1 = next(line for line in lines[1:] if "lab1" in line)
    lab2 = next(line for line in lines[1:] if "lab2" in line)
    assert lines.index(lab1) < lines.index(lab2)  # sorted by hostname
    for cell in ("10.251.4.11", "ready", "manager", "0.5/2 (1.5 free)", "128/1024 (896 free)",
                 "pool=default"):  # fmt: skip
        assert cell in lab1, lab1
    assert "DOWN" in lab2 and "worker" in lab2 and "10.251.4.12" in lab2
    assert engine.closed
    as_json = CliRunner().invoke(cli, [verb, "--config", str(config), "--json"])
    assert json.loads(as_json.output)["down"] == 1


def _bounce(t: float, message: str, instance: str = "main") -> Event:
    return Event(time=t, level="info", kind="bounce", service="web", instance=instance,
                 cluster="c1", message=message)  # fmt: skip


@pytest.mark.parametrize(
    ("events", "going"),
    [
        pytest.param([], {}, id="none"),
        pytest.param([_bounce(1, "crossover bounce to git aaaaaaaa config 1 started")],
                     {("web", "main"): "aaaaaaaa"}, id="started"),
        pytest.param([_bounce(1, "crossover bounce to git aaaaaaaa config 1 started"),
                      _bounce(2, "bounce to git aaaaaaaa config 1 finished")], {}, id="finished"),
        pytest.param([_bounce(3, "crossover bounce to git aaaaaaaa config 1 superseded by git "
                                 "bbbbbbbb config 2: the newest target wins, no second bounce"),
                      _bounce(1, "crossover bounce to git aaaaaaaa config 1 started")],
                     {("web", "main"): "bbbbbbbb"}, id="superseded: the newest target"),
        pytest.param([_bounce(1, "stopping 3 tasks (desired_state stop)")], {},
                     id="a stop is no bounce"),
    ],
)  # fmt: skip
def test_bounces_under_way(events: list[Event], going: dict[tuple[str, str], str]) -> None:
    assert bounces_under_way(events) == going
