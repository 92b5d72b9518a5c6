"""The autoscaler's passes over a stub engine (pure decision rules: test_autoscale_decision.py):
CPU readings a pass apart become samples, a busy instance scales up, the count reaches the
store and autoscale.json, overrides apply and expire; and ``scaled`` applies counts."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime
from pathlib import Path

import pytest

from paasport.config.system import ClusterConfig, SystemConfig
from paasport.monitoring.events import EventLog
from paasport.platform.autoscaler import Autoscaler
from paasport.reconcile.scaling import (
    OverrideRange,
    Scale,
    read_scales,
    scaled,
    starting_count,
    write_override,
)
from paasport.types import AppVersion, AutoscalingConfig, InstanceConfig, Task

CONFIG = InstanceConfig("svc", "c", "main", "c.main", cpus=0.5, instances=1, min_instances=1,
                        max_instances=4,
                        autoscaling=AutoscalingConfig("cpu", setpoint=0.5,
                                                      stabilization_window_seconds=0))  # fmt: skip


def stats(at: float, busy_ns: int) -> dict[str, object]:
    """Docker's stats JSON: ``busy_ns`` of CPU used by the task since time 0, on 2 cpus."""
    stamp = datetime.fromtimestamp(at, UTC).isoformat().replace("+00:00", "Z")
    return {
        "read": stamp,
        "cpu_stats": {
            "cpu_usage": {"total_usage": busy_ns},
            "system_cpu_usage": int(at * 2e9),
            "online_cpus": 2,
        },
    }


class Engine:
    cluster = "c"

    def __init__(self, tasks: int) -> None:
        self.count = tasks
        self.busy: dict[str, int] = {}
        self.now = 1000.0

    def list_app_versions(self, service: str | None = None,
                          instance: str | None = None) -> Sequence[AppVersion]:  # fmt: skip
        tasks = tuple(Task(f"t{n}", "svc", "main", "c", "h", "sha", "running", health="healthy")
                      for n in range(self.count))  # fmt: skip
        return (AppVersion("svc", "main", "c", "h", "sha", "img", tasks=tasks),)

    def task_stats(self, task_id: str) -> Mapping[str, object] | None:
        return stats(self.now, self.busy.get(task_id, 0))


class Store:
    def __init__(self, config: InstanceConfig) -> None:
        self.config = config
        self._scales: dict[tuple[str, str], Scale] = {}

    def instances(self) -> tuple[InstanceConfig, ...]:
        return (scaled(self.config, self._scales),)

    def scales(self) -> dict[tuple[str, str], Scale]:
        return dict(self._scales)

    def set_scale(self, key: tuple[str, str], scale: Scale) -> None:
        self._scales[key] = scale


@pytest.fixture
def world(tmp_path: Path) -> tuple[Autoscaler, Engine, Store, EventLog]:
    system = SystemConfig(clusters={"c": ClusterConfig("c")}, local_cluster="c",
                          soa_dir=tmp_path, state_dir=tmp_path)  # fmt: skip
    engine, store = Engine(1), Store(CONFIG)
    events = EventLog(tmp_path / "events.sqlite")
    scaler = Autoscaler(system, store, engine, events, clock=lambda: engine.now)  # type: ignore[arg-type]
    return scaler, engine, store, events


def burn(engine: Engine, seconds: float, share: float) -> None:
    """Every task uses ``share`` of its 0.5 cpus for ``seconds``."""
    engine.now += seconds
    for n in range(engine.count):
        engine.busy[f"t{n}"] = engine.busy.get(f"t{n}", 0) + int(seconds * 0.5 * share * 1e9)


def test_a_busy_instance_scales_up_and_says_why(world: tuple[Autoscaler, Engine, Store, EventLog],
                                                tmp_path: Path) -> None:  # fmt: skip
    scaler, engine, _, events = world
    first = scaler.pass_once()[("svc", "main")]
    assert first.target == 1 and first.metric is None  # one reading: no sample yet
    burn(engine, 10, 1.0)
    second = scaler.pass_once()[("svc", "main")]
    assert second.metric == pytest.approx(1.0)
    assert second.target == 2
    assert read_scales(tmp_path)[("svc", "main")].target == 2
    [said] = events.query(kinds=("autoscale",))
    assert said.message.startswith("cpu 1.00 vs setpoint 0.50") and said.message.endswith("1 -> 2")
    assert said.data["from"] == 1 and said.data["to"] == 2


