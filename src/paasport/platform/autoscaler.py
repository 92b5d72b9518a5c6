"""The autoscaler of ``up``/``deployd``: every autoscaled instance (``max_instances`` set) sized to
its load between ``min_instances`` and ``max_instances`` (or an override's range).

Each pass (every ``interval`` seconds, only while this deployd holds the cluster lock) reads one
sample per running task: CPU from the engine's stats (two readings a pass apart give the fraction
of the task's cpus it used) or, with ``http_inflight``, the requests in flight through this
host's HAProxy (``scur``); the pure ``bounce.autoscale.decide`` (Kubernetes' HPA rule, PaaSTA's
scale-down limits) says the count; the store gets it (deployd converges: scaling never bounces,
the config hash leaves the count out), ``<state_dir>/autoscale.json`` keeps it for restarts and
``status``, and a changed count is an ``autoscale`` event with its inputs.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Literal, Protocol

from paasport.bounce.autoscale import (
    AutoscalingPolicy,
    CpuReading,
    Override,
    Recommendation,
    Sample,
    TaskLoad,
    cpu_reading,
    cpu_sample,
    decide,
    remember,
)
from paasport.config.system import SystemConfig
from paasport.discovery.haproxy_stats import ServerStat
from paasport.discovery.registry import AgentReport
from paasport.engine.base import Engine
from paasport.errors import NotFoundError, PaasportError, UsageError
from paasport.monitoring.events import Event, EventKind, EventLog
from paasport.platform.passes import every
from paasport.reconcile.scaling import (
    OverrideRange,
    Scale,
    read_overrides,
    write_override,
    write_scales,
)
from paasport.types import AppVersion, AutoscalingConfig, InstanceConfig, Task

log = logging.getLogger("paasport.autoscale")
INTERVAL_SECONDS = 10.0
STATS_THREADS = 8
Key = tuple[str, str]
WithHealth = Callable[[Sequence[AppVersion]], Sequence[AppVersion]]
Stats = Callable[[], Sequence[ServerStat]]
Reports = Callable[[], Mapping[str, AgentReport]]


class ScaleStore(Protocol):
    """What the autoscaler needs of the desired-state store."""

    def instances(self) -> tuple[InstanceConfig, ...]: ...

    def scales(self) -> dict[Key, Scale]: ...

    def set_scale(self, key: Key, scale: Scale) -> None: ...


def policy_of(config: InstanceConfig) -> AutoscalingPolicy:
    auto = config.autoscaling or AutoscalingConfig()
    provider: Literal["cpu", "http_inflight"] = (
        "http_inflight" if auto.metrics_provider == "http_inflight" else "cpu"
    )
    return AutoscalingPolicy(
        metrics_provider=provider, setpoint=auto.setpoint,
        moving_average_window_seconds=auto.moving_average_window_seconds,
        stabilization_window_seconds=auto.stabilization_window_seconds,
    )  # fmt: skip


def bouncing(versions: Sequence[AppVersion]) -> bool:
    """More than one app version with live tasks: a bounce is under way. Pure."""
    live = {v.config_hash for v in versions if any(t.state in ("starting", "running")
                                                   for t in v.tasks)}  # fmt: skip
    return len(live) > 1


def inflight(task: Task, registrations: Sequence[str], rows: Sequence[ServerStat]) -> int | None:
    """Requests in flight to ``task`` through this host's proxy (None: not in it). Pure."""
    if not task.port:
        return None
    addr = f"{task.host}:{task.port}"
    found = [r.scur for r in rows if r.addr == addr and r.proxy in registrations]
    return sum(found) if found else None


def reported_cpu(loads: Sequence[Mapping[str, float]]) -> CpuReading | None:
    """The newest CPU reading some agent reported of a task. Pure."""
    best = max((x for x in loads if "cpu_at" in x), key=lambda x: x["cpu_at"], default=None)
    if best is None or best.get("cpu_online", 0) <= 0:
        return None
    return CpuReading(best["cpu_at"], int(best["cpu_total"]), int(best["cpu_system"]),
                      int(best["cpu_online"]))  # fmt: skip


