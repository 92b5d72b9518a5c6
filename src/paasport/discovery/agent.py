"""The per-host discovery agent: local tasks -> mesh health checks -> registry -> HAProxy -> ack.

``paasport agent`` and ``paasport up`` run ``Agent.run_forever``; each pass lists the engine's
tasks once, probes them with their namespace's check, (de)registers this host's backends, routes
the registry's whole set through ``HAProxyProcess`` and acknowledges the version it applied.
"""

from __future__ import annotations

import logging
import socket
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field, replace

from paasport.bounce.plan import ramp_share
from paasport.discovery import metrics
from paasport.discovery.haproxy import HAProxyProcess, ProxyConflict
from paasport.discovery.registry import Backend, Registry, Snapshot, session_key
from paasport.engine.base import Engine
from paasport.engine.container_spec import docker_time
from paasport.engine.health import HealthMonitor
from paasport.errors import PaasportError, RegistryUnavailable
from paasport.types import HealthCheck, InstanceConfig, Namespace, Task

log = logging.getLogger(__name__)

InstanceKey = tuple[str, str]  # (service, instance)
ConfigSource = Callable[[], tuple[Mapping[str, Namespace], Sequence[InstanceConfig]]]
# on_event(level, message): what the agent did that people should see (the composition root
# records it in the event log; discovery may not import monitoring)
EventHook = Callable[[str, str], None]
# the config hash an instance should run (None: not marked): a ramped bounce's new version
DesiredHash = Callable[[InstanceConfig], str | None]
WATCH_SECONDS = 0.05  # between passes, how often the agent looks whether HAProxy's master lives


# -- pure decisions ------------------------------------------------------------------------
def registrations_by_instance(
    instances: Sequence[InstanceConfig], namespaces: Mapping[str, Namespace]
) -> dict[InstanceKey, tuple[str, ...]]:
    """Which namespaces each instance's tasks join (only namespaces that exist)."""
    out: dict[InstanceKey, tuple[str, ...]] = {}
    for inst in instances:
        regs = tuple(r for r in inst.registrations if r in namespaces)
        if regs:
            out[(inst.service, inst.instance)] = regs
    return out


LOADS_SECONDS = 5.0  # how often the loads of autoscaled tasks are read for the acks
MAX_LOADS = 200  # tasks read per host and round (each a stats call to the local engine)


def cpu_fields(stats: Mapping[str, object] | None) -> dict[str, float]:
    """A docker stats answer as an ack's cpu fields (none when it has none). Pure."""
    if not stats:
        return {}
    cpu = stats.get("cpu_stats")
    if not isinstance(cpu, Mapping):
        return {}
    usage = cpu.get("cpu_usage")
    total = usage.get("total_usage") if isinstance(usage, Mapping) else None
    system, online = cpu.get("system_cpu_usage"), cpu.get("online_cpus")
    read = stats.get("read")
    if not isinstance(total, int) or not isinstance(system, int) or not isinstance(read, str):
        return {}
    at = docker_time(read)
    if at is None:
        return {}
    return {"cpu_at": at, "cpu_total": float(total), "cpu_system": float(system),
            "cpu_online": float(online if isinstance(online, int) else 0)}  # fmt: skip


def mesh_check(namespace: Namespace, task: Task, interval: float) -> HealthCheck:
    """The namespace's check (mode, uri, timeout) at the agent's cadence; a failure only takes a
    backend out of rotation, so two in a row suffice (PaaSTA's mesh checks are the strict ones)."""
    grace = task.healthcheck.grace_period_seconds if task.healthcheck else 60.0
    return HealthCheck(
        mode=namespace.healthcheck_mode,
        uri=namespace.healthcheck_uri,
        grace_period_seconds=grace,
        interval_seconds=interval,
        timeout_seconds=namespace.healthcheck_timeout_s,
        max_consecutive_failures=2,
    )


