"""Bounce planning (pure): desired AppSpec + observed app versions -> the next idempotent step.

The reconciler calls ``plan`` on every pass and performs the returned actions
(paasport.bounce.actions); ``bounce_status`` summarises the same split for status and monitoring.
PaaSTA's classic algorithm (paasta-spec §3.2/3.3): the new app version is the one whose config
hash equals the desired one, every other version is old.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

from paasport.bounce.actions import (
    Action,
    CreateAppVersion,
    DeleteAppVersion,
    DrainTask,
    KillTask,
    ScaleAppVersion,
)
from paasport.types import AppSpec, AppVersion, BounceMethod, Task

# Most desirable first: an old task that must stay is a healthy one; a surplus task to remove
# is an unhealthy one.
_HEALTH_RANK = {"healthy": 0, "unknown": 1, "unhealthy": 2}


@dataclass(frozen=True)
class BounceStatus:
    """Where an instance's bounce stands, in numbers and in one line a person can act on."""

    in_progress: bool
    method: str
    new_healthy: int
    new_total: int
    old_remaining: int
    waiting_on: str  # "" when nothing is pending


def is_dead(task: Task) -> bool:
    return task.state in ("exited", "dead")


FAILED_HEALTH_REASON = "failed healthcheck_max_consecutive_failures health checks in a row"


def is_failed(task: Task) -> bool:
    """A running task its health checks gave up on: replaced like a dead one."""
    return task.state == "running" and task.health == "unhealthy"


def is_happy(task: Task) -> bool:
    """A task that counts toward the bounce margin: running, healthy, not draining."""
    return task.state == "running" and task.health == "healthy" and not task.draining


def margin_target(replicas: int, margin_factor: float) -> int:
    """``ceil(replicas * margin)``, immune to float noise (10 * 0.3 is 3, not 4)."""
    margin = min(max(margin_factor, 0.0), 1.0)
    return math.ceil(round(replicas * margin, 9))


def _desirability(task: Task) -> tuple[int, float, str]:
    return (_HEALTH_RANK.get(task.health, 1), task.started_at, task.task_id)


def _surplus_order(task: Task) -> tuple[int, float, str]:
    """Unhealthy first, then unknown, then healthy; the newest first within each group."""
    return (-_HEALTH_RANK.get(task.health, 1), -task.started_at, task.task_id)


def _corpse_reason(task: Task) -> str:
    code = "" if task.exit_code is None else f" with code {task.exit_code}"
    oom = " (OOM killed)" if task.oom_killed else ""
    return f"task {task.state}{code}{oom}"


def _retire(task: Task, reason: str) -> Action:
    """Take a live task away: drain one that may hold traffic, kill one that cannot."""
    if task.health == "unhealthy":
        return KillTask(task, reason=f"{reason}, unhealthy")
    return DrainTask(task)


def _split(
    desired: AppSpec, observed: Sequence[AppVersion]
) -> tuple[list[AppVersion], list[AppVersion]]:
    new = [v for v in observed if v.config_hash == desired.config_hash]
    old = [v for v in observed if v.config_hash != desired.config_hash]
    return new, old


def _tasks(versions: Iterable[AppVersion]) -> list[Task]:
    return [t for v in versions for t in v.tasks]


def _cleanup_corpses(versions: Iterable[AppVersion], leaving: set[str]) -> list[Action]:
    """Dead tasks go; a version with nothing live left (``leaving`` excluded) is deleted."""
    actions: list[Action] = []
    for version in versions:
        alive = [t for t in version.tasks if not is_dead(t) and t.task_id not in leaving]
        if not alive and not any(t.task_id in leaving for t in version.tasks):
            actions.append(DeleteAppVersion(version.service, version.instance, version.config_hash))
            continue
        actions.extend(KillTask(t, reason=_corpse_reason(t)) for t in version.tasks if is_dead(t))
    return actions


