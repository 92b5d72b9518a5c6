"""A live look at instances for ``view.status`` (``paasport status``, ``wait-for-deployment``).

Gathers, for each configured instance of the local cluster, the desired app, the engine's app
versions (one list call for all), a live health probe of every running task, the bounce status,
this host's proxy state, and the facts ``view.diagnosis`` turns into a verdict. Hands
InstanceView values on.
"""

from __future__ import annotations

import dataclasses
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from paasport.bounce.desired import desired_app
from paasport.bounce.plan import BounceStatus, bounce_status, is_happy
from paasport.deploy.deployments import Deployments, read_deployments
from paasport.engine.base import Engine, NodeCapacity
from paasport.errors import PaasportError
from paasport.monitoring.events import Event
from paasport.monitoring.redact import redact
from paasport.types import (
    AppSpec,
    AppVersion,
    DeploymentState,
    HealthCheck,
    InstanceConfig,
    Task,
    TaskHealth,
)
from paasport.view.diagnosis import (
    DeadTask,
    FailingCheck,
    InstanceFacts,
    LostHost,
    PendingTask,
    Verdict,
    diagnose,
)
from paasport.view.proxy import DiscoveryReading

RECENT_SECONDS = 600.0
Probe = Callable[[Task, HealthCheck], tuple[bool, str]]
EventQuery = Callable[[str, str, float], Sequence[Event]]  # service, instance, since


@dataclass(frozen=True)
class TaskView:
    task: Task
    health: TaskHealth
    detail: str  # last probe response or error
    is_new: bool  # belongs to the desired app version
    host_down: bool = False  # the engine reports the task's node down


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
    traffic: str = ""  # the newest canary comparison: its errors through the proxy vs the rest's
    proxy: Mapping[str, Mapping[str, str]] = field(default_factory=dict)  # task -> ns -> state
    observed_at: float = 0.0  # epoch seconds of the engine listing (task ages count from it)
    # an autoscaled instance: the autoscaler's metric, target and last decision (status, API)
    autoscaling: Mapping[str, object] | None = None

    @property
    def key(self) -> str:
        return f"{self.config.service}.{self.config.instance}"

    def to_json(self) -> dict[str, object]:
        """The instance as ``paasport status --json`` prints it (docs/views.md)."""
        c, d = self.config, self.deployment
        now = self.observed_at or time.time()
        return {
            "service": c.service,
            "instance": c.instance,
            "cluster": c.cluster,
            "deploy_group": c.deploy_group,
            "desired_state": d.desired_state if d else None,
            "git_sha": d.git_sha if d else None,
            "config_hash": self.desired.config_hash if self.desired else None,
            "expected": self.facts.expected,
            "running": self.facts.running,
            "healthy": self.facts.healthy,
            "state": self.verdict.state,
            "ok": self.verdict.ok,
            "why": self.verdict.why,
            "traffic": self.traffic or None,
            "autoscaling": dict(self.autoscaling) if self.autoscaling is not None else None,
            "bounce": (
                {
                    "in_progress": self.bounce.in_progress,
                    "method": self.bounce.method,
                    "new_healthy": self.bounce.new_healthy,
                    "new_total": self.bounce.new_total,
                    "old_remaining": self.bounce.old_remaining,
                    "waiting_on": self.bounce.waiting_on,
                }
                if self.bounce
                else None
            ),
            "app_versions": [
                {
                    "git_sha": av.git_sha,
                    "config_hash": av.config_hash,
                    "new": self.desired is not None and av.config_hash == self.desired.config_hash,
                    "tasks": len(av.tasks),
                }
                for av in self.versions
            ],
            "tasks": [
                {
                    "id": tv.task.task_id,
                    "name": tv.task.name,
                    "host": tv.task.host,
                    "port": tv.task.port,
                    "node": tv.task.node,
                    "host_down": tv.host_down,
                    "state": tv.task.state,
                    "status_message": tv.task.status_message,
                    "health": tv.health,
                    "detail": tv.detail,
                    "age_seconds": (
                        round(now - tv.task.started_at, 1) if tv.task.started_at else None
                    ),
                    "restarts": tv.task.restarts,
                    "exit_code": tv.task.exit_code,
                    "new": tv.is_new,
                    "proxy": {ns: self.proxy_state(tv.task, ns) for ns in c.registrations},
                }
                for tv in self.tasks
            ],
            "events": [e.to_json() for e in self.events],
        }

    def proxy_state(self, task: Task, namespace: str) -> str:
        """The task's state in this host's proxy for ``namespace``."""
        return self.proxy.get(task.task_id, {}).get(namespace, "not registered")


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
    if len(tasks) == 1:
        return dict([one(tasks[0])])
    return dict(_probe_pool().map(one, tasks))