def desired_backends(
    agent_id: str,
    tasks: Sequence[Task],
    healthy: Mapping[str, bool],
    registrations: Mapping[InstanceKey, tuple[str, ...]],
    previous: Mapping[tuple[str, str], Backend],
    now: float,
    shares: Mapping[InstanceKey, float] | None = None,
    task_shares: Mapping[str, float] | None = None,
) -> dict[tuple[str, str], Backend]:
    """This host's backends: every running, healthy, addressable task under each registration
    (``shares``: the canary_weight_percent of the instances that have one; ``task_shares``:
    a ramped bounce's new tasks, which take that share instead)."""
    out: dict[tuple[str, str], Backend] = {}
    for task in tasks:
        regs = registrations.get((task.service, task.instance), ())
        if not regs or task.state != "running" or not task.port or not healthy.get(task.task_id):
            continue
        for ns in regs:
            key = (ns, task.task_id)
            before = previous.get(key)
            out[key] = Backend(
                namespace=ns,
                task_id=task.task_id,
                host=task.host,
                port=task.port,
                agent_id=agent_id,
                state="drain" if task.draining else "up",
                weight=1,
                registered_at=before.registered_at if before else now,
                share=(task_shares or {}).get(
                    task.task_id, (shares or {}).get((task.service, task.instance), 0.0)
                ),
            )
    return out


def ramp_shares(
    instances: Sequence[InstanceConfig],
    tasks: Sequence[Task],
    desired_hash: DesiredHash | None,
    now: float,
) -> dict[str, float]:
    """task id -> its share, for the new version's tasks of each instance whose crossover
    bounce ramps (``bounce_ramp``) while it ramps. Pure but for ``desired_hash``."""
    if desired_hash is None:
        return {}
    out: dict[str, float] = {}
    for config in instances:
        if not config.bounce_ramp or config.bounce_method != "crossover":
            continue
        target = desired_hash(config)
        new = [
            t for t in tasks if (t.service, t.instance) == (config.service, config.instance)
            and t.config_hash == target and t.state == "running"
        ]  # fmt: skip
        if target is None or not new:
            continue
        since = min((t.started_at for t in new if t.started_at), default=None)
        share = ramp_share(config.bounce_ramp, config.bounce_ramp_step_seconds, since, now)
        if share is not None:
            out.update(dict.fromkeys((t.task_id for t in new), share))
    return out


def tasks_to_check(
    last_seen: Sequence[Task], lost_since: float | None, now: float, withdraw_after: float | None
) -> tuple[Sequence[Task], bool]:
    """While this host's engine does not answer: which tasks the agent goes on checking, and
    whether it withdraws them all. It keeps probing what the engine last listed (a dead
    container fails its checks and leaves; a live one keeps serving) until the engine has been
    gone ``withdraw_after`` seconds: then the host is out of the cluster (Swarm marks the node
    down and the reconciler replaces its tasks) and its backends go. None: never withdraw (one
    host: a restarting dockerd's live-restored tasks keep serving). Pure."""
    if lost_since is None:
        return last_seen, False
    if withdraw_after is not None and now - lost_since >= withdraw_after:
        return (), True
    return last_seen, False


@dataclass(frozen=True)
class RouteChanges:
    """Backends that became routable / stopped being routable between two applied sets."""

    routable: tuple[Backend, ...] = ()
    unroutable: tuple[tuple[Backend, float | None], ...] = ()  # (backend, when it left the pool)


def route_changes(
    before: Mapping[tuple[str, str], Backend],
    after: Mapping[tuple[str, str], Backend],
    left_at: Mapping[tuple[str, str], float],
) -> RouteChanges:
    up_before = {k for k, b in before.items() if b.state == "up"}
    up_after = {k for k, b in after.items() if b.state == "up"}
    routable = tuple(after[k] for k in sorted(up_after - up_before))
    unroutable = tuple((before[k], left_at.get(k)) for k in sorted(up_before - up_after))
    return RouteChanges(routable, unroutable)


# -- the agent -----------------------------------------------------------------------------
@dataclass
class PassReport:
    """What one pass did (for logs, tests and the benchmark)."""

    tasks: int = 0
    registered: int = 0
    deregistered: int = 0
    version: int | None = None
    reloaded: bool = False
    commands: int = 0
    errors: list[str] = field(default_factory=list)
    restarted: str = ""  # HAProxy was dead or silent and was restarted: what happened
    conflict: str = ""  # another agent serves our proxy ports: nothing was started