def _remove_everything(versions: Sequence[AppVersion], reason: str) -> tuple[Action, ...]:
    """Instance removed (or stopped): drain every live task, delete versions left empty."""
    actions: list[Action] = []
    leaving: set[str] = set()
    for task in sorted(_tasks(versions), key=_surplus_order):
        if is_dead(task) or task.draining:
            continue
        actions.append(_retire(task, reason))
        leaving.add(task.task_id)
    actions.extend(_cleanup_corpses(versions, leaving))
    return tuple(actions)


def plan(
    desired: AppSpec | None,
    observed: Sequence[AppVersion],
    method: BounceMethod,
    margin_factor: float,
    now: float,
) -> tuple[Action, ...]:
    """One idempotent bounce step; an empty tuple means the instance has converged.

    Order of the actions: the new version's (corpse removal, create/scale, surplus removal),
    then old tasks to drain or kill, then corpses and empty versions. ``now`` is accepted for
    time-based rules; the current rules need none.
    """
    del now  # no time-based rule yet; part of the contract so callers never change
    if desired is None:
        return _remove_everything(observed, "instance removed from the configs")
    if desired.replicas <= 0:
        return _remove_everything(observed, "instance stopped")

    new_versions, old_versions = _split(desired, observed)
    new_tasks = _tasks(new_versions)
    new_dead = [t for t in new_tasks if is_dead(t)]
    new_draining = [t for t in new_tasks if not is_dead(t) and t.draining]
    # A new task that failed healthcheck_max_consecutive_failures checks in a row is replaced,
    # as Marathon and Kubernetes' liveness probes do (it is already out of the proxy's pool).
    new_failed = [t for t in new_tasks if not is_dead(t) and not t.draining and is_failed(t)]
    new_live = [t for t in new_tasks if not is_dead(t) and not t.draining and not is_failed(t)]
    happy_new = [t for t in new_live if is_happy(t)]
    old_live = sorted(
        (t for t in _tasks(old_versions) if not is_dead(t) and not t.draining), key=_desirability
    )

    actions: list[Action] = []
    # The new version: replace corpses, bring it to ``replicas``, remove any surplus.
    actions.extend(KillTask(t, reason=_corpse_reason(t)) for t in new_dead)
    actions.extend(KillTask(t, reason=FAILED_HEALTH_REASON) for t in new_failed)
    may_start = method != "downthenup" or not old_live
    if may_start and len(new_live) < desired.replicas:
        if not new_live and not new_draining:
            actions.append(CreateAppVersion(desired, desired.replicas))
        else:
            # The engine counts every live container, draining ones included.
            actions.append(ScaleAppVersion(desired, desired.replicas + len(new_draining)))
    elif len(new_live) > desired.replicas:
        surplus = sorted(new_live, key=_surplus_order)[: len(new_live) - desired.replicas]
        actions.extend(_retire(t, "surplus task") for t in surplus)

    # Old versions: which of their live tasks go in this step.
    leaving: list[Task]
    if method == "crossover":
        happy_kept = min(len(happy_new), desired.replicas)  # surplus removal keeps healthy last
        needed = max(margin_target(desired.replicas, margin_factor) - happy_kept, 0)
        leaving = old_live[needed:]
    elif method == "upthendown":
        all_new_happy = len(happy_new) >= desired.replicas
        leaving = old_live if all_new_happy else []
    else:  # downthenup, brutal
        leaving = old_live
    if method == "brutal":
        old_draining = [t for t in _tasks(old_versions) if not is_dead(t) and t.draining]
        leaving = leaving + old_draining
        actions.extend(KillTask(t, reason="brutal bounce") for t in leaving)
    else:
        actions.extend(_retire(t, f"old task ({method} bounce)") for t in leaving)
    actions.extend(_cleanup_corpses(old_versions, {t.task_id for t in leaving}))
    return tuple(actions)


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"