_POOL_LOCK = threading.Lock()
_POOL: ThreadPoolExecutor | None = None


def background_pool() -> ThreadPoolExecutor:
    """The process's pool of threads for reads that overlap (probes, a second engine call)."""
    return _probe_pool()


def _probe_pool() -> ThreadPoolExecutor:
    """One pool of probe threads per process (the API reads status many times a second: a
    pool per reading spent more on starting threads than on the probes)."""
    global _POOL
    with _POOL_LOCK:
        if _POOL is None:
            _POOL = ThreadPoolExecutor(max_workers=16, thread_name_prefix="probe")
        return _POOL


class NodesOnce:
    """The engine's nodes, asked at most once per status call and only when some instance
    needs them (tasks missing or not running); None when the engine cannot say."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self._asked = False
        self._nodes: tuple[NodeCapacity, ...] | None = None

    def get(self) -> tuple[NodeCapacity, ...] | None:
        if not self._asked:
            self._asked = True
            try:
                self._nodes = tuple(self.engine.node_capacity())
            except PaasportError:
                self._nodes = None
        return self._nodes


def down_nodes(nodes: Sequence[NodeCapacity] | None) -> dict[str, str]:
    """Name and address -> name of every node that is not ready (pure)."""
    out: dict[str, str] = {}
    for n in nodes or ():
        if n.state != "ready":
            out[n.node] = n.node
            if n.address:
                out[n.address] = n.node
    return out


def lost_and_pending(
    tasks: Sequence[Task], new_hash: str | None, down: Mapping[str, str]
) -> tuple[tuple[LostHost, ...], tuple[PendingTask, ...], set[str]]:
    """Pure: the down nodes the instance's tasks were on (with how many), the new tasks the
    engine has not placed or started with its reason, and the ids of both (not crashes)."""
    lost: dict[str, int] = {}
    pending: list[PendingTask] = []
    explained: set[str] = set()
    for t in tasks:
        node = down.get(t.node) if t.node else down.get(t.host)
        if node is not None:
            lost[node] = lost.get(node, 0) + 1
            explained.add(t.task_id)
        elif (
            t.config_hash == new_hash
            and t.status_message
            and t.state != "running"
            and (t.state not in ("exited", "dead") or t.exit_code is None)
        ):
            pending.append(PendingTask(t.name or t.task_id[:12], t.status_message))
            explained.add(t.task_id)
    return tuple(LostHost(n, k) for n, k in sorted(lost.items())), tuple(pending), explained


def observe_instances(
    configs: Sequence[InstanceConfig],
    read_deployments_of: Callable[[str], Deployments | None],
    engine: Engine,
    probe: Probe,
    events: EventQuery | None,
    registries: Mapping[str, str | None],
    now: float | None = None,
    with_events: bool = False,
    discovery: DiscoveryReading | None = None,
    listed: Sequence[AppVersion] | None = None,
) -> list[InstanceView]:
    """One engine list call, one live probe per running task, one verdict per instance.

    ``read_deployments_of`` is called once per service; ``discovery`` (this host's proxy and
    registry, read by the caller when some instance is in discovery) joins the verdict;
    ``listed``: the engine's listing the caller already made (then no list call here)."""
    now = time.time() if now is None else now
    by_key: dict[tuple[str, str], list[AppVersion]] = {}
    services = {c.service for c in configs}
    if listed is None:
        listed = engine.list_app_versions(next(iter(services)) if len(services) == 1 else None)
    for av in listed:
        by_key.setdefault((av.service, av.instance), []).append(av)

    desired: dict[tuple[str, str], tuple[DeploymentState | None, AppSpec | None]] = {}
    to_probe: list[tuple[Task, HealthCheck]] = []
    read: dict[str, Deployments | None] = {}
    for c in configs:
        if c.service not in read:
            read[c.service] = read_deployments_of(c.service)
        deployments = read[c.service]
        state = (
            deployments.state_for(c.cluster, c.instance, c.deploy_group) if deployments else None
        )
        spec = desired_app(c, state, registries.get(c.service)) if state else None
        desired[(c.service, c.instance)] = (state, spec)
        for av in by_key.get((c.service, c.instance), []):
            for t in av.tasks:
                to_probe.append((t, t.healthcheck or c.healthcheck))
    health = probe_tasks(to_probe, probe, now)

    nodes = NodesOnce(engine)
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
        view = _view(c, state, spec, versions, health, recent, engine, nodes, now, with_events)
        views.append(_with_discovery(view, discovery) if discovery is not None else view)
    return views


