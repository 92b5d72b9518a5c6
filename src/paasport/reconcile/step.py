"""The decisions of one reconcile step, pure: bounce plan + what deployd remembers -> what to do.

``reconcile.reconciler.reconcile_instance`` gathers the inputs and calls ``next_step`` (crash
backoff, crash/OOM/unhealthy events, which drains begin) and then ``drain_stops`` (which draining
tasks may stop now); it performs what they return. No I/O and no clock: ``now`` is a parameter.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass, field

from paasport.bounce.actions import Action, CreateAppVersion, DrainTask, KillTask, ScaleAppVersion
from paasport.bounce.backoff import DEFAULT_POLICY, BackoffPolicy, decide, recent, record_restart
from paasport.bounce.plan import FAILED_HEALTH_REASON
from paasport.monitoring.events import CrashData, EventKind, Level, UnhealthyData
from paasport.monitoring.redact import redact_all
from paasport.types import AppSpec, InstanceConfig, Task

DEAD_STATES = ("exited", "dead")
# Corpses of the desired version kept while an instance crash-loops: the newest one, so status
# can show its exit code steadily; older ones are removed (they would pile up otherwise).
KEEP_CORPSES = 1
# A kept corpse is removed once fewer restarts than this remain in the backoff window.
CRASH_LOOP_RESTARTS = 2


@dataclass(frozen=True)
class StepPolicy:
    """What the step needs of an instance's config; ``configured`` False: removed from configs."""

    configured: bool = True
    backoff_seconds: float = 10.0
    noop_drain: bool = False
    drain_timeout_seconds: float = 60.0
    mem: float = 0.0
    max_consecutive_failures: int = 30
    backoff: BackoffPolicy = DEFAULT_POLICY
    env: Mapping[str, str] = field(default_factory=dict)  # its values are redacted from logs


def policy_for(config: InstanceConfig | None, removed_drain_timeout: float) -> StepPolicy:
    if config is None:
        return StepPolicy(configured=False, drain_timeout_seconds=removed_drain_timeout)
    return StepPolicy(
        backoff_seconds=config.backoff_seconds,
        noop_drain=config.drain_method == "noop",
        drain_timeout_seconds=config.drain_timeout_seconds,
        mem=config.mem,
        max_consecutive_failures=config.healthcheck.max_consecutive_failures,
        env=config.env,
    )


@dataclass(frozen=True)
class StepMemory:
    """The part of deployd's memory of an instance that the step reads and replaces."""

    crash_times: tuple[float, ...] = ()
    seen_corpses: frozenset[str] = frozenset()
    draining_since: Mapping[str, float] = field(default_factory=dict)


@dataclass(frozen=True)
class PendingEvent:
    """An event for the executor to record (it adds time, service, instance, cluster)."""

    level: Level
    kind: EventKind
    message: str
    data: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class Step:
    """``actions``: perform in order; ``begin_drains``: tasks whose drain starts now;
    ``backoff_wait``: seconds until a held-back replacement may start (None: nothing held)."""

    actions: tuple[Action, ...]
    memory: StepMemory
    events: tuple[PendingEvent, ...] = ()
    backoff_wait: float | None = None
    begin_drains: tuple[Task, ...] = ()
    noop_drain: bool = False  # drain_method noop: the executor drains with NoopDrainer


def is_corpse_of(task: Task, desired: AppSpec | None) -> bool:
    return (
        desired is not None
        and task.state in DEAD_STATES
        and task.config_hash == desired.config_hash
    )


def is_liveness_kill(action: Action) -> bool:
    """A running task replaced because it failed its health checks (not a corpse)."""
    return isinstance(action, KillTask) and action.reason == FAILED_HEALTH_REASON


def _name(task: Task) -> str:
    return task.name or task.task_id


def _newest(tasks: Sequence[Task], n: int) -> set[str]:
    ordered = sorted(tasks, key=lambda t: (t.started_at, t.task_id), reverse=True)
    return {t.task_id for t in ordered[:n]}


def _crash_event(
    task: Task, raw: Sequence[str], restarts: int, loop: bool, policy: StepPolicy
) -> PendingEvent:
    lines = redact_all(list(raw), policy.env)  # the event log must not keep a task's secrets
    data = CrashData(
        task=_name(task),
        task_id=task.task_id,
        exit_code=task.exit_code,
        last_lines=list(lines),
        restarts=restarts,
        crash_loop=loop,
        git_sha=task.git_sha,
        config_hash=task.config_hash,
    )
    suffix = f" (crash loop: {restarts} restarts lately)" if loop else ""
    if task.oom_killed:
        message = f"task {_name(task)} was OOM-killed (mem {policy.mem:g} MB){suffix}"
        return PendingEvent("error", EventKind.OOM, message, data.to_json())
    tail = f": {lines[-1]}" if lines else ""
    message = f"task {_name(task)} exited with code {task.exit_code}{tail}{suffix}"
    return PendingEvent("warning", EventKind.CRASH, message, data.to_json())


def _lost_event(task: Task) -> PendingEvent:
    why = task.status_message or f"host {task.node or task.host} is down"
    return PendingEvent(
        "warning",
        EventKind.HOST,
        f"task {_name(task)} was lost with its host ({why}); replacing it elsewhere",
        {"task": _name(task), "task_id": task.task_id, "node": task.node, "host": task.host},
    )