class Autoscaler:
    def __init__(
        self,
        system: SystemConfig,
        store: ScaleStore,
        engine: Engine,
        events: EventLog,
        *,
        with_health: WithHealth | None = None,
        stats: Stats | None = None,
        reports: Reports | None = None,
        clock: Callable[[], float] = time.time,
        interval: float = INTERVAL_SECONDS,
        may_act: Callable[[], bool] = lambda: True,
    ) -> None:
        self.reports = reports  # every host's agent: its autoscaled tasks' loads (many hosts)
        self.system = system
        self.store = store
        self.engine = engine
        self.events = events
        self.with_health = with_health
        self.stats = stats
        self.clock = clock
        self.interval = interval
        self.may_act = may_act
        self._cpu: dict[str, CpuReading] = {}
        self._samples: dict[Key, dict[str, list[Sample]]] = {}
        self._history: dict[Key, tuple[Recommendation, ...]] = {}

    def run_forever(self, stop: threading.Event) -> None:
        every(self.interval, stop, self.pass_once, "autoscaler", log)

    def pass_once(self) -> dict[Key, Scale]:
        if not self.may_act():  # a standby deployd: the active one scales
            self._history.clear()
            return {}
        configs = [
            c for c in self.store.instances()
            if c.autoscaled and c.cluster == self.system.local_cluster
            and (c.autoscaling is None or c.autoscaling.metrics_provider != "none")
        ]  # fmt: skip
        if not configs:
            return {}
        now = self.clock()
        versions: Sequence[AppVersion] = self.engine.list_app_versions()
        if self.with_health is not None:
            versions = self.with_health(versions)
        rows: Sequence[ServerStat] = ()
        if self.stats is not None and any(policy_of(c).metrics_provider == "http_inflight"
                                          for c in configs):  # fmt: skip
            try:
                rows = self.stats()
            except PaasportError as err:
                log.info("autoscaler: no proxy counters (%s)", err)
        loads = self._agent_loads()
        overrides = self._overrides(now)
        done: dict[Key, Scale] = {}
        for config in configs:
            key = (config.service, config.instance)
            mine = [v for v in versions if (v.service, v.instance) == key]
            done[key] = self._one(config, mine, rows, loads, overrides.get(key), now)
        live = {t.task_id for v in versions for t in v.tasks}
        self._cpu = {k: v for k, v in self._cpu.items() if k in live}
        scales = self.store.scales()
        write_scales(self.system.state_dir, {k: v for k, v in scales.items() if k in done})
        return done

    def _agent_loads(self) -> dict[str, list[Mapping[str, float]]]:
        """task id -> what each host's agent last saw of it (none without a registry)."""
        if self.reports is None:
            return {}
        try:
            reports = self.reports()
        except PaasportError as err:
            log.info("autoscaler: no agent reports (%s)", err)
            return {}
        out: dict[str, list[Mapping[str, float]]] = {}
        for report in reports.values():
            for task_id, load in report.loads.items():
                out.setdefault(task_id, []).append(load)
        return out

    def _overrides(self, now: float) -> dict[Key, Override]:
        out: dict[Key, Override] = {}
        for key, found in read_overrides(self.system.state_dir).items():
            if found.until > now:
                out[key] = Override(found.min_instances, found.max_instances, found.until)
                continue
            write_override(self.system.state_dir, key[0], key[1], None)
            self._say(key, "info", f"autoscale override {found.min_instances}..."
                      f"{found.max_instances} expired", {"override": "expired"})  # fmt: skip
        return out

    def _samples_of(self, config: InstanceConfig, tasks: Sequence[Task],
                    rows: Sequence[ServerStat], loads: Mapping[str, list[Mapping[str, float]]],
                    now: float, policy: AutoscalingPolicy) -> dict[str, list[Sample]]:  # fmt: skip
        key = (config.service, config.instance)
        kept = self._samples.setdefault(key, {})
        for task_id in set(kept) - {t.task_id for t in tasks}:
            del kept[task_id]
        if policy.metrics_provider == "cpu":
            with ThreadPoolExecutor(STATS_THREADS, thread_name_prefix="stats") as pool:
                stats = list(pool.map(self._stats, [t.task_id for t in tasks]))
            for task, found in zip(tasks, stats, strict=True):
                reading = cpu_reading(found) if found is not None else None
                if reading is None:  # a task of another host: what its agent read
                    reading = reported_cpu(loads.get(task.task_id, ()))
                if reading is None:
                    continue
                before = self._cpu.get(task.task_id)
                self._cpu[task.task_id] = reading
                sample = cpu_sample(before, reading, config.cpus) if before else None
                if sample is not None:
                    kept.setdefault(task.task_id, []).append(sample)
        else:
            for task in tasks:
                seen = [x["scur"] for x in loads.get(task.task_id, ()) if "scur" in x]
                # every host's proxy (their agents' reports), else this host's own
                value = sum(seen) if seen else inflight(task, config.registrations, rows)
                if value is not None:
                    kept.setdefault(task.task_id, []).append(Sample(now, float(value)))
        for task_id, samples in kept.items():
            kept[task_id] = [s for s in samples if now - s.at <= policy.window]
        return kept

    def _stats(self, task_id: str) -> Mapping[str, object] | None:
        try:
            return self.engine.task_stats(task_id)
        except PaasportError:
            return None  # gone between the list and the read: no sample

    def _one(
        self,
        config: InstanceConfig,
        versions: Sequence[AppVersion],
        rows: Sequence[ServerStat],
        loads: Mapping[str, list[Mapping[str, float]]],
        override: Override | None,
        now: float,
    ) -> Scale:
        key = (config.service, config.instance)
        policy = policy_of(config)
        tasks = [t for v in versions for t in v.tasks if t.state == "running"]
        samples = self._samples_of(config, tasks, rows, loads, now, policy)
        task_loads = [
            TaskLoad(t.task_id, t.health != "unhealthy", tuple(samples.get(t.task_id, ())))
            for t in tasks
        ]
        current = config.instances
        # a deployd (re)started holds scale-downs for a window: nothing said it was lower
        history = self._history.get(key) or (Recommendation(now, current, current),)
        lo = config.min_instances if config.min_instances is not None else 1
        hi = config.max_instances if config.max_instances is not None else current
        decision = decide(policy, current, lo, hi, task_loads, now, history, bouncing(versions),
                          override)  # fmt: skip
        self._history[key] = remember(history, decision.record, policy)
        before = self.store.scales().get(key)
        scale = Scale(
            target=decision.desired, metric=decision.metric, setpoint=policy.target,
            provider=policy.metrics_provider, reason=decision.reason,
            decided_at=now if decision.changed or before is None else before.decided_at,
            read_at=now,
        )  # fmt: skip
        self.store.set_scale(key, scale)
        if decision.changed:
            self._say(key, "info", decision.reason, {
                "from": decision.current, "to": decision.desired, "metric": decision.metric,
                "setpoint": policy.target, "provider": policy.metrics_provider,
            })  # fmt: skip
        return scale

    def _say(self, key: Key, level: str, message: str, data: Mapping[str, object]) -> None:
        try:
            self.events.record(Event(self.clock(), "info" if level == "info" else "warning",
                                     EventKind.AUTOSCALE, key[0], key[1],
                                     self.system.local_cluster, message, dict(data)))  # fmt: skip
        except PaasportError as err:
            log.warning("autoscaler: cannot record %r: %s", message, err)