def _with_discovery(view: InstanceView, reading: DiscoveryReading) -> InstanceView:
    """The view with this host's proxy state of its tasks, and the verdict knowing it."""
    if not view.config.registrations:
        return view
    states = reading.states()
    if reading.proxy_error or reading.registry_error:
        # nothing to match tasks against: say which side is missing for every task
        gone = "no proxy answer" if reading.proxy_error else "registry unreachable"
        states = {
            tv.task.task_id: dict.fromkeys(view.config.registrations, gone) for tv in view.tasks
        }
    proxy = {tv.task.task_id: dict(states.get(tv.task.task_id, {})) for tv in view.tasks}
    facts = dataclasses.replace(
        view.facts,
        in_discovery=True,
        proxy_socket=reading.socket,
        proxy_error=reading.proxy_error,
        registry_error=reading.registry_error,
    )
    return dataclasses.replace(view, facts=facts, verdict=diagnose(facts), proxy=proxy)


def _view(
    c: InstanceConfig,
    state: DeploymentState | None,
    spec: AppSpec | None,
    versions: tuple[AppVersion, ...],
    health: Mapping[str, tuple[TaskHealth, str]],
    recent: tuple[Event, ...],
    engine: Engine,
    nodes: NodesOnce,
    now: float,
    with_events: bool,
) -> InstanceView:
    all_tasks = [t for av in versions for t in av.tasks]
    new_hash = spec.config_hash if spec else None
    new_live = [t for t in all_tasks if t.config_hash == new_hash and t.state == "running"]
    expected = spec.replicas if spec else 0
    missing = max(expected - len(new_live), 0)
    unsettled = missing or any(t.state != "running" for t in all_tasks)
    down = down_nodes(nodes.get()) if unsettled else {}
    lost, pending, explained = lost_and_pending(all_tasks, new_hash, down)
    lost = (*lost, *hosts_lost_recently(recent, lost))
    task_views = tuple(
        TaskView(
            t,
            t.health,
            health.get(t.task_id, ("unknown", ""))[1],
            t.config_hash == new_hash,
            host_down=(down.get(t.node) if t.node else down.get(t.host)) is not None,
        )
        for t in all_tasks
    )
    corpses = [t for t in all_tasks if t.config_hash == new_hash and t.state in ("exited", "dead")]
    # a task paasport stopped because it failed its health checks is no crash (its exit code is
    # the SIGTERM paasport sent): status names the failing check instead; nor is a task lost
    # with its host or one the engine could not place (status names the host or the reason)
    replaced = _replaced_for_health(recent)
    dead = [t for t in corpses if t.task_id not in replaced and t.task_id not in explained]
    bounce = (
        bounce_status(spec, versions, c.bounce_method, c.bounce_margin_factor) if spec else None
    )
    healthy = sum(1 for t in new_live if is_happy(t))
    free = _capacity(nodes.get()) if missing else (None, None)
    facts = InstanceFacts(
        deployed=state is not None,
        desired_state=state.desired_state if state else "start",
        expected=expected,
        running=len(new_live),
        healthy=healthy,
        image=spec.image if spec else "",
        image_exists=_image_exists(engine, spec) if spec and missing else True,
        failing=_failing(task_views, replaced, c.env, healthy < expected),
        dead=tuple(_dead(t, recent, c.env) for t in dead),
        crashes_recently=sum(1 for e in recent if e.kind in ("crash", "oom")),
        bounce=bounce,
        cpus_needed=missing * c.cpus,
        mem_needed=missing * c.mem,
        cpus_free=free[0],
        mem_free=free[1],
        last_error=next(
            (e.message for e in reversed(recent) if e.kind == "reconcile" and e.level == "error"),
            "",
        ),
        lost=lost,
        pending=pending,
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
        observed_at=now,
    )


