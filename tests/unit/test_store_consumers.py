"""The store's one last-good policy as deployd and the monitor see it (issues 9 and 10): the real
loader over the examples' hello, the fake engine, a real EventLog; hello's instances file breaks.

deployd leaves hello's tasks as they are; the monitor keeps a firing alert firing (neither
resolved as "no longer configured" nor re-fired) and resolves it normally after the fix.
"""

from __future__ import annotations

import json
import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from paasport.config.system import ClusterConfig, SystemConfig
from paasport.monitoring.events import EventLog
from paasport.monitoring.monitor import Monitor
from paasport.monitoring.sources import StoreSource
from paasport.reconcile.deployd import Deployd, DeploydSettings
from paasport.reconcile.reconciler import ReconcilerSettings
from paasport.reconcile.store import DesiredStore

from fake_engine import FakeDrainer, FakeEngine, FakeHealth

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "soa-configs"
SHA = "c" * 40
BREAKAGES = {
    "syntax error": lambda text: text + b"main2: [unclosed\n",
    "non-UTF-8 byte": lambda text: text + b"# caf\xe9\n",
    "emptied": lambda text: b"",
}


class Clock:
    def __init__(self) -> None:
        self.now = 10_000.0

    def __call__(self) -> float:
        return self.now


@dataclass
class World:
    store: DesiredStore
    engine: FakeEngine
    health: FakeHealth
    deployd: Deployd
    events: EventLog
    instances_file: Path

    def converge(self, passes: int = 3) -> None:
        for _ in range(passes):
            self.deployd.full_pass()
            self.deployd.drain_queue()

    def tasks(self, instance: str) -> list[str]:
        return sorted(t.task_id for t in self.engine.live() if t.instance == instance)


@pytest.fixture
def world(tmp_path: Path) -> World:
    soa = tmp_path / "soa"
    # `make up` leaves a deployments.json per example service; this test writes its own
    shutil.copytree(EXAMPLES, soa, ignore=shutil.ignore_patterns("deployments.json"))
    controls = {f"hello:local.{i}": {"desired_state": "start"} for i in ("main", "canary")}
    deployments = {
        f"local.{i}": {"docker_image": f"services-hello:paasta-{SHA}", "git_sha": SHA}
        for i in ("main", "canary")
    }
    (soa / "hello" / "deployments.json").write_text(
        json.dumps({"v2": {"deployments": deployments, "controls": controls}})
    )
    system = SystemConfig(
        soa_dir=soa, state_dir=tmp_path / "state", clusters={"local": ClusterConfig("local")}
    )
    events = EventLog(tmp_path / "events.sqlite")
    store = DesiredStore(soa, "local", system=system, events=events)
    store.load_all()
    engine, health = FakeEngine(cluster="local"), FakeHealth()
    settings = DeploydSettings(reconciler=ReconcilerSettings(stop_grace_seconds=0))
    deployd = Deployd(store, engine, health, FakeDrainer(), events, settings)
    w = World(store, engine, health, deployd, events, soa / "hello" / "instances-local.yaml")
    w.converge()
    assert len(w.tasks("main")) == 2 and len(w.tasks("canary")) == 1
    return w


def _break(world: World, breakage: str) -> bytes:
    good = world.instances_file.read_bytes()
    world.instances_file.write_bytes(BREAKAGES[breakage](good))
    world.store.reload_service("hello")
    assert world.store.problems()["hello"]
    return good


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_deployd_leaves_the_tasks_of_a_broken_service(world: World, breakage: str) -> None:
    before = world.tasks("main"), world.tasks("canary")
    world.engine.calls.clear()
    _break(world, breakage)
    world.converge(passes=5)
    assert (world.tasks("main"), world.tasks("canary")) == before
    assert not {"stop", "delete", "create"} & set(world.engine.calls)


@pytest.mark.parametrize("breakage", list(BREAKAGES))
def test_a_firing_alert_neither_resolves_nor_refires_while_the_config_is_broken(
    world: World, breakage: str
) -> None:
    clock = Clock()
    source = StoreSource(world.store)
    monitor = Monitor(
        cluster="local",
        engine=world.engine,
        events=world.events,
        load_instances=source.instances,
        load_deployments=source.deployments,
        bounce_view=source.bounce,
        with_health=world.health.with_health,
        clock=clock,
        metrics=False,
    )
    try:
        world.health.per_task = {t: "unhealthy" for t in world.tasks("main")}
        assert monitor.run_once().alerts == ()
        clock.now += 121  # hello's alert_after is 2m
        fired = [(a.service, a.instance, a.check, a.reason) for a in monitor.run_once().alerts]
        assert fired == [("hello", "main", "replication", "new")]

        good = _break(world, breakage)
        for _ in range(6):  # a minute of passes with the config broken
            clock.now += 10
            report = monitor.run_once()
            assert report.alerts == (), [(a.reason, a.message) for a in report.alerts]
        firing = [k for k, s in monitor.states.items() if s.firing]
        assert [(k[0], k[1], k[2]) for k in firing] == [("replication", "hello", "main")]

        world.instances_file.write_bytes(good)  # the fix, and the check passes again
        world.store.reload_service("hello")
        assert "hello" not in world.store.problems()
        world.health.per_task = {}
        clock.now += 10
        resolved = monitor.run_once().alerts
        assert [(a.instance, a.reason) for a in resolved] == [("main", "resolved")]
        assert "no longer configured" not in resolved[0].message
    finally:
        monitor.close()
