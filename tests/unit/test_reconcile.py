"""Unit tests of reconcile_instance over fakes: one step, and whole bounces step by step."""

from __future__ import annotations

import dataclasses
import itertools
import math

import pytest

from paasport.bounce.actions import CreateAppVersion, ScaleAppVersion
from paasport.bounce.desired import desired_app
from paasport.reconcile.reconciler import (
    InstanceMemory,
    ReconcilerSettings,
    StepResult,
    reconcile_instance,
)
from paasport.types import BounceMethod, DeploymentState, InstanceConfig
from paasport.view.events import bounces_under_way

from fake_engine import FakeDrainer, FakeEngine, FakeEvents, FakeHealth

SETTINGS = ReconcilerSettings(stop_grace_seconds=2.0, kill_grace_seconds=0.5)


def cfg(**kw: object) -> InstanceConfig:
    base: dict[str, object] = dict(
        service="web",
        cluster="test",
        instance="main",
        deploy_group="test.main",
        instances=3,
        drain_method="noop",
        drain_timeout_seconds=30.0,
        backoff_seconds=10.0,
    )
    base.update(kw)
    return InstanceConfig(**base)  # type: ignore[arg-type]


def dep(sha: str = "a" * 40, state: str = "start", force: str | None = None) -> DeploymentState:
    return DeploymentState(
        docker_image=f"services-web:paasta-{sha}",
        git_sha=sha,
        desired_state=state,
        force_bounce=force,  # type: ignore[arg-type]
    )


class World:
    """An engine, health, drainer, events and one instance's memory, stepped with a clock."""

    def __init__(self, health_default: str = "healthy") -> None:
        self.engine = FakeEngine()
        self.health = FakeHealth(default=health_default)  # type: ignore[arg-type]
        self.drainer = FakeDrainer()
        self.events = FakeEvents()
        self.memory = InstanceMemory()
        self.now = 1000.0

    def step(self, config: InstanceConfig | None, deployment: DeploymentState | None) -> StepResult:
        self.now += 1.0
        return reconcile_instance(
            config,
            deployment,
            self.engine.list_app_versions("web", "main"),
            self.engine,
            self.health,
            self.drainer,
            self.events,
            self.now,
            memory=self.memory,
            settings=SETTINGS,
            service="web",
            instance="main",
        )

    def converge(
        self, config: InstanceConfig | None, deployment: DeploymentState | None, limit: int = 50
    ) -> list[StepResult]:
        results = []
        for _ in range(limit):
            result = self.step(config, deployment)
            results.append(result)
            if not result.performed and result.again_in is None:
                return results
        raise AssertionError(f"did not converge in {limit} steps: {results[-1]}")


def test_first_deploy_creates_the_app_version_then_converges() -> None:
    w = World()
    first = w.step(cfg(), dep())
    assert [type(a) for a in first.performed] == [CreateAppVersion]
    assert first.again_in == SETTINGS.recheck_seconds
    assert len(w.engine.live()) == 3
    w.converge(cfg(), dep())
    assert w.engine.calls["create"] == 1  # never a second app version for the same hash
    assert not w.events.messages("bounce")  # a first deploy is not a bounce


def test_never_marked_instance_has_nothing_to_do() -> None:
    w = World()
    result = w.step(cfg(), None)
    assert result.performed == () and result.again_in is None
    assert result.waiting_on == "not marked for deployment"
    assert not w.engine.tasks


def test_instance_removed_from_configs_loses_every_task_and_version() -> None:
    w = World()
    w.converge(cfg(), dep())
    w.drainer.done.update(w.engine.tasks)  # every proxy acknowledged the drains
    w.converge(None, None)
    assert not w.engine.tasks
    assert w.engine.calls["create"] == 1


def test_a_removed_instance_still_drains_before_stopping() -> None:
    """Its config (and drain_timeout_seconds) is gone, but its tasks may still be routed."""
    w = World()
    w.converge(cfg(), dep())
    tasks = set(w.engine.tasks)
    for _ in range(5):
        result = w.step(None, None)
    assert set(w.drainer.started) == tasks
    assert set(w.engine.tasks) == tasks  # nobody acknowledged yet: nothing stopped
    assert "draining" in result.waiting_on
    w.drainer.done.update(tasks)
    w.converge(None, None)
    assert not w.engine.tasks and set(w.drainer.forgotten) >= tasks


