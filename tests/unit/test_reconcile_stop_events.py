"""A stop is recorded as a stop, not as a bounce, and real bounces are counted in
``paasport_bounces_total`` (started / finished) for /metrics."""

from __future__ import annotations

from typing import Literal

from paasport.monitoring import metrics
from paasport.reconcile.reconciler import InstanceMemory, ReconcilerSettings, reconcile_instance
from paasport.types import DeploymentState, InstanceConfig

from fake_engine import FakeDrainer, FakeEngine, FakeEvents, FakeHealth


def cfg(**kw: object) -> InstanceConfig:
    base: dict[str, object] = dict(
        service="web", cluster="test", instance="main", deploy_group="test.main", instances=2
    )
    base.update(kw, drain_method="noop")
    return InstanceConfig(**base)  # type: ignore[arg-type]


def dep(state: Literal["start", "stop"] = "start", force: str | None = None) -> DeploymentState:
    sha = "a" * 40
    return DeploymentState(
        f"services-web:paasta-{sha}", sha, desired_state=state, force_bounce=force
    )


class World:
    def __init__(self) -> None:
        self.engine = FakeEngine()
        self.health = FakeHealth(default="healthy")
        self.events = FakeEvents()
        self.memory = InstanceMemory()
        self.now = 1000.0

    def converge(self, config: InstanceConfig, deployment: DeploymentState) -> None:
        for _ in range(50):
            self.now += 1.0
            result = reconcile_instance(
                config,
                deployment,
                self.engine.list_app_versions("web", "main"),
                self.engine,
                self.health,
                FakeDrainer(),
                self.events,
                self.now,
                memory=self.memory,
                settings=ReconcilerSettings(stop_grace_seconds=1.0, kill_grace_seconds=0.5),
                service="web",
                instance="main",
            )
            if not result.performed and result.again_in is None:
                return
        raise AssertionError("did not converge")


def bounces(result: str) -> float:
    value = metrics.registry.get_sample_value("paasport_bounces_total", {"result": result})
    return value or 0.0


def test_stop_and_start_are_not_reported_as_bounces() -> None:
    w = World()
    w.converge(cfg(), dep(force="20240101T000000"))
    w.events.events.clear()
    started, finished = bounces("started"), bounces("finished")
    w.converge(cfg(), dep(state="stop", force="20240101T000100"))
    assert w.engine.live() == []
    messages = w.events.messages("bounce")
    assert messages[0] == "stopping 2 tasks (desired_state stop)", messages
    assert messages[-1] == "stopped: no task left (desired_state stop)", messages
    assert not any("bounce to" in m for m in messages), messages
    assert (bounces("started"), bounces("finished")) == (started, finished)


def test_a_config_bounce_is_counted_started_and_finished() -> None:
    w = World()
    w.converge(cfg(), dep())
    started, finished = bounces("started"), bounces("finished")
    w.converge(cfg(env={"A": "1"}), dep())
    assert bounces("started") == started + 1
    assert bounces("finished") == finished + 1