def test_within_tolerance_nothing_changes(
    world: tuple[Autoscaler, Engine, Store, EventLog],
) -> None:
    scaler, engine, _, events = world
    scaler.pass_once()
    burn(engine, 10, 0.52)
    assert scaler.pass_once()[("svc", "main")].target == 1
    assert events.query(kinds=("autoscale",)) == []


def test_an_override_applies_then_expires(world: tuple[Autoscaler, Engine, Store, EventLog],
                                          tmp_path: Path) -> None:  # fmt: skip
    scaler, engine, _, events = world
    write_override(tmp_path, "svc", "main", OverrideRange(3, 3, engine.now + 30))
    assert scaler.pass_once()[("svc", "main")].target == 3
    engine.count = 3
    engine.now += 31
    scaler.pass_once()
    messages = [e.message for e in events.query(kinds=("autoscale",))]
    assert any("override 3...3 expired" in m for m in messages), messages


@pytest.mark.parametrize(
    ("config", "scale", "expected"),
    [
        (CONFIG, None, 1),
        (CONFIG, Scale(3), 3),
        (CONFIG, Scale(9), 4),  # the config's max now is lower than the kept count
        (dataclasses.replace(CONFIG, min_instances=2), Scale(1), 2),
        (dataclasses.replace(CONFIG, max_instances=None), Scale(3), 1),  # no longer autoscaled
    ],
)
def test_scaled_applies_the_kept_count_within_the_range(
    config: InstanceConfig, scale: Scale | None, expected: int
) -> None:
    scales = {("svc", "main"): scale} if scale else {}
    assert scaled(config, scales).instances == expected


@pytest.mark.parametrize(
    ("instances", "lo", "hi", "expected"), [(1, 2, 5, 2), (9, 1, 5, 5), (3, 1, 5, 3)]
)
def test_starting_count(instances: int, lo: int, hi: int, expected: int) -> None:
    config = dataclasses.replace(CONFIG, instances=instances, min_instances=lo, max_instances=hi)
    assert starting_count(config) == expected


class RemoteEngine(Engine):
    """The manager's view of Swarm: no stats of tasks on other nodes."""

    def task_stats(self, task_id: str) -> Mapping[str, object] | None:
        return None


def test_tasks_on_other_hosts_are_measured_from_their_agents_reports(tmp_path: Path) -> None:
    from paasport.discovery.agent import cpu_fields
    from paasport.discovery.registry import AgentReport

    system = SystemConfig(clusters={"c": ClusterConfig("c")}, local_cluster="c",
                          soa_dir=tmp_path, state_dir=tmp_path)  # fmt: skip
    engine, store = RemoteEngine(1), Store(CONFIG)
    reports: dict[str, AgentReport] = {}

    def report() -> None:  # what the agent of the task's host acks
        reports["lab2"] = AgentReport("lab2", 1, engine.now, loads={
            "t0": cpu_fields(Engine.task_stats(engine, "t0"))})  # fmt: skip

    scaler = Autoscaler(system, store, engine, EventLog(tmp_path / "e.sqlite"),  # type: ignore[arg-type]
                        reports=lambda: reports, clock=lambda: engine.now)  # fmt: skip
    report()
    scaler.pass_once()
    burn(engine, 10, 1.0)
    report()
    assert scaler.pass_once()[("svc", "main")].target == 2


def test_in_flight_requests_add_up_over_every_hosts_proxy(tmp_path: Path) -> None:
    from paasport.discovery.registry import AgentReport

    system = SystemConfig(clusters={"c": ClusterConfig("c")}, local_cluster="c",
                          soa_dir=tmp_path, state_dir=tmp_path)  # fmt: skip
    config = dataclasses.replace(CONFIG, autoscaling=AutoscalingConfig(
        "http_inflight", setpoint=2, stabilization_window_seconds=0))  # fmt: skip
    engine, store = Engine(1), Store(config)
    reports = {h: AgentReport(h, 1, engine.now, loads={"t0": {"scur": 3.0}})
               for h in ("lab1", "lab2")}  # fmt: skip
    scaler = Autoscaler(system, store, engine, EventLog(tmp_path / "e.sqlite"),  # type: ignore[arg-type]
                        reports=lambda: reports, clock=lambda: engine.now)  # fmt: skip
    scale = scaler.pass_once()[("svc", "main")]
    assert scale.metric == pytest.approx(6.0)  # 3 through each of the two hosts' proxies
    assert scale.target == 3  # ceil(1 x 6 / 2)