def test_a_removed_instance_drain_is_bounded_by_the_default_timeout() -> None:
    w = World()
    w.converge(cfg(), dep())
    limit = int(SETTINGS.removed_drain_timeout_seconds)
    w.converge(None, None, limit=limit + 5)
    assert not w.engine.tasks


def test_a_drain_begun_before_a_restart_is_finished() -> None:
    """deployd restarted mid-drain (new memory) and the plan no longer drains the task (here:
    the bounce was rolled back): the task still marked draining must not stay out of rotation
    for good; the reconciler finishes the drain and replaces it."""
    w = World()
    w.converge(cfg(drain_method="proxy", instances=1), dep())
    task = w.engine.live()[0]
    w.drainer.marks[task.task_id] = w.now  # drain begun by the previous deployd process
    w.memory = InstanceMemory()  # the restart
    result = w.step(cfg(drain_method="proxy", instances=1), dep())
    assert task.task_id in w.engine.tasks  # still waiting on the proxies ...
    assert "draining" in result.waiting_on
    assert task.task_id not in w.drainer.started  # ... for the drain begun before
    w.drainer.done.add(task.task_id)
    w.converge(cfg(drain_method="proxy", instances=1), dep())
    assert task.task_id not in w.engine.tasks
    assert task.task_id in w.drainer.forgotten and task.task_id not in w.drainer.marks
    assert len(w.engine.live()) == 1


def test_a_task_gone_mid_drain_leaves_no_drain_mark() -> None:
    w = World()
    w.converge(cfg(drain_method="proxy", instances=1), dep())
    old_task = w.engine.live()[0]
    new = cfg(drain_method="proxy", instances=1, env={"B": "1"})
    w.step(new, dep())
    w.step(new, dep())
    assert old_task.task_id in w.drainer.started
    del w.engine.tasks[old_task.task_id]  # removed behind paasport's back
    w.step(new, dep())
    assert old_task.task_id in w.drainer.forgotten


@pytest.mark.parametrize(
    "method,margin",
    [
        ("crossover", 1.0),
        ("crossover", 0.5),
        ("upthendown", 1.0),
        ("downthenup", 1.0),
        ("brutal", 1.0),
    ],
)
def test_a_bounce_ends_with_only_the_new_version(method: BounceMethod, margin: float) -> None:
    w = World()
    old = cfg(bounce_method=method, bounce_margin_factor=margin)
    w.converge(old, dep())
    new = cfg(bounce_method=method, bounce_margin_factor=margin, env={"A": "1"})
    new_hash = desired_app(new, dep()).config_hash
    w.converge(new, dep())
    assert len(w.engine.live()) == 3
    assert {t.config_hash for t in w.engine.tasks.values()} == {new_hash}
    bounce = w.events.messages("bounce")
    assert any("bounce to" in m and "started" in m for m in bounce), bounce
    assert any("finished" in m for m in bounce), bounce


def test_marks_in_a_row_during_a_bounce_make_one_bounce_to_the_newest() -> None:
    """Marked at b, then c, then d while the bounce to b runs (its tasks not healthy yet): one
    bounce, its target superseded twice, finished at d, with nothing of b or c left."""
    w = World()
    w.converge(cfg(), dep())
    for t in w.engine.live():
        w.health.per_task[t.task_id] = "healthy"
    w.health.default = "unknown"  # the new tasks warm up until we say so
    for sha in ("b", "c", "d"):
        w.step(cfg(), dep(sha * 40))
        w.step(cfg(), dep(sha * 40))
    w.health.default = "healthy"
    w.converge(cfg(), dep("d" * 40))
    bounce = w.events.messages("bounce")
    b_hash = desired_app(cfg(), dep("b" * 40)).config_hash[:8]
    d_hash = desired_app(cfg(), dep("d" * 40)).config_hash[:8]
    started = [m for m in bounce if m.endswith(" started")]
    assert started == [f"crossover bounce to git bbbbbbbb config {b_hash} started"]
    superseded = [m.split(" superseded by ")[1].split()[1] for m in bounce if " superseded " in m]
    assert superseded == ["cccccccc", "dddddddd"]
    finished = [m for m in bounce if m.endswith(" finished")]
    assert finished == [f"bounce to git dddddddd config {d_hash} finished"]
    assert {t.git_sha for t in w.engine.tasks.values()} == {"d" * 40}
    assert bounces_under_way(w.events.events) == {}