def set_override(system: SystemConfig, service: str, instance: str, lo: int, hi: int,
                 until: float, by: str, now: float | None = None) -> OverrideRange:  # fmt: skip
    """``paasport autoscale-override``: ``lo``..``hi`` replaces the instance's min/max until
    ``until``; then it expires by itself (the autoscaler drops it and says so)."""
    from paasport.config.tree import load_tree
    from paasport.monitoring.events import events_path

    now = time.time() if now is None else now
    if lo < 0 or hi < lo:
        raise UsageError(f"expected 0 <= --min <= --max, found --min {lo} --max {hi}")
    if until <= now:
        raise UsageError("expected --until in the future")
    tree = load_tree(system.soa_dir, [service], system=system)
    found = tree.instances_for(service, system.local_cluster, instance)
    if not found:
        raise NotFoundError(f"{service}: no instance {instance!r} on cluster "
                            f"{system.local_cluster}")  # fmt: skip
    if not found[0].autoscaled:
        raise UsageError(f"{service}.{instance} is not autoscaled (it sets no max_instances)")
    override = OverrideRange(lo, hi, until, by, now)
    write_override(system.state_dir, service, instance, override)
    with EventLog(events_path(system.state_dir)) as log:
        log.record(
            Event(
                now,
                "info",
                EventKind.AUTOSCALE,
                service,
                instance,
                system.local_cluster,
                f"autoscale override {lo}..{hi} until "
                f"{time.strftime('%Y-%m-%d %H:%M:%S %Z', time.localtime(until))} "
                f"by {by}",
                {"override": {"min": lo, "max": hi, "until": until}},
            )
        )
    return override  # fmt: skip
