"""Builds paasport's long-lived parts of one host from the SystemConfig and wires them together.

``cli/up.py`` (up, deployd), ``cli/agent.py`` and ``cli/monitor.py`` call ``build_platform`` and
then start what they run; one ``DesiredStore`` (one watcher thread) serves every part inside one
process. ``Platform.close`` closes everything it built, the engine last.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

from paasport.config.system import SystemConfig, load_system_config
from paasport.engine.base import Engine
from paasport.errors import PaasportError, UsageError
from paasport.monitoring.events import LEVELS, Event, EventKind, EventLog, Level, events_path
from paasport.platform.lock import (
    ClusterLock,
    LockHeld,
    ReconcilerLock,
    acquire_reconciler_lock,
    standby_line,
)
from paasport.reconcile.store import DesiredStore
from paasport.types import AppVersion, InstanceConfig

log = logging.getLogger("paasport")


def load_settings(
    config_file: Any, soa_dir: Any, state_dir: Any, *, require_soa_dir: bool = True
) -> SystemConfig:
    """The system config with absolute paths (HAProxy's sockets and every thread must not
    depend on the cwd); a missing local cluster or soa-configs folder is a usage error."""
    system = load_system_config(config_file, soa_dir=soa_dir, state_dir=state_dir)
    if system.local_cluster not in system.clusters:
        raise UsageError(f"local_cluster {system.local_cluster!r} is not among the clusters")
    if require_soa_dir and not system.soa_dir.is_dir():
        raise UsageError(f"soa-configs directory {system.soa_dir} does not exist (--soa-dir)")
    return dataclasses.replace(
        system, soa_dir=system.soa_dir.resolve(), state_dir=system.state_dir.resolve()
    )


@dataclass
class Platform:
    """The long-lived parts of paasport on one host, wired together."""

    system: SystemConfig
    engine: Engine
    events: EventLog
    store: DesiredStore
    health: Any = None  # engine.health.HealthMonitor, shared by deployd and the monitor
    deployd: Any = None  # reconcile.deployd.Deployd
    drainer: Any = None  # discovery's RegistryDrainer for deployd (None: no discovery)
    agent: Any = None  # discovery.agent.Agent when discovery runs here
    monitor: Any = None  # monitoring.monitor.Monitor
    refresher: Any = None  # reconcile.refresh.DeploymentsRefresher
    lock: ReconcilerLock | None = None  # one host (sqlite registry): the state dir's flock
    cluster_lock: ClusterLock | None = None  # many hosts (zookeeper): the cluster-wide lock
    threads: list[threading.Thread] = field(default_factory=list)
    closers: list[Callable[[], None]] = field(default_factory=list)

    def spawn(self, name: str, target: Callable[[], None]) -> None:
        def run() -> None:
            try:
                target()
            except Exception:  # keep the other parts running; say what died
                log.exception("%s stopped with an error", name)

        thread = threading.Thread(target=run, name=name, daemon=True)
        self.threads.append(thread)
        thread.start()

    def close(self) -> None:
        for closer in reversed(self.closers):
            try:
                closer()
            except Exception:  # closing is best effort at exit
                log.debug("closing failed", exc_info=True)
        self.closers.clear()


def desired_hash_of(store: DesiredStore) -> Callable[[InstanceConfig], str | None]:
    """The config hash an instance should run, from the store's deployments (the agent ramps
    a bounce's new version by it); None: never marked."""
    from paasport.bounce.desired import desired_app

    def desired_hash(config: InstanceConfig) -> str | None:
        deployment = store.deployment((config.service, config.instance))
        if deployment is None:
            return None
        return desired_app(config, deployment, store.registry(config.service)).config_hash

    return desired_hash