def test_crossover_never_drops_below_the_margin_while_new_tasks_warm_up() -> None:
    w = World()
    w.converge(cfg(), dep())
    new = cfg(env={"A": "2"})
    new_hash = desired_app(new, dep()).config_hash
    w.health.default = "unknown"  # new tasks are not healthy until we say so
    for t in w.engine.live():
        w.health.per_task[t.task_id] = "healthy"
    target = math.ceil(3 * 1.0)
    for i in range(40):
        w.step(new, dep())
        healthy = [t for t in w.engine.live() if w.health.per_task.get(t.task_id) == "healthy"]
        assert len(healthy) >= target, f"step {i}: {len(healthy)} healthy"
        # one new task becomes healthy per step
        warming = [
            t for t in w.engine.live(new_hash) if w.health.per_task.get(t.task_id) != "healthy"
        ]
        if warming:
            w.health.per_task[warming[0].task_id] = "healthy"
        elif not [t for t in w.engine.tasks.values() if t.config_hash != new_hash]:
            break
    assert {t.config_hash for t in w.engine.tasks.values()} == {new_hash}


def test_drain_waits_for_the_drainer_then_for_the_timeout() -> None:
    w = World()
    w.converge(cfg(drain_method="proxy", instances=1), dep())
    old_task = w.engine.live()[0]
    new = cfg(drain_method="proxy", instances=1, env={"B": "1"}, drain_timeout_seconds=5.0)
    w.step(new, dep())  # creates the new version (healthy at once) ...
    result = w.step(new, dep())  # ... then starts draining the old task
    assert old_task.task_id in w.drainer.started
    assert old_task.task_id in w.engine.tasks
    assert "draining" in result.waiting_on
    w.drainer.done.add(old_task.task_id)
    w.step(new, dep())
    assert old_task.task_id not in w.engine.tasks
    assert (old_task.task_id, SETTINGS.stop_grace_seconds) in w.engine.stopped
    assert old_task.task_id in w.drainer.forgotten


def test_drain_timeout_stops_the_task_anyway() -> None:
    w = World()
    w.converge(cfg(drain_method="proxy", instances=1), dep())
    old_task = w.engine.live()[0]
    new = cfg(drain_method="proxy", instances=1, env={"B": "1"}, drain_timeout_seconds=3.0)
    for _ in range(6):
        w.step(new, dep())
    assert old_task.task_id not in w.engine.tasks


def test_stop_removes_every_task_and_start_brings_them_back() -> None:
    w = World()
    w.converge(cfg(), dep())
    w.converge(cfg(), dep(state="stop"))
    assert not w.engine.live()
    w.converge(cfg(), dep(state="start"))
    assert len(w.engine.live()) == 3


def test_scaling_only_scales() -> None:
    w = World()
    w.converge(cfg(), dep())
    w.converge(cfg(instances=5), dep())
    assert w.engine.calls["create"] == 1
    assert len(w.engine.live()) == 5
    assert len({t.config_hash for t in w.engine.tasks.values()}) == 1


def test_a_dead_task_is_recorded_and_replaced_with_backoff() -> None:
    w = World()
    w.converge(cfg(), dep())
    victim = w.engine.live()[0]
    w.engine.log_lines[victim.task_id] = ["starting", "panic: no database"]
    w.engine.crash(victim.task_id, exit_code=3)
    result = w.step(cfg(), dep())  # first crash: replaced at once
    assert any(isinstance(a, ScaleAppVersion) for a in result.performed)
    assert len(w.engine.live()) == 3
    crash = [e for e in w.events.events if e.kind == "crash"]
    assert len(crash) == 1
    assert "code 3" in crash[0].message and "panic: no database" in crash[0].message
    assert crash[0].data["last_lines"] == ["starting", "panic: no database"]

    second = w.engine.live()[0]
    w.engine.crash(second.task_id, exit_code=3)
    held = w.step(cfg(), dep())  # second crash soon after: held back, corpse kept
    assert not any(isinstance(a, ScaleAppVersion) for a in held.performed)
    assert second.task_id in w.engine.tasks
    assert held.again_in is not None and held.again_in > 0
    again = w.step(cfg(), dep())
    assert len([e for e in w.events.events if e.kind == "crash"]) == 2  # recorded once each
    assert not any(isinstance(a, ScaleAppVersion) for a in again.performed)
    w.now += 600
    w.converge(cfg(), dep())
    assert len(w.engine.live()) == 3
    assert second.task_id not in w.engine.tasks


