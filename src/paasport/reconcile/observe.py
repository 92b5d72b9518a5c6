"""A live look at instances for ``paasport status`` and ``wait-for-deployment``.

Gathers, for each configured instance of the local cluster, the desired app, the engine's app
versions (one list call for all), a live health probe of every running task, the bounce status,
and the facts ``reconcile.diagnosis`` turns into a verdict. Hands InstanceView values on.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from paasport.bounce.desired import desired_app
from paasport.bounce.plan import BounceStatus, bounce_status, is_happy
from paasport.deploy.deployments import Deployments, read_deployments
from paasport.engine.base import Engine
from paasport.errors import PaasportError
from paasport.monitoring.events import Event
from paasport.monitoring.redact import redact
from paasport.reconcile.diagnosis import (
    DeadTask,
    FailingCheck,
    InstanceFacts,
    Verdict,
    diagnose,
)
from paasport.types import (
    AppSpec,
    AppVersion,
    DeploymentState,
    HealthCheck,
    InstanceConfig,
    Task,
    TaskHealth,
)

RECENT_SECONDS = 600.0
Probe = Callable[[Task, HealthCheck], tuple[bool, str]]
EventQuery = Callable[[str, str, float], Sequence[Event]]  # service, instance, since


@dataclass(frozen=True)
class TaskView:
    task: Task
    health: TaskHealth
    detail: str  # last probe response or error
    is_new: bool  # belongs to the desired app version


@dataclass(frozen=True)
class InstanceView:
    config: InstanceConfig
    deployment: DeploymentState | None
    desired: AppSpec | None
    versions: tuple[AppVersion, ...]
    tasks: tuple[TaskView, ...]
    bounce: BounceStatus | None
    facts: InstanceFacts
    verdict: Verdict
    events: tuple[Event, ...] = field(default_factory=tuple)

    @property
    def key(self) -> str:
        return f"{self.config.service}.{self.config.instance}"


def probe_tasks(
    tasks: Sequence[tuple[Task, HealthCheck]], probe: Probe, now: float
) -> dict[str, tuple[TaskHealth, str]]:
    """Probe every running task once, in parallel; a failure inside the grace period is
    "unknown" (warming up), after it "unhealthy"; no check configured: running is healthy."""

    def one(item: tuple[Task, HealthCheck]) -> tuple[str, tuple[TaskHealth, str]]:
        task, check = item
        if task.state != "running":
            return task.task_id, ("unknown", task.state)
        if check.mode is None:
            return task.task_id, ("healthy", "running (no health check)")
        try:
            ok, detail = probe(task, check)
        except PaasportError as err:
            ok, detail = False, str(err)
        if ok:
            return task.task_id, ("healthy", detail)
        warming = task.started_at and now - task.started_at < check.grace_period_seconds
        return task.task_id, ("unknown" if warming else "unhealthy", detail)

    if not tasks:
        return {}
    with ThreadPoolExecutor(max_workers=min(16, len(tasks))) as pool:
        return dict(pool.map(one, tasks))


def observe_instances(
    configs: Sequence[InstanceConfig],
    read_deployments_of: Callable[[str], Deployments | None],
    engine: Engine,
    probe: Probe,
    events: EventQuery | None,
    registries: Mapping[str, str | None],
    now: float | None = None,
    with_events: bool = False,
) -> list[InstanceView]:
    """One engine list call, one live probe per running task, one verdict per instance."""
    now = time.time() if now is None else now
    by_key: dict[tuple[str, str], list[AppVersion]] = {}
    services = {c.service for c in configs}
    for av in engine.list_app_versions(next(iter(services)) if len(services) == 1 else None):
        by_key.setdefault((av.service, av.instance), []).append(av)

    desired: dict[tuple[str, str], tuple[DeploymentState | None, AppSpec | None]] = {}
    to_probe: list[tuple[Task, HealthCheck]] = []
    for c in configs:
        deployments = read_deployments_of(c.service)
        state = (
            deployments.state_for(c.cluster, c.instance, c.deploy_group) if deployments else None
        )
        spec = desired_app(c, state, registries.get(c.service)) if state else None
        desired[(c.service, c.instance)] = (state, spec)
        for av in by_key.get((c.service, c.instance), []):
            for t in av.tasks:
                to_probe.append((t, t.healthcheck or c.healthcheck))
    health = probe_tasks(to_probe, probe, now)

    views = []
    for c in configs:
        key = (c.service, c.instance)
        state, spec = desired[key]
        versions = tuple(
            dataclasses.replace(
                av,
                tasks=tuple(
                    dataclasses.replace(t, health=health.get(t.task_id, ("unknown", ""))[0])
                    for t in av.tasks
                ),
            )
            for av in by_key.get(key, [])
        )
        recent = tuple(events(c.service, c.instance, now - RECENT_SECONDS)) if events else ()
        views.append(_view(c, state, spec, versions, health, recent, engine, now, with_events))
    return views


def _view(
    c: InstanceConfig,
    state: DeploymentState | None,
    spec: AppSpec | None,
    versions: tuple[AppVersion, ...],
    health: Mapping[str, tuple[TaskHealth, str]],
    recent: tuple[Event, ...],
    engine: Engine,
    now: float,
    with_events: bool,
) -> InstanceView:
    all_tasks = [t for av in versions for t in av.tasks]
    new_hash = spec.config_hash if spec else None
    task_views = tuple(
        TaskView(t, t.health, health.get(t.task_id, ("unknown", ""))[1], t.config_hash == new_hash)
        for t in all_tasks
    )
    new_live = [t for t in all_tasks if t.config_hash == new_hash and t.state == "running"]
    dead = [t for t in all_tasks if t.config_hash == new_hash and t.state in ("exited", "dead")]
    bounce = (
        bounce_status(spec, versions, c.bounce_method, c.bounce_margin_factor) if spec else None
    )
    expected = spec.replicas if spec else 0
    missing = max(expected - len(new_live), 0)
    facts = InstanceFacts(
        deployed=state is not None,
        desired_state=state.desired_state if state else "start",
        expected=expected,
        running=len(new_live),
        healthy=sum(1 for t in new_live if is_happy(t)),
        image=spec.image if spec else "",
        image_exists=_image_exists(engine, spec) if spec and missing else True,
        failing=tuple(
            FailingCheck(tv.task.name or tv.task.task_id[:12], tv.detail)
            for tv in task_views
            if tv.is_new and tv.health == "unhealthy"
        ),
        dead=tuple(_dead(t, recent, c.env) for t in dead),
        crashes_recently=sum(1 for e in recent if e.kind in ("crash", "oom")),
        bounce=bounce,
        cpus_needed=missing * c.cpus,
        mem_needed=missing * c.mem,
        **_capacity(engine) if missing else {},
        last_error=next(
            (e.message for e in reversed(recent) if e.kind == "reconcile" and e.level == "error"),
            "",
        ),
    )
    return InstanceView(
        config=c,
        deployment=state,
        desired=spec,
        versions=versions,
        tasks=task_views,
        bounce=bounce,
        facts=facts,
        verdict=diagnose(facts),
        events=recent if with_events else (),
    )


def _image_exists(engine: Engine, spec: AppSpec) -> bool:
    try:
        return engine.image_exists(spec.image)
    except PaasportError:
        return True  # unknown: do not blame the image


def _capacity(engine: Engine) -> dict[str, float]:
    try:
        nodes = engine.node_capacity()
    except PaasportError:
        return {}
    if not nodes:
        return {}
    return {
        "cpus_free": max(n.cpus - n.cpus_reserved for n in nodes),
        "mem_free": max(n.mem_mb - n.mem_reserved_mb for n in nodes),
    }


def _dead(task: Task, recent: Sequence[Event], env: Mapping[str, str]) -> DeadTask:
    last = ""
    for e in reversed(recent):
        if e.kind in ("crash", "oom") and e.data.get("task") in (task.name, task.task_id):
            lines = e.data.get("last_lines")
            if isinstance(lines, list) and lines:
                last = redact(str(lines[-1]), env)  # events older than redaction too
            break
    return DeadTask(task.name or task.task_id[:12], task.exit_code, task.oom_killed, last)


def deployments_reader(soa_dir: Path) -> Callable[[str], Deployments | None]:
    """``read_deployments`` bound to a soa-configs dir, errors read as "not deployed"."""

    def read(service: str) -> Deployments | None:
        try:
            return read_deployments(soa_dir, service)
        except PaasportError:
            return None

    return read
