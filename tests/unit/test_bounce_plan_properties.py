"""Property-based tests of bounce.plan: simulate whole bounces where actions take effect and new
tasks become healthy (and drains finish) in an arbitrary order chosen by hypothesis."""

from __future__ import annotations

import itertools
from dataclasses import replace

from hypothesis import given, settings
from hypothesis import strategies as st

from paasport.bounce.actions import (
    Action,
    CreateAppVersion,
    DeleteAppVersion,
    DrainTask,
    KillTask,
    ScaleAppVersion,
)
from paasport.bounce.plan import is_happy, margin_target, plan
from paasport.types import AppSpec, AppVersion, BounceMethod, Task, TaskHealth

METHODS: tuple[BounceMethod, ...] = ("crossover", "upthendown", "downthenup", "brutal")


class World:
    """A tiny in-memory engine: app versions by hash, tasks that actions create/drain/remove."""

    def __init__(self, old: dict[str, list[TaskHealth]]) -> None:
        self.ids = itertools.count()
        self.versions: dict[str, list[Task]] = {
            h: [self.task(h, health) for health in healths] for h, healths in old.items()
        }

    def task(self, config_hash: str, health: TaskHealth = "unknown") -> Task:
        return Task(
            task_id=f"t{next(self.ids)}",
            service="web",
            instance="main",
            cluster="local",
            config_hash=config_hash,
            git_sha="abc",
            state="running",
            health=health,
            started_at=float(next(self.ids)),
        )

    def observed(self) -> list[AppVersion]:
        return [
            AppVersion("web", "main", "local", h, "abc", "img", tasks=tuple(tasks))
            for h, tasks in self.versions.items()
        ]

    def replace_task(self, task: Task, new: Task | None) -> None:
        tasks = self.versions[task.config_hash]
        index = next(i for i, t in enumerate(tasks) if t.task_id == task.task_id)
        if new is None:
            del tasks[index]
        else:
            tasks[index] = new

    def apply(self, action: Action) -> None:
        match action:
            case CreateAppVersion(spec=s, count=n):
                assert s.config_hash not in self.versions or not self.versions[s.config_hash]
                self.versions[s.config_hash] = [self.task(s.config_hash) for _ in range(n)]
            case ScaleAppVersion(spec=s, count=n):
                tasks = self.versions[s.config_hash]
                tasks.extend(self.task(s.config_hash) for _ in range(n - len(tasks)))
            case DrainTask(task=t):
                assert not t.draining
                self.replace_task(t, replace(t, draining=True))
            case KillTask(task=t):
                self.replace_task(t, None)
            case DeleteAppVersion(config_hash=h):
                assert not self.versions[h], "deleted a version that still had tasks"
                del self.versions[h]

    def healthy(self) -> int:
        return sum(1 for tasks in self.versions.values() for t in tasks if is_happy(t))

    def pending_new(self, new_hash: str) -> list[Task]:
        return [t for t in self.versions.get(new_hash, []) if t.health != "healthy"]

    def draining(self) -> list[Task]:
        return [t for tasks in self.versions.values() for t in tasks if t.draining]


def spec(replicas: int) -> AppSpec:
    return AppSpec("web", "main", "local", "img", "abc", config_hash="new", replicas=replicas)


old_versions = st.dictionaries(
    st.sampled_from(["old1", "old2", "old3", "new"]),  # "new": a rollback / a scale change
    st.lists(st.sampled_from(["healthy", "healthy", "unknown", "unhealthy"]), max_size=6),
    max_size=3,
)


def run_bounce(
    data: st.DataObject,
    world: World,
    method: BounceMethod,
    replicas: int,
    margin: float,
) -> list[int]:
    """Drive the bounce to convergence; returns the healthy count after every step."""
    desired = spec(replicas)
    healthy_counts = [world.healthy()]
    for _ in range(400):
        actions = plan(desired, world.observed(), method, margin, now=0.0)
        # plan is pure: the same input gives the same step
        assert actions == plan(desired, world.observed(), method, margin, now=0.0)
        for action in actions:
            world.apply(action)
        healthy_counts.append(world.healthy())
        pending, draining = world.pending_new("new"), world.draining()
        if not actions and not pending and not draining:
            break
        events = ["none"] if actions else []  # idle only while the plan still acts
        if pending:
            events.append("healthy")
        if draining:
            events.append("drained")
        event = data.draw(st.sampled_from(events))
        if event == "healthy":
            task = data.draw(st.sampled_from(pending))
            world.replace_task(task, replace(task, health="healthy"))
        elif event == "drained":
            world.replace_task(data.draw(st.sampled_from(draining)), None)
        healthy_counts.append(world.healthy())
    else:
        raise AssertionError("the bounce did not converge in 400 steps")
    # converged: only the new version, with exactly ``replicas`` healthy tasks
    assert list(world.versions) == (["new"] if replicas else [])
    assert world.healthy() == replicas
    return healthy_counts


@settings(max_examples=300, deadline=None)
@given(
    data=st.data(),
    old=old_versions,
    replicas=st.integers(min_value=1, max_value=8),
    margin=st.sampled_from([1.0, 0.95, 0.9, 0.75, 0.5, 0.3, 0.1]),
)
def test_crossover_never_drops_below_the_margin_once_reached(
    data: st.DataObject, old: dict[str, list[TaskHealth]], replicas: int, margin: float
) -> None:
    world = World(old)
    counts = run_bounce(data, world, "crossover", replicas, margin)
    target = margin_target(replicas, margin)
    reached = False
    for healthy in counts:
        if reached:
            assert healthy >= target, counts
        reached = reached or healthy >= target


@settings(max_examples=200, deadline=None)
@given(
    data=st.data(),
    old=old_versions,
    method=st.sampled_from(METHODS),
    replicas=st.integers(min_value=0, max_value=6),
)
def test_every_method_converges_to_the_new_version(
    data: st.DataObject, old: dict[str, list[TaskHealth]], method: BounceMethod, replicas: int
) -> None:
    run_bounce(data, World(old), method, replicas, 1.0)


@settings(max_examples=200, deadline=None)
@given(data=st.data(), old_count=st.integers(1, 5), replicas=st.integers(1, 5))
def test_upthendown_drains_nothing_before_all_new_are_healthy(
    data: st.DataObject, old_count: int, replicas: int
) -> None:
    world = World({"old": ["healthy"] * old_count})
    desired = spec(replicas)
    for _ in range(100):
        actions = plan(desired, world.observed(), "upthendown", 1.0, now=0.0)
        new_happy = sum(1 for t in world.versions.get("new", []) if is_happy(t))
        if any(isinstance(a, DrainTask) and a.task.config_hash == "old" for a in actions):
            assert new_happy == replicas
        for action in actions:
            world.apply(action)
        pending = world.pending_new("new")
        if not actions and not pending and not world.draining():
            break
        if pending:
            task = data.draw(st.sampled_from(pending))
            world.replace_task(task, replace(task, health="healthy"))
        for task in world.draining():
            world.replace_task(task, None)
    assert list(world.versions) == ["new"]