def test_oom_kill_is_its_own_event() -> None:
    w = World()
    w.converge(cfg(mem=64.0), dep())
    victim = w.engine.live()[0]
    w.engine.crash(victim.task_id, exit_code=137, oom=True)
    w.step(cfg(mem=64.0), dep())
    oom = [e for e in w.events.events if e.kind == "oom"]
    assert len(oom) == 1 and "OOM" in oom[0].message and "64 MB" in oom[0].message


def test_an_empty_old_version_is_deleted() -> None:
    w = World()
    w.converge(cfg(instances=1), dep())
    old_task = w.engine.live()[0]
    w.engine.crash(old_task.task_id, exit_code=0)  # the old version holds only a corpse
    w.converge(cfg(instances=1, env={"C": "1"}), dep())
    assert w.engine.calls["delete"] == 1
    assert old_task.task_id not in w.engine.tasks


def test_an_instance_whose_every_task_dies_restarts_only_as_the_backoff_allows() -> None:
    """instances: 1 whose task exits after 1 s: the plan creates (nothing is left to scale);
    that create is held back like a scale, and corpses never pile up."""
    w = World()
    config = cfg(instances=1, backoff_seconds=2.0)
    w.step(config, dep())
    starts = [w.now]
    for _ in range(120):  # two simulated minutes, one step per second
        for task in w.engine.live():  # each task has run about a second: it exits
            w.engine.crash(task.task_id, exit_code=1)
        before = w.engine.calls["create"] + w.engine.calls["scale"]
        w.step(config, dep())
        if w.engine.calls["create"] + w.engine.calls["scale"] > before:
            starts.append(w.now)
        corpses = [t for t in w.engine.tasks.values() if t.state == "exited"]
        assert len(corpses) <= 1, corpses
    gaps = [b - a for a, b in itertools.pairwise(starts)]
    # 2 s backoff doubling per restart (2, 4, 8, 16, 32, ...): a handful of restarts, not 60
    assert 4 <= len(starts) <= 8, starts
    assert all(later >= earlier for earlier, later in itertools.pairwise(gaps[1:])), gaps


def test_a_crash_quotes_its_last_lines_with_secrets_redacted() -> None:
    w = World()
    config = cfg(env={"DATABASE_URL": "postgres://app:pw@db/app"})
    w.converge(config, dep())
    victim = w.engine.live()[0]
    w.engine.log_lines[victim.task_id] = [
        "DB_PASSWORD=hunter22",
        "panic: cannot reach postgres://app:pw@db/app",
    ]
    w.engine.crash(victim.task_id, exit_code=1)
    w.step(config, dep())
    (crash,) = [e for e in w.events.events if e.kind == "crash"]
    assert crash.data["last_lines"] == ["DB_PASSWORD=***", "panic: cannot reach ***"]
    assert "hunter22" not in crash.message and "app:pw" not in crash.message


def test_a_task_lost_with_its_host_is_fenced_replaced_at_once_and_no_crash() -> None:
    w = World()
    config = cfg(drain_method="proxy", instances=2)
    w.converge(config, dep())
    lost = w.engine.live()[0]
    w.engine.tasks[lost.task_id] = dataclasses.replace(
        lost, state="dead", host_lost=True, node="lab3", status_message="host lab3 is down"
    )
    w.step(config, dep())
    assert lost.task_id not in w.engine.tasks
    assert w.drainer.fenced == [lost.task_id] and lost.task_id not in w.drainer.forgotten
    assert len(w.engine.live()) == 2  # replaced in the same step: no backoff
    kinds = [e.kind for e in w.events.events]
    assert "host" in kinds and "crash" not in kinds