def next_step(
    actions: Sequence[Action],
    desired: AppSpec | None,
    policy: StepPolicy,
    memory: StepMemory,
    last_lines: Mapping[str, Sequence[str]],
    now: float,
) -> Step:
    """Crash backoff over the plan: record each dead (or health-failed) task of the desired
    version once; hold its replacement back (create and scale alike: an instance whose every
    task died gets a create, not a scale) until the backoff allows it; keep only the newest
    corpse while the instance crash-loops (status shows its exit code), remove older ones.

    ``last_lines``: the last log lines of the corpses not yet in ``memory.seen_corpses``.
    """
    dead = [a.task for a in actions if isinstance(a, KillTask) and is_corpse_of(a.task, desired)]
    corpses = [t for t in dead if not t.host_lost]
    failed = [a.task for a in actions if isinstance(a, KillTask) and is_liveness_kill(a)]
    seen = set(memory.seen_corpses)
    # lost with their host: the app did nothing wrong, so no backoff holds their replacement
    events = [_lost_event(t) for t in dead if t.host_lost and t.task_id not in seen]
    seen.update(t.task_id for t in dead if t.host_lost)
    if (not corpses and not failed) or not policy.configured:
        remembered = StepMemory(memory.crash_times, frozenset(seen), memory.draining_since)
        return _with_drains(tuple(actions), remembered, tuple(events), None, policy)
    decision = decide(memory.crash_times, policy.backoff_seconds, now, policy.backoff)
    for task in corpses:
        if task.task_id not in seen:
            seen.add(task.task_id)
            lines = last_lines.get(task.task_id, ())
            events.append(_crash_event(task, lines, decision.restarts, decision.crash_loop, policy))
    for task in failed:
        if task.task_id not in seen:
            seen.add(task.task_id)
            loop = f" ({decision.restarts} replacements lately)" if decision.crash_loop else ""
            events.append(
                PendingEvent(
                    "warning",
                    EventKind.UNHEALTHY,
                    f"task {_name(task)} failed {policy.max_consecutive_failures} health "
                    f"check(s) in a row; replacing it{loop}",
                    UnhealthyData(
                        task=_name(task),
                        task_id=task.task_id,
                        restarts=decision.restarts,
                        detail=task.health_detail,
                        git_sha=task.git_sha,
                        config_hash=task.config_hash,
                    ).to_json(),
                )
            )
    replacing = bool(failed) or any(
        isinstance(a, (CreateAppVersion, ScaleAppVersion)) for a in actions
    )
    if decision.may_start or not replacing:  # nothing to hold back without a replacement
        history = memory.crash_times
        if replacing:
            history = record_restart(history, now, policy.backoff)
        looping = len(recent(history, now, policy.backoff)) >= CRASH_LOOP_RESTARTS
        kept = _newest(corpses, KEEP_CORPSES) if looping else set()
        out = tuple(a for a in actions if not _kills_one_of(a, kept))
        new_memory = StepMemory(history, frozenset(seen), memory.draining_since)
        return _with_drains(out, new_memory, tuple(events), None, policy)
    # Held back, like Kubernetes' CrashLoopBackOff: the failing task (out of rotation already)
    # and the newest corpse stay until the backoff allows the replacement.
    kept = _newest(corpses, KEEP_CORPSES)
    held = tuple(
        a
        for a in actions
        if not _kills_one_of(a, kept)
        and not is_liveness_kill(a)
        and not isinstance(a, ScaleAppVersion)
        and not (isinstance(a, CreateAppVersion) and a.spec == desired)
    )
    new_memory = StepMemory(memory.crash_times, frozenset(seen), memory.draining_since)
    wait = max(decision.next_start_at - now, 0.1)
    return _with_drains(held, new_memory, tuple(events), wait, policy)


def _kills_one_of(action: Action, task_ids: Set[str]) -> bool:
    return isinstance(action, KillTask) and action.task.task_id in task_ids


def _with_drains(
    actions: tuple[Action, ...],
    memory: StepMemory,
    events: tuple[PendingEvent, ...],
    wait: float | None,
    policy: StepPolicy,
) -> Step:
    """Which drains begin this step: each DrainTask of a task not draining already."""
    begin = tuple(
        a.task
        for a in actions
        if isinstance(a, DrainTask) and a.task.task_id not in memory.draining_since
    )
    return Step(actions, memory, events, wait, begin, policy.noop_drain)


@dataclass(frozen=True)
class DrainView:
    """What the drainer says of one draining task still in the engine."""

    name: str
    done: bool
    waiting_on: str = ""


@dataclass(frozen=True)
class DrainStops:
    """Draining tasks that may stop now, and what the others still wait on ("" if none)."""

    stop: tuple[str, ...]
    waiting_on: str = ""
    timed_out: tuple[str, ...] = ()


def drain_stops(
    draining_since: Mapping[str, float],
    progress: Mapping[str, DrainView],
    killing: Set[str],
    policy: StepPolicy,
    now: float,
) -> DrainStops:
    """A draining task stops once its drain is done (``noop`` drains are done at once) or
    ``drain_timeout_seconds`` after the one time its drain began (``draining_since``).

    ``progress``: task id -> the drainer's view, for the draining tasks still in the engine, in
    the engine's order (those missing vanished: never stopped); ``killing``: stopped anyway.
    """
    stop: list[str] = []
    timed_out: list[str] = []
    waiting = ""
    for task_id, view in progress.items():
        since = draining_since.get(task_id)
        if since is None or task_id in killing:
            continue
        if policy.noop_drain or view.done:
            stop.append(task_id)
        elif now - since >= policy.drain_timeout_seconds:
            stop.append(task_id)
            timed_out.append(task_id)
        else:
            waiting = f"draining {view.name}: {view.waiting_on}"
    return DrainStops(tuple(stop), waiting, tuple(timed_out))