def _image_exists(engine: Engine, spec: AppSpec) -> bool:
    try:
        return engine.image_exists(spec.image)
    except PaasportError:
        return True  # unknown: do not blame the image


def _capacity(nodes: Sequence[NodeCapacity] | None) -> tuple[float | None, float | None]:
    """The most CPU and memory (MB) free on one ready node; None when the engine cannot say."""
    ready = [n for n in nodes or () if n.state == "ready"]
    if not ready:
        return None, None
    return (
        max(n.cpus - n.cpus_reserved for n in ready),
        max(n.mem_mb - n.mem_reserved_mb for n in ready),
    )


def hosts_lost_recently(recent: Sequence[Event], known: Sequence[LostHost]) -> tuple[LostHost, ...]:
    """Pure: hosts deployd recently lost tasks with (``host`` events), beyond ``known``: the
    tasks are gone from the engine, but status still says why the instance is short."""
    counts: dict[str, int] = {}
    for e in recent:
        if e.kind == "host":
            node = str(e.data.get("node") or e.data.get("host") or "a host")
            counts[node] = counts.get(node, 0) + 1
    seen = {h.node for h in known}
    return tuple(
        LostHost(node, n, replaced=True) for node, n in sorted(counts.items()) if node not in seen
    )


def _replaced_for_health(recent: Sequence[Event]) -> dict[str, tuple[str, str]]:
    """Task id -> (task name, the failing check's answer), for the tasks the reconciler replaced
    after they failed their health checks (oldest first)."""
    out: dict[str, tuple[str, str]] = {}
    for e in recent:
        task_id = e.data.get("task_id") if e.kind == "unhealthy" else None
        if isinstance(task_id, str):
            detail = e.data.get("detail")
            out[task_id] = (
                str(e.data.get("task") or task_id[:12]),
                detail if isinstance(detail, str) and detail else "failed its health checks",
            )
    return out


def _failing(
    task_views: Sequence[TaskView],
    replaced: Mapping[str, tuple[str, str]],
    env: Mapping[str, str],
    short: bool,
) -> tuple[FailingCheck, ...]:
    """The new tasks failing their checks; while the instance is short of healthy tasks and
    none is failing right now (a replacement still starting), the last task replaced for
    failing them: a liveness replacement is a failing check, not a crash."""
    live = tuple(
        FailingCheck(tv.task.name or tv.task.task_id[:12], tv.detail)
        for tv in task_views
        if tv.is_new and tv.health == "unhealthy" and tv.task.state == "running"
    )
    if live or not short or not replaced:
        return live
    name, detail = list(replaced.values())[-1]
    return (FailingCheck(name, f"{redact(detail, env)} (replaced after failing its checks)"),)


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