def default_agent_id(cluster: str) -> str:
    return f"{socket.gethostname()}/{cluster}"


class Agent:
    """One host's registration agent and proxy controller; one pass at a time (thread-safe)."""

    def __init__(
        self,
        engine: Engine,
        registry: Registry,
        proxy: HAProxyProcess | None,
        source: ConfigSource,
        *,
        agent_id: str | None = None,
        health: HealthMonitor | None = None,
        interval: float = 0.3,
        check_interval: float = 0.5,
        clock: Callable[[], float] = time.time,
        on_event: EventHook | None = None,
        withdraw_after: float | None = None,
        desired_hash: DesiredHash | None = None,
    ) -> None:
        self.engine = engine
        self.desired_hash = desired_hash
        self.withdraw_after = withdraw_after  # see tasks_to_check
        self.registry = registry
        self.proxy = proxy
        self.source = source
        self.agent_id = agent_id or default_agent_id(engine.cluster)
        self.health = health or HealthMonitor(engine.exec_in_task, clock=clock)
        self.interval = interval
        self.check_interval = check_interval
        self.clock = clock
        self._lock = threading.Lock()
        self._snapshot: Snapshot | None = None  # last registry state routed (last known good)
        self._routed: dict[tuple[str, str], Backend] = {}
        self._left_at: dict[tuple[str, str], float] = {}
        self._namespaces: Mapping[str, Namespace] | None = None  # last config read
        self._last_ack: tuple[int, dict[str, int]] | None = None
        self._last_ack_time = 0.0
        self.on_event = on_event
        self._last_proxy_error = ""
        self._last_conflict = ""
        self._last_tasks: Sequence[
            Task
        ] = ()  # what the engine listed last (checked while it is away)
        self._engine_lost_since: float | None = None
        self._withdrawn = False
        # autoscaled instances (their registrations): their tasks' loads go into the acks
        self._autoscaled: Mapping[InstanceKey, tuple[str, ...]] = {}
        self._loads: dict[str, dict[str, float]] = {}
        self._loads_at = 0.0

    def _check_for(
        self, namespaces: Mapping[str, Namespace], regs: Mapping[InstanceKey, tuple[str, ...]]
    ) -> Callable[[Task], HealthCheck | None]:
        def check_for(task: Task) -> HealthCheck | None:
            names = regs.get((task.service, task.instance), ())
            return mesh_check(namespaces[names[0]], task, self.check_interval) if names else None

        return check_for

    def _register(
        self,
        namespaces: Mapping[str, Namespace],
        instances: Sequence[InstanceConfig],
        now: float,
        report: PassReport,
    ) -> Snapshot:
        """Make the registry hold exactly this host's healthy backends; returns its new state."""
        regs = registrations_by_instance(instances, namespaces)
        tasks = [t for t in self._engine_tasks(now, report) if (t.service, t.instance) in regs]
        report.tasks = len(tasks)
        states = self.health.update(tasks, self._check_for(namespaces, regs), complete=True)
        healthy = {tid: s.health == "healthy" for tid, s in states.items()}
        before = self.registry.snapshot()
        mine = {b.key: b for b in before.backends if b.agent_id == self.agent_id}
        marked = {(d.namespace, d.task_id) for d in before.drains}
        shares = {
            (i.service, i.instance): i.canary_weight_percent
            for i in instances if i.canary_weight_percent
        }  # fmt: skip
        ramps = ramp_shares(instances, tasks, self.desired_hash, now)
        want = desired_backends(self.agent_id, tasks, healthy, regs, mine, now, shares, ramps)
        for key in mine:
            if key not in want:
                self.registry.deregister(*key)
                self._left_at.setdefault(key, now)
                report.deregistered += 1
        for key, backend in want.items():
            seen = replace(backend, state="drain") if key in marked else backend
            old = mine.get(key)
            if old is None or not old.same_route(seen):
                self.registry.register(backend)
                report.registered += 1
        if report.registered or report.deregistered:
            return self.registry.snapshot()
        return before

    def _engine_tasks(self, now: float, report: PassReport) -> Sequence[Task]:
        """This host's tasks from the engine; while it does not answer, the last ones it listed
        (``tasks_to_check``), with one event when it goes and when it is back."""
        try:
            versions = self.engine.list_app_versions()
        except PaasportError as err:
            if self._engine_lost_since is None:
                self._engine_lost_since = now
                self._event(
                    "warning",
                    f"this host's engine does not answer ({err}); checking the "
                    f"{len(self._last_tasks)} task(s) it last listed",
                )
            tasks, withdraw = tasks_to_check(
                self._last_tasks, self._engine_lost_since, now, self.withdraw_after
            )
            if withdraw and not self._withdrawn:
                self._withdrawn = True
                self._event(
                    "error",
                    f"this host's engine has not answered for {now - self._engine_lost_since:.0f}s:"
                    " withdrawing its backends from every proxy",
                )
            report.errors.append(f"engine: {err}")
            return tasks
        if self._engine_lost_since is not None:
            self._event(
                "info",
                f"this host's engine answers again after {now - self._engine_lost_since:.0f}s",
            )
        self._engine_lost_since, self._withdrawn = None, False
        self._last_tasks = tuple(t for v in versions for t in v.tasks)
        return self._last_tasks

    def _route(
        self,
        namespaces: Mapping[str, Namespace],
        snap: Snapshot | None,
        now: float,
        report: PassReport,
    ) -> None:
        if snap is None:  # the registry did not answer: keep routing the last known good set
            if self._snapshot is None or (self.proxy is not None and self.proxy.state is not None):
                return
            snap = self._snapshot
        self._snapshot = snap
        if self.proxy is not None:
            result = self.proxy.apply(list(namespaces.values()), snap.backends)
            report.reloaded = result.reloaded or result.started
            report.commands = result.commands
        report.version = snap.version
        after = {b.key: b for b in snap.backends}
        drains = {(d.namespace, d.task_id): d.since for d in snap.drains}
        changes = route_changes(self._routed, after, {**self._left_at, **drains})
        for b in changes.routable:
            if b.registered_at > 0:
                metrics.observe_routable(b.namespace, now - b.registered_at)
        for b, when in changes.unroutable:
            metrics.observe_unroutable(b.namespace, now - (when if when is not None else now))
        self._routed = after
        self._left_at = {k: v for k, v in self._left_at.items() if k in after}
        self._ack(snap, now)

    def _ack(self, snap: Snapshot, now: float) -> None:
        sessions: dict[str, int] = {}
        draining = [b for b in snap.backends if b.state == "drain"]
        if draining and self.proxy is not None and self.proxy.state is not None:
            stats = {(s.proxy, s.server): s.scur for s in self.proxy.stats()}
            for b in draining:
                slot = self.proxy.state.slot_of(b.namespace, b.task_id)
                if slot is not None:
                    sessions[session_key(b.namespace, b.task_id)] = stats.get(
                        (b.namespace, slot.name), 0
                    )
        loads = self._task_loads(snap, now)
        ack = (snap.version, sessions)
        if ack != self._last_ack or now - self._last_ack_time >= 1.0:
            self.registry.ack(self.agent_id, snap.version, now, sessions, loads)
            self._last_ack, self._last_ack_time = ack, now

    def _task_loads(self, snap: Snapshot, now: float) -> dict[str, dict[str, float]]:
        """What this host sees of its autoscaled tasks, every LOADS_SECONDS: requests in flight
        through its proxy and a CPU reading (the autoscaler on another host reads them)."""
        if not self._autoscaled:
            self._loads = {}
            return self._loads
        if now - self._loads_at < LOADS_SECONDS:
            return self._loads
        self._loads_at = now
        mine = [t for t in self._last_tasks if t.state == "running"
                and (t.service, t.instance) in self._autoscaled][:MAX_LOADS]  # fmt: skip
        stats: dict[tuple[str, str], int] = {}
        if self.proxy is not None and self.proxy.state is not None:
            try:
                stats = {(s.proxy, s.server): s.scur for s in self.proxy.stats()}
            except PaasportError:
                stats = {}
        loads: dict[str, dict[str, float]] = {}
        for task in mine:
            entry: dict[str, float] = {}
            if self.proxy is not None and self.proxy.state is not None:
                for ns in self._autoscaled[(task.service, task.instance)]:
                    slot = self.proxy.state.slot_of(ns, task.task_id)
                    if slot is not None:
                        entry["scur"] = entry.get("scur", 0.0) + stats.get((ns, slot.name), 0)
            try:
                reading = self.engine.task_stats(task.task_id)
            except PaasportError:
                reading = None
            entry.update(cpu_fields(reading))
            loads[task.task_id] = entry
        self._loads = loads
        return loads

    def claim_ports(self) -> None:
        """Lock this host's proxy ports of the current config before the first pass: raises
        ProxyConflict naming the agent or HAProxy that serves one already (``agent``/``up``
        then refuse with that one line instead of starting a second HAProxy)."""
        if self.proxy is None:
            return
        try:
            namespaces, _ = self.source()
        except PaasportError:
            return  # no config to route yet: the passes say why and claim the ports later
        self.proxy.claim(list(namespaces.values()))

    def _event(self, level: str, message: str) -> None:
        if self.on_event is None:
            return
        try:
            self.on_event(level, message)
        except Exception:  # a failing event log must not stop routing
            log.exception("discovery agent: could not record an event")

    def _supervise(self, report: PassReport) -> None:
        """First thing in a pass, whatever the registry does: a dead or silent HAProxy is
        restarted from the last config it had (traffic back within one pass)."""
        if self.proxy is None:
            return
        try:
            restarted = self.proxy.supervise()
        except PaasportError as err:
            message = f"HAProxy is down and could not be restarted: {err}"
            report.errors.append(f"proxy: {message}")
            if message != self._last_proxy_error:
                self._last_proxy_error = message
                self._event("error", message)
            return
        if restarted:
            self._last_proxy_error = ""
            report.restarted = restarted
            log.warning("discovery agent %s: %s", self.agent_id, restarted)
            self._event("warning", restarted)

    def run_once(self) -> PassReport:
        """One pass; errors are reported, never raised (the next pass retries)."""
        with self._lock:
            now = self.clock()
            report = PassReport()
            self._supervise(report)
            namespaces = self._namespaces
            snap: Snapshot | None = None
            try:
                namespaces, instances = self.source()
                self._namespaces = namespaces
                self._autoscaled = {(c.service, c.instance): c.registrations
                                    for c in instances if c.autoscaled}  # fmt: skip
                snap = self._register(namespaces, instances, now, report)
            except PaasportError as err:
                report.errors.append(f"registration: {err}")
                try:
                    snap = self.registry.snapshot()
                except RegistryUnavailable as again:
                    report.errors.append(f"registry: {again} (routing the last known backends)")
            try:
                if namespaces is not None:  # never route "no listeners" for a config we lack
                    self._route(namespaces, snap, now, report)
            except ProxyConflict as err:
                report.conflict = str(err)
                if report.conflict != self._last_conflict:  # said once, not every 0.3 s
                    report.errors.append(f"proxy: {err}")
                    self._event("error", report.conflict)
            except PaasportError as err:
                report.errors.append(f"proxy: {err}")
            self._last_conflict = report.conflict
            for error in report.errors:
                log.warning("discovery agent %s: %s", self.agent_id, error)
            return report

    def run_forever(self, stop: threading.Event) -> None:
        log.info("discovery agent %s: every %.2fs", self.agent_id, self.interval)
        while not stop.is_set():
            started = time.monotonic()
            try:
                self.run_once()
            except Exception:  # a bug in one pass must not stop routing for the host
                log.exception("discovery agent pass failed")
            self._wait(stop, started + self.interval)

    def _wait(self, stop: threading.Event, until: float) -> None:
        """Until the next pass, or until the HAProxy this agent runs dies (a cheap pid check
        every WATCH_SECONDS): its restart need not wait for the next full pass."""
        while not stop.is_set():
            left = until - time.monotonic()
            if left <= 0 or stop.wait(min(left, WATCH_SECONDS)):
                return
            proxy = self.proxy
            if proxy is not None and proxy.state is not None and not proxy.master_alive():
                return

    def close(self, stop_proxy: bool = False) -> None:
        """Leave HAProxy running by default: traffic keeps flowing across agent restarts."""
        if stop_proxy and self.proxy is not None:
            self.proxy.stop()
        self.registry.close()