def build_platform(
    system: SystemConfig,
    *,
    deployd: bool = False,
    agent: bool = False,
    monitor: bool = False,
    refresher: bool = False,
    workers: int = 4,
    full_pass_seconds: float = 30.0,
    stop_grace_seconds: float = 10.0,
    agent_interval: float = 0.3,
    refresh_seconds: float = 10.0,
    monitor_interval: float | None = None,
    engine: Engine | None = None,
    probe_engine: bool = True,
    wait_for_lock: bool = True,
) -> Platform:
    """Engine, event log and the one desired-state store for ``system``, plus the parts asked
    for. ``deployd`` takes the one-reconciler lock first: on one host the state dir's flock
    (``LockHeld`` when another has it); with ZooKeeper a seat in the cluster lock (a standby
    until it holds it; without ``wait_for_lock`` ``LockHeld`` when another holds it)."""
    from paasport.engine.factory import engine_for

    lock = None
    cluster_lock = None
    closers: list[Callable[[], None]] = []
    if deployd and system.discovery.registry == "zookeeper":
        cluster_lock = _cluster_lock(system, closers, wait_for_lock)
    elif deployd:
        lock = acquire_reconciler_lock(system.state_dir, system.local_cluster)
        closers.append(lock.release)
    try:
        engine = engine if engine is not None else engine_for(system.local)
        closers.append(engine.close)
        if probe_engine:
            # an engine that does not answer at start is a setup problem: one line and exit 1,
            # not a loop of retry warnings per instance (later outages are retried)
            engine.list_app_versions()
        events = EventLog(events_path(system.state_dir))
        closers.append(events.close)
        store = DesiredStore(
            system.soa_dir, system.local_cluster, system.docker_registry, system=system,
            events=events,
        )  # fmt: skip
        platform = Platform(
            system, engine, events, store, lock=lock, cluster_lock=cluster_lock, closers=closers
        )
        if cluster_lock is not None:
            cluster_lock.on_change = lock_event_hook(events, system.local_cluster)
        if deployd or monitor:
            from paasport.engine.health import HealthMonitor

            platform.health = HealthMonitor(engine.exec_in_task, startup_interval_seconds=0.05)
        if deployd or agent:
            _add_discovery(platform, deployd, agent, agent_interval)
        if deployd:
            _add_deployd(platform, workers, full_pass_seconds, stop_grace_seconds)
        if monitor:
            _add_monitor(platform, monitor_interval)
        if refresher:
            from paasport.reconcile.refresh import DeploymentsRefresher

            platform.refresher = DeploymentsRefresher(
                system.soa_dir, system, interval=refresh_seconds, targets_fn=store.targets
            )
    except BaseException:
        for closer in reversed(closers):
            try:
                closer()
            except Exception:
                log.debug("closing failed", exc_info=True)
        raise
    return platform


def _cluster_lock(
    system: SystemConfig, closers: list[Callable[[], None]], wait: bool
) -> ClusterLock:
    """A seat in ``<zookeeper_path>/locks/deployd-<cluster>``, polled by a thread of its own
    from now on; the first round is done here, so a standby says so before anything starts."""
    from paasport.discovery.zk_lock import ZkLockSeat
    from paasport.discovery.zk_registry import ZookeeperRegistry

    d = system.discovery
    session_timeout = float(getattr(d, "zookeeper_session_timeout_seconds", 10.0))

    def open_seat() -> ZkLockSeat:
        registry = ZookeeperRegistry(d.zookeeper_hosts, d.zookeeper_path, timeout=session_timeout)
        return ZkLockSeat(registry, f"deployd-{system.local_cluster}")

    cluster_lock = ClusterLock(open_seat, system.local_cluster, interval=0.5)
    decision = cluster_lock.poll()
    if not wait and not cluster_lock.is_open():
        cluster_lock.release()
        if decision.holder:
            raise LockHeld(standby_line(decision.holder))
        raise LockHeld(f"cannot take the cluster lock: {cluster_lock.why_closed()}")
    stop = threading.Event()
    threading.Thread(
        target=cluster_lock.run, args=(stop,), name="cluster-lock", daemon=True
    ).start()

    def release() -> None:
        stop.set()
        cluster_lock.release()

    closers.append(release)
    return cluster_lock


def lock_event_hook(events: EventLog, cluster: str) -> Callable[[str, str], None]:
    """The cluster lock's ``on_change(level, message)`` -> the event log (kind lock)."""

    def record(level: str, message: str) -> None:
        lvl: Level = level if level in LEVELS else "warning"
        events.record(Event(time.time(), lvl, EventKind.LOCK, cluster=cluster, message=message))

    return record


