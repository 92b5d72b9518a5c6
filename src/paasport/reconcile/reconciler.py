"""One idempotent reconcile step for one service instance: desired app -> bounce plan -> engine.

deployd calls ``reconcile_instance`` from its workers (never two at once for one instance); it
computes the desired AppSpec (bounce.desired), asks bounce.plan for actions, performs them through
the Engine and the Drainer, records events, and says when the instance wants another step.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Protocol

from paasport.bounce.actions import (
    Action,
    CreateAppVersion,
    DeleteAppVersion,
    DrainTask,
    KillTask,
    ScaleAppVersion,
)
from paasport.bounce.desired import desired_app, version_document
from paasport.bounce.plan import (
    BounceStatus,
    bounce_status,
    hold_old_tasks,
    plan,
    ramp_anchor,
    ramp_share,
)
from paasport.config.secrets import secret_refs
from paasport.engine.base import Engine
from paasport.errors import PaasportError
from paasport.monitoring import metrics
from paasport.monitoring.events import (
    AppVersionData,
    BounceData,
    Event,
    EventKind,
    Level,
)
from paasport.reconcile.drain import Drainer, NoopDrainer
from paasport.reconcile.step import (
    DEAD_STATES,
    DrainView,
    Step,
    StepMemory,
    StepPolicy,
    drain_stops,
    is_corpse_of,
    next_step,
    policy_for,
)
from paasport.types import AppSpec, AppVersion, DeploymentState, InstanceConfig, Task

log = logging.getLogger("paasport.reconcile")


class HealthSource(Protocol):
    """The part of engine.health.HealthMonitor the reconciler uses."""

    def with_health(self, app_versions: Sequence[AppVersion]) -> tuple[AppVersion, ...]: ...


class EventSink(Protocol):
    """The part of monitoring.events.EventLog the reconciler uses."""

    def record(self, event: Event) -> None: ...


@dataclass(frozen=True)
class ReconcilerSettings:
    """Timings of the reconciler; tests shorten them."""

    stop_grace_seconds: float = 10.0  # SIGTERM -> SIGKILL for a drained task
    kill_grace_seconds: float = 1.0  # the same for KillTask of a live task (brutal, surplus)
    recheck_seconds: float = 1.0  # next step while a bounce or a drain is in progress
    crash_log_lines: int = 5
    # A removed instance's own drain_timeout_seconds is gone with its config: InstanceConfig's
    # default bounds its drains (0 would stop its tasks before any proxy acknowledged).
    removed_drain_timeout_seconds: float = 60.0
    # the env a task starts with: SECRET(name) values resolved (config.secrets); None: as is
    resolve_env: Callable[[str, Mapping[str, str]], Mapping[str, str]] | None = None


@dataclass
class InstanceMemory:
    """What deployd remembers about one instance between steps. Losing it (a restart) is safe:
    drains begun before are taken up again from the drainer (``Drainer.marked``), crash backoff
    starts from zero, the engine still holds the real state."""

    draining_since: dict[str, float] = field(default_factory=dict)
    draining_tasks: dict[str, Task] = field(default_factory=dict)  # to forget if they vanish
    drains_adopted: bool = False  # asked the drainer for drains begun before this memory
    crash_times: list[float] = field(default_factory=list)
    seen_corpses: set[str] = field(default_factory=set)
    bouncing: bool = False
    bounce_target: str = ""  # the config hash the running bounce goes to
    bounce_git_sha: str = ""
    last_step_finished: float = 0.0


@dataclass(frozen=True)
class StepResult:
    """What one step did and when the instance wants the next one (None: when something changes)."""

    performed: tuple[Action, ...]
    again_in: float | None
    status: BounceStatus | None
    desired: AppSpec | None
    waiting_on: str = ""


def reconcile_instance(
    config: InstanceConfig | None,
    deployment: DeploymentState | None,
    observed: Sequence[AppVersion],
    engine: Engine,
    health: HealthSource,
    drainer: Drainer,
    events: EventSink,
    now: float,
    *,
    memory: InstanceMemory | None = None,
    settings: ReconcilerSettings | None = None,
    registry: str | None = None,
    service: str | None = None,
    instance: str | None = None,
) -> StepResult:
    """Move one instance one step towards its declared state.

    ``config`` None: the instance vanished from the configs (every app version is removed).
    ``deployment`` None: never marked for deployment (nothing to do; running tasks are kept).
    """
    memory = memory if memory is not None else InstanceMemory()
    settings = settings or ReconcilerSettings()
    service = config.service if config else service
    instance = config.instance if config else instance
    if service is None or instance is None:
        raise ValueError("reconcile_instance needs a config or service and instance")
    if config is not None and deployment is None:
        return StepResult((), None, None, None, "not marked for deployment")

    desired: AppSpec | None = None
    if config is not None and deployment is not None:
        desired = desired_app(config, deployment, registry)
    if not memory.drains_adopted:
        _adopt_drains(observed, drainer, memory)
    observed = _mark_draining(health.with_health(observed), memory, drainer)
    if desired is None and not observed:
        return StepResult((), None, None, None)

    method = config.bounce_method if config else "brutal"
    margin = config.bounce_margin_factor if config else 1.0
    planned = plan(desired, observed, method, margin, now)
    ramping = (
        config is not None
        and desired is not None
        and method == "crossover"
        and ramp_share(
            config.bounce_ramp, config.bounce_ramp_step_seconds,
            ramp_anchor(observed, desired.config_hash), now,
        ) is not None
    )  # fmt: skip
    if ramping:  # the proxy gives the new version its share; the old tasks stay till the end
        assert desired is not None
        planned = hold_old_tasks(planned, desired)
    policy = policy_for(config, settings.removed_drain_timeout_seconds)
    before = StepMemory(
        tuple(memory.crash_times), frozenset(memory.seen_corpses), dict(memory.draining_since)
    )
    lines = _new_corpse_lines(planned, desired, engine, memory, settings)
    if (
        lines
        and desired is not None
        and settings.resolve_env is not None
        and secret_refs(desired.env)
    ):  # crash lines to quote: the secrets' values join what they are redacted of
        policy = dataclasses.replace(policy, env=settings.resolve_env(service, desired.env))
    step = next_step(planned, desired, policy, before, lines, now)
    memory.crash_times = list(step.memory.crash_times)
    memory.seen_corpses = set(step.memory.seen_corpses)
    actions, backoff_wait = step.actions, step.backoff_wait
    cluster = engine.cluster
    if step.noop_drain:
        drainer = NoopDrainer()
    document = version_document(config, deployment, registry) if config and deployment else None
    ctx = _Context(
        service, instance, cluster, config, engine, drainer, events, settings, now,
        document, desired.config_hash if desired else "",
    )  # fmt: skip
    for pending in step.events:
        ctx.event(pending.level, pending.kind, pending.message, dict(pending.data))

    status = bounce_status(desired, observed, method, margin) if desired is not None else None
    replacing = any(
        av.tasks for av in observed if desired and av.config_hash != desired.config_hash
    )
    if (
        memory.bouncing
        and desired is not None
        and desired.replicas > 0
        and memory.bounce_target
        and desired.config_hash != memory.bounce_target
    ):  # marked (or changed) again while it ran: one bounce, to the newest target
        old = f"git {memory.bounce_git_sha[:8]} config {memory.bounce_target[:8]}"
        ctx.event(
            "info",
            EventKind.BOUNCE,
            f"{method} bounce to {old} superseded by {desired_id(desired)}: the newest target "
            "wins, no second bounce",
            BounceData(
                method=method, target=desired.config_hash, superseded=memory.bounce_target
            ).to_json(),
        )
        memory.bounce_target, memory.bounce_git_sha = desired.config_hash, desired.git_sha
    if status is not None and status.in_progress and replacing and not memory.bouncing:
        memory.bouncing = True
        assert desired is not None
        memory.bounce_target, memory.bounce_git_sha = desired.config_hash, desired.git_sha
        if desired.replicas == 0:  # a stop (its tag changes the config hash): not a bounce
            ctx.event("info", "bounce", f"{status.waiting_on or 'stopping'} (desired_state stop)")
        else:
            ctx.event(
                "info",
                EventKind.BOUNCE,
                f"{method} bounce to {desired_id(desired)} started",
                BounceData(method=method, target=desired.config_hash).to_json(),
            )
            metrics.bounces_total.labels(result="started").inc()

    performed, waiting = _perform(step, observed, memory, policy, ctx)

    if status is not None and memory.bouncing and not status.in_progress and not actions:
        memory.bouncing = False
        memory.bounce_target = memory.bounce_git_sha = ""
        assert desired is not None
        if desired.replicas == 0:
            ctx.event("info", "bounce", "stopped: no task left (desired_state stop)")
        else:
            ctx.event(
                "info",
                EventKind.BOUNCE,
                f"bounce to {desired_id(desired)} finished",
                BounceData(method=method, target=desired.config_hash).to_json(),
            )
            metrics.bounces_total.labels(result="finished").inc()
    if desired is None and not performed and not observed:
        memory.bouncing = False
        memory.bounce_target = memory.bounce_git_sha = ""

    memory.last_step_finished = now
    busy = bool(actions) or bool(memory.draining_since) or bool(status and status.in_progress)
    again: float | None = settings.recheck_seconds if busy else None
    if backoff_wait is not None:
        again = backoff_wait if again is None else min(again, backoff_wait)
    waiting_on = waiting or (status.waiting_on if status else "")
    return StepResult(performed, again, status, desired, waiting_on)


def desired_id(desired: AppSpec | None) -> str:
    if desired is None:
        return "nothing"
    return f"git {desired.git_sha[:8]} config {desired.config_hash[:8]}"


@dataclass(frozen=True)
class _Context:
    service: str
    instance: str
    cluster: str
    config: InstanceConfig | None
    engine: Engine
    drainer: Drainer
    events: EventSink
    settings: ReconcilerSettings
    now: float
    document: dict[str, Any] | None = None  # the desired version's version_document
    document_hash: str = ""

    def event(
        self,
        level: Level,
        kind: EventKind | str,
        message: str,
        data: dict[str, object] | None = None,
    ) -> None:
        log.info("%s.%s: %s", self.service, self.instance, message)
        try:
            self.events.record(
                Event(
                    time=self.now,
                    level=level,
                    kind=kind,
                    service=self.service,
                    instance=self.instance,
                    cluster=self.cluster,
                    message=message,
                    data=data or {},
                )
            )
        except PaasportError as err:  # the event log must never stop a bounce
            log.warning("cannot record event: %s", err)


def _adopt_drains(observed: Sequence[AppVersion], drainer: Drainer, memory: InstanceMemory) -> None:
    """A fresh memory (deployd restarted) takes up the drains begun before: a task left marked
    draining would otherwise stay out of every proxy's rotation for good. Finished, not undone:
    the plan had already given the task up."""
    live = [t for av in observed for t in av.tasks if t.state not in DEAD_STATES]
    begun = drainer.marked(live) if live else {}
    for task in live:
        since = begun.get(task.task_id)
        if since is not None and task.task_id not in memory.draining_since:
            log.info(
                "%s.%s: finishing the drain of %s begun earlier",
                task.service,
                task.instance,
                task.name or task.task_id,
            )
            memory.draining_since[task.task_id] = since
            memory.draining_tasks[task.task_id] = task
    memory.drains_adopted = True


def _mark_draining(
    observed: Sequence[AppVersion], memory: InstanceMemory, drainer: Drainer
) -> tuple[AppVersion, ...]:
    """Copy ``Task.draining`` from the drain ledger; a task that vanished from the engine
    mid-drain (removed by hand, or by the engine) is forgotten here and by the drainer, so no
    drain mark outlives it."""
    live = {t.task_id for av in observed for t in av.tasks}
    for task_id in list(memory.draining_since):
        if task_id not in live:
            del memory.draining_since[task_id]
            gone = memory.draining_tasks.pop(task_id, None)
            if gone is not None:
                drainer.forget(gone)
    memory.seen_corpses &= live
    if not memory.draining_since:
        return tuple(observed)
    out = []
    for av in observed:
        tasks = tuple(
            dataclasses.replace(t, draining=True) if t.task_id in memory.draining_since else t
            for t in av.tasks
        )
        out.append(dataclasses.replace(av, tasks=tasks))
    return tuple(out)


def _new_corpse_lines(
    planned: Sequence[Action],
    desired: AppSpec | None,
    engine: Engine,
    memory: InstanceMemory,
    settings: ReconcilerSettings,
) -> dict[str, list[str]]:
    """The last log lines of each corpse of the desired version not recorded yet."""
    return {
        a.task.task_id: _last_log_lines(engine, a.task, settings.crash_log_lines)
        for a in planned
        if isinstance(a, KillTask)
        and is_corpse_of(a.task, desired)
        and not a.task.host_lost  # no crash to explain, and its host cannot be asked
        and a.task.task_id not in memory.seen_corpses
    }


def _last_log_lines(engine: Engine, task: Task, n: int) -> list[str]:
    try:
        lines = [
            line.message.rstrip("\n")
            for line in engine.logs(task.service, task.instance, follow=False, tail=n * 4)
            if line.task_id == task.task_id
        ]
    except PaasportError:
        return []
    return lines[-n:]


def _started_with(spec: AppSpec, ctx: _Context) -> AppSpec:
    """The spec tasks start from: SECRET(name) env values resolved, only here (never in the
    spec deployd keeps, plans with or records)."""
    resolve = ctx.settings.resolve_env
    if resolve is None or not secret_refs(spec.env):
        return spec
    return dataclasses.replace(spec, env=dict(resolve(spec.service, spec.env)))


def _perform(
    step: Step,
    observed: Sequence[AppVersion],
    memory: InstanceMemory,
    policy: StepPolicy,
    ctx: _Context,
) -> tuple[tuple[Action, ...], str]:
    """Carry out the step: creates and scales first, then stops (in parallel), then deletes."""
    performed: list[Action] = []
    stops: list[tuple[Action, Task, float]] = []
    drainer = ctx.drainer
    beginning = {t.task_id for t in step.begin_drains}
    for action in step.actions:
        if isinstance(action, CreateAppVersion):
            ctx.engine.create_app_version(_started_with(action.spec, ctx), action.count)
            ctx.event(
                "info",
                EventKind.APP_VERSION,
                f"started {action.count} task(s) of {desired_id(action.spec)}",
                AppVersionData(
                    action.spec.config_hash,
                    action.spec.git_sha,
                    action.count,
                    config=ctx.document if action.spec.config_hash == ctx.document_hash else None,
                ).to_json(),
            )
            performed.append(action)
        elif isinstance(action, ScaleAppVersion):
            ctx.engine.scale_app_version(_started_with(action.spec, ctx), action.count)
            performed.append(action)
        elif isinstance(action, DrainTask):
            task = action.task
            if task.task_id in beginning:
                drainer.start(task, ctx.config)
                memory.draining_since[task.task_id] = ctx.now
                memory.draining_tasks[task.task_id] = task
            performed.append(action)
        elif isinstance(action, KillTask):
            task = action.task
            grace = 0.0 if task.state in DEAD_STATES else ctx.settings.kill_grace_seconds
            stops.append((action, task, grace))
    # Every task being drained (this step or earlier) is stopped once its drain is done.
    killing = {t.task_id for _, t, _ in stops}
    draining = {
        t.task_id: t
        for av in observed
        for t in av.tasks
        if t.task_id in memory.draining_since and t.task_id not in killing
    }
    progress = {}
    for task_id, task in draining.items():
        status = drainer.status(task, ctx.config, ctx.now)
        progress[task_id] = DrainView(task.name or task_id, status.done, status.waiting_on)
    decided = drain_stops(memory.draining_since, progress, killing, policy, ctx.now)
    stops.extend(
        (DrainTask(draining[tid]), draining[tid], ctx.settings.stop_grace_seconds)
        for tid in decided.stop
    )
    for tid in decided.timed_out:
        log.info(
            "%s.%s: drain of %s timed out after %gs",
            ctx.service,
            ctx.instance,
            progress[tid].name,
            policy.drain_timeout_seconds,
        )
    if stops:
        _stop_all(stops, drainer, ctx)
        performed.extend(a for a, _, _ in stops if isinstance(a, KillTask))
        for _, task, _ in stops:
            memory.draining_since.pop(task.task_id, None)
            memory.draining_tasks.pop(task.task_id, None)
        replaced = [t for a, t, _ in stops if isinstance(a, DrainTask) or t.state == "running"]
        if replaced:
            names = [t.name or t.task_id[:12] for t in replaced]
            ctx.event(
                "info",
                EventKind.BOUNCE,
                f"stopped {len(replaced)} task(s): {', '.join(names)}",
                BounceData(stopped=names).to_json(),
            )
    for action in step.actions:
        if isinstance(action, DeleteAppVersion):
            ctx.engine.delete_app_version(action.service, action.instance, action.config_hash)
            ctx.event(
                "info",
                EventKind.APP_VERSION,
                f"removed app version config {action.config_hash[:8]}",
                AppVersionData(action.config_hash, removed=True).to_json(),
            )
            performed.append(action)
    return tuple(performed), decided.waiting_on


def _stop_all(stops: Sequence[tuple[Action, Task, float]], drainer: Drainer, ctx: _Context) -> None:
    """Stop tasks concurrently (each may wait its grace period); the first error wins."""

    def stop(task: Task, grace: float) -> None:
        if task.host_lost:  # out of every proxy now, and fenced should its host come back
            drainer.fence(task, ctx.config)
        ctx.engine.stop_task(task.task_id, grace)
        if not task.host_lost:
            drainer.forget(task)

    if len(stops) == 1:
        _, task, grace = stops[0]
        stop(task, grace)
        return
    with ThreadPoolExecutor(max_workers=min(8, len(stops))) as pool:
        futures = [pool.submit(stop, task, grace) for _, task, grace in stops]
        for fut in futures:
            fut.result()