def bounce_status(
    desired: AppSpec | None,
    observed: Sequence[AppVersion],
    method: BounceMethod = "crossover",
    margin_factor: float = 1.0,
) -> BounceStatus:
    """Summarise the bounce of one instance for ``paasport status`` and the monitoring checks."""
    if desired is None or desired.replicas <= 0:
        live = [t for t in _tasks(observed) if not is_dead(t)]
        verb = "removing" if desired is None else "stopping"
        new_live = [t for t in live if t.config_hash == desired.config_hash] if desired else []
        waiting = f"{verb} {_count(len(live), 'task')}" if live else ""
        return BounceStatus(
            in_progress=bool(live),
            method=method,
            new_healthy=0,
            new_total=len(new_live),
            old_remaining=len(live) - len(new_live),
            waiting_on=waiting,
        )

    new_versions, old_versions = _split(desired, observed)
    new_tasks = [t for t in _tasks(new_versions) if not is_dead(t)]
    new_live = [t for t in new_tasks if not t.draining]
    happy_new = [t for t in new_live if is_happy(t)]
    old_tasks = [t for t in _tasks(old_versions) if not is_dead(t)]
    old_draining = [t for t in old_tasks if t.draining]
    old_serving = [t for t in old_tasks if not t.draining]

    parts: list[str] = []
    missing = desired.replicas - len(new_live)
    if method == "downthenup" and old_serving and missing > 0:
        parts.append(
            f"waiting for {_count(len(old_serving), 'old task')} to drain "
            "before starting the new version"
        )
    elif missing > 0:
        parts.append(f"starting {_count(missing, 'new task')}")
    pending = [t for t in new_live if not is_happy(t)]
    if pending:
        failing = sum(1 for t in pending if t.health == "unhealthy")
        its = "its" if len(pending) == 1 else "their"
        line = f"waiting for {_count(len(pending), 'new task')} to pass {its} health check"
        parts.append(line + (f" ({failing} failing)" if failing else ""))
    if missing < 0:
        parts.append(f"removing {_count(-missing, 'surplus task')}")
    if old_draining:
        parts.append(f"draining {_count(len(old_draining), 'old task')}")
    new_draining = sum(1 for t in new_tasks if t.draining)
    if new_draining:
        parts.append(f"draining {_count(new_draining, 'surplus task')}")
    if old_serving and not parts:
        parts.append(f"{_count(len(old_serving), 'old task')} left to replace")
    # New tasks that failed their checks with no old task left are an unhealthy instance, not
    # a bounce: reporting them as one would hide the outage from status and downgrade alerts.
    still_starting = any(t.health != "unhealthy" for t in pending)
    in_progress = bool(old_tasks) or missing != 0 or still_starting
    return BounceStatus(
        in_progress=in_progress,
        method=method,
        new_healthy=len(happy_new),
        new_total=len(new_live),
        old_remaining=len(old_tasks),
        waiting_on="; ".join(parts),
    )


def ramp_share(
    ramp: Sequence[float], step_seconds: float, since: float | None, now: float
) -> float | None:
    """The share of its namespace's traffic the new version of a ramped bounce
    (``bounce_ramp``) takes at ``now``, its first task having started at ``since``: ``ramp[i]``
    during step i; None before it started and once a step reaches 100 or the ramp ends (then
    the bounce goes on as crossover: the old tasks leave)."""
    if not ramp or since is None or step_seconds <= 0:
        return None
    step = int(max(now - since, 0.0) // step_seconds)
    if step >= len(ramp) or ramp[step] >= 100:
        return None
    return float(ramp[step])


def ramp_anchor(versions: Iterable[AppVersion], config_hash: str) -> float | None:
    """When the new version's ramp started: the earliest start of its running tasks."""
    starts = [
        t.started_at for v in versions if v.config_hash == config_hash for t in v.tasks
        if t.state == "running" and t.started_at
    ]  # fmt: skip
    return min(starts) if starts else None


def hold_old_tasks(actions: Sequence[Action], desired: AppSpec) -> tuple[Action, ...]:
    """``actions`` without the ones that take a live old task away (a ramp holds them)."""
    kept: list[Action] = []
    for action in actions:
        if isinstance(action, DrainTask | KillTask):
            task = action.task
            if task.config_hash != desired.config_hash and not is_dead(task):
                continue
        kept.append(action)
    return tuple(kept)