def _add_discovery(platform: Platform, deployd: bool, agent: bool, interval: float) -> None:
    """The drainer (for deployd) and the agent, both reading the shared store."""
    try:
        from paasport.discovery.wiring import build_agent, build_drainer
    except ImportError as err:  # discovery is optional on this host
        log.warning("discovery not available (%s): draining is a no-op", err)
        return
    system = platform.system
    if deployd:
        platform.drainer = build_drainer(system)
    if agent:
        platform.agent = build_agent(
            system,
            _agent_engine(platform),
            interval=interval,
            source=platform.store.agent_view,
            on_event=proxy_event_hook(platform.events, system.local_cluster),
            desired_hash=desired_hash_of(platform.store),
        )
        platform.closers.append(platform.agent.close)
        with contextlib.suppress(PaasportError):  # a broken tree: the passes say why
            platform.store.ensure_loaded()
        platform.agent.claim_ports()  # ProxyConflict: another agent serves them (one line)


def _agent_engine(platform: Platform) -> Engine:
    """The agent checks and registers this host's tasks only: on plain docker the platform's
    engine is this host; on a swarm it is the local daemon's node view (a worker cannot list
    the cluster, and other hosts' tasks are their agents' to check)."""
    if platform.system.local.engine == "docker":
        return platform.engine
    from paasport.engine.factory import node_engine_for

    engine = node_engine_for(platform.system.local)
    platform.closers.append(engine.close)
    return engine


def proxy_event_hook(events: EventLog, cluster: str) -> Callable[[str, str], None]:
    """The agent's ``on_event(level, message)`` (HAProxy restarted, ...) -> the event log."""

    def record(level: str, message: str) -> None:
        lvl: Level = level if level in LEVELS else "error"
        events.record(Event(time.time(), lvl, EventKind.PROXY, cluster=cluster, message=message))

    return record


def _add_deployd(
    platform: Platform, workers: int, full_pass_seconds: float, stop_grace_seconds: float
) -> None:
    from paasport.config.secrets import SecretStore
    from paasport.reconcile.deployd import Deployd, DeploydSettings
    from paasport.reconcile.drain import Drainer, NoopDrainer
    from paasport.reconcile.reconciler import ReconcilerSettings

    settings = DeploydSettings(
        workers=workers,
        full_pass_seconds=full_pass_seconds,
        reconciler=ReconcilerSettings(
            stop_grace_seconds=stop_grace_seconds,
            resolve_env=SecretStore(
                platform.system.state_dir, platform.system.local_cluster
            ).resolve_env,
        ),
    )
    drainer: Drainer = platform.drainer or NoopDrainer()
    platform.deployd = Deployd(
        platform.store,
        platform.engine,
        platform.health,
        drainer,
        platform.events,
        settings,
        gate=platform.cluster_lock or platform.lock,
    )


def _add_monitor(platform: Platform, interval: float | None) -> None:
    """The checks loop, sharing the engine, event log, health verdicts and the store."""
    from paasport.monitoring.sources import build_monitor

    backends_up = None
    try:
        from paasport.discovery.wiring import BackendsUp, haproxy_dir
    except ImportError:  # discovery is optional on this host
        pass
    else:
        # replication also counts the tasks up in this host's proxy (and is CRIT while that
        # proxy does not answer) where an agent runs or ran
        ran = (haproxy_dir(platform.system) / "haproxy.cfg").exists()
        if platform.agent is not None or ran:
            backends_up = BackendsUp(platform.system)
            platform.closers.append(backends_up.close)  # its one registry client
    health = platform.health
    with_health: Callable[[Sequence[AppVersion]], Sequence[AppVersion]] = health.with_health
    if platform.deployd is None:  # nobody else feeds the health monitor: each pass does

        def with_health(versions: Sequence[AppVersion]) -> Sequence[AppVersion]:
            health.update([task for version in versions for task in version.tasks])
            result: Sequence[AppVersion] = health.with_health(versions)
            return result

    platform.monitor = build_monitor(
        platform.system,
        engine=platform.engine,
        events=platform.events,
        with_health=with_health,
        backends_up=backends_up,
        interval=interval,
        desired=platform.store,
    )
    platform.closers.append(platform.monitor.close)


def start_metrics(platform: Platform, listen: str) -> None:
    """Serve /metrics on ``listen`` (a failure is a warning: paasport keeps running)."""
    from paasport.monitoring.metrics import serve_metrics

    try:
        server = serve_metrics(listen)
    except (PaasportError, OSError) as err:
        log.warning("not serving /metrics on %s: %s", listen, err)
        return
    platform.closers.append(server.close)
    log.info("metrics on %s", server.url)
