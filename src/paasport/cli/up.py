"""``paasport up`` (the whole platform of one host, in the foreground) and ``paasport deployd``.

Both build the engine, the shared health monitor, the event log and a Deployd from the system
config; ``up`` adds the deployments.json refresher, the discovery agent and the monitor, each
in its own thread. Ctrl-C stops paasport only: the services keep running.
"""

from __future__ import annotations

import dataclasses
import logging
import signal
import sys
import threading
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Any

import click

from paasport.cli.options import (
    config_option,
    metrics_listen_option,
    soa_dir_option,
    state_dir_option,
    verbose_logging_option,
)
from paasport.config.system import (
    SystemConfig,
    config_path,
    default_config_text,
    load_system_config,
)
from paasport.errors import PaasportError, UsageError

log = logging.getLogger("paasport")

workers_option = click.option(
    "--workers",
    type=click.IntRange(1, 64),
    default=4,
    show_default=True,
    help="instances reconciled at the same time",
)
full_pass_option = click.option(
    "--full-pass-seconds",
    type=click.FloatRange(1.0),
    default=30.0,
    show_default=True,
    help="how often every instance is checked (and removed instances cleaned up)",
)
grace_option = click.option(
    "--stop-grace-seconds",
    type=click.FloatRange(0.0),
    default=10.0,
    show_default=True,
    help="SIGTERM to SIGKILL when a drained task stops",
)


def setup_logging(verbose: bool = False) -> None:
    """One readable line per event on stderr."""
    handler = logging.StreamHandler(sys.stderr)
    handler.setFormatter(
        logging.Formatter("%(asctime)s %(levelname)-7s %(name)s: %(message)s", "%H:%M:%S")
    )
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(logging.DEBUG if verbose else logging.INFO)
    for noisy in ("urllib3", "docker", "httpx", "httpcore", "kazoo"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def load_settings(
    config_file: Path | None, soa_dir: Path | None, state_dir: Path | None
) -> SystemConfig:
    system = load_system_config(config_file, soa_dir=soa_dir, state_dir=state_dir)
    if system.local_cluster not in system.clusters:
        raise UsageError(f"local_cluster {system.local_cluster!r} is not among the clusters")
    if not system.soa_dir.is_dir():
        raise UsageError(f"soa-configs directory {system.soa_dir} does not exist (--soa-dir)")
    # absolute paths: HAProxy's sockets and files, and every thread, must not depend on the cwd
    return dataclasses.replace(
        system, soa_dir=system.soa_dir.resolve(), state_dir=system.state_dir.resolve()
    )


@dataclass
class Platform:
    """The long-lived parts of paasport on one host, wired together."""

    system: SystemConfig
    engine: Any
    health: Any
    events: Any
    deployd: Any
    agent: Any = None  # discovery.agent.Agent when discovery runs here
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


def build_platform(
    system: SystemConfig,
    workers: int,
    full_pass_seconds: float,
    stop_grace_seconds: float,
    with_discovery: bool = True,
) -> Platform:
    """Engine, health monitor, event log, drainer (discovery's, draining through the proxies)
    and deployd for ``system``; with discovery also the agent (started by ``up``)."""
    from paasport.engine.factory import engine_for
    from paasport.engine.health import HealthMonitor
    from paasport.monitoring.events import EventLog, events_path
    from paasport.reconcile.deployd import Deployd, DeploydSettings, DesiredStore
    from paasport.reconcile.drain import Drainer, NoopDrainer
    from paasport.reconcile.reconciler import ReconcilerSettings

    engine = engine_for(system.local)
    # an engine that does not answer at start is a setup problem: one line and exit 1, not a
    # loop of retry warnings per instance (later outages are retried by deployd)
    engine.list_app_versions()
    health = HealthMonitor(engine.exec_in_task, startup_interval_seconds=0.05)
    events = EventLog(events_path(system.state_dir))
    store = DesiredStore(
        system.soa_dir, system.local_cluster, system.docker_registry, system=system
    )
    settings = DeploydSettings(
        workers=workers,
        full_pass_seconds=full_pass_seconds,
        reconciler=ReconcilerSettings(stop_grace_seconds=stop_grace_seconds),
    )
    drainer: Drainer = NoopDrainer()
    agent: Any = None
    if with_discovery:
        try:
            from paasport.discovery.wiring import build_agent, build_drainer
        except ImportError as err:  # discovery is optional on this host
            log.warning("discovery not available (%s): draining is a no-op", err)
        else:
            from paasport.cli.agent import claim_proxy_ports, event_hook

            drainer = build_drainer(system)
            agent = build_agent(system, engine, on_event=event_hook(events, system.local_cluster))
            claim_proxy_ports(agent)  # another agent serves these ports: one line, exit 1
    deployd = Deployd(store, engine, health, drainer, events, settings)
    platform = Platform(system, engine, health, events, deployd)
    platform.closers.append(events.close)
    if agent is not None:
        platform.agent = agent
        platform.closers.append(agent.close)
    return platform


def _start_monitoring(platform: Platform, stop: threading.Event, metrics_listen: str) -> None:
    """The checks loop (alerts to the configured sinks) and /metrics, sharing deployd's engine,
    event log and health verdicts."""
    from paasport.monitoring.metrics import serve_metrics
    from paasport.monitoring.sources import build_monitor

    backends_up = None
    if platform.agent is not None:  # replication also counts the tasks up in the proxy
        from paasport.discovery.wiring import BackendsUp

        backends_up = BackendsUp(platform.system)
        platform.closers.append(backends_up.close)  # its one registry client
    monitor = build_monitor(
        platform.system,
        engine=platform.engine,
        events=platform.events,
        with_health=platform.health.with_health,
        backends_up=backends_up,
    )
    platform.closers.append(monitor.close)
    platform.spawn("monitor", lambda: monitor.run_forever(stop))
    if metrics_listen:
        try:
            server = serve_metrics(metrics_listen)
        except (PaasportError, OSError) as err:
            log.warning("not serving /metrics on %s: %s", metrics_listen, err)
            return
        platform.closers.append(server.close)
        log.info("metrics on %s", server.url)


def _write_default_config(config_file: Path | None, system: SystemConfig) -> None:
    """DESIGN: ``up`` writes the one-host default paasport.yaml when none exists, so other
    commands (``paasport status`` in another terminal) find the same soa-configs and state."""
    path = config_path(config_file)
    if path.exists():
        return
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(default_config_text(system.soa_dir, system.state_dir))
    except OSError as err:
        log.warning("could not write the default system config %s: %s", path, err)
        return
    log.info("wrote the default system config %s (cluster local on this Docker engine)", path)


def _stop_on_signals(stop: threading.Event) -> None:
    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            return
        log.info("stopping paasport (the services keep running; `paasport down` stops them)")
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


@click.command("deployd")
@soa_dir_option
@config_option
@state_dir_option
@workers_option
@full_pass_option
@grace_option
@verbose_logging_option
def deployd(
    soa_dir: Path | None,
    config_file: Path | None,
    state_dir: Path | None,
    workers: int,
    full_pass_seconds: float,
    stop_grace_seconds: float,
    verbose: bool,
) -> None:
    """Run only the reconciler: converge this host's cluster to soa-configs + deployments.json."""
    setup_logging(verbose)
    system = load_settings(config_file, soa_dir, state_dir)
    platform = build_platform(system, workers, full_pass_seconds, stop_grace_seconds)
    stop = threading.Event()
    _stop_on_signals(stop)
    try:
        platform.deployd.run_forever(stop)
    finally:
        platform.close()


@click.command("up")
@soa_dir_option
@config_option
@state_dir_option
@workers_option
@full_pass_option
@grace_option
@click.option(
    "--refresh-seconds",
    type=click.FloatRange(1.0),
    default=10.0,
    show_default=True,
    help="how often deployments.json is regenerated from every service's git tags",
)
@metrics_listen_option()
@verbose_logging_option
def up(
    soa_dir: Path | None,
    config_file: Path | None,
    state_dir: Path | None,
    workers: int,
    full_pass_seconds: float,
    stop_grace_seconds: float,
    refresh_seconds: float,
    metrics_listen: str,
    verbose: bool,
) -> None:
    """Run paasport on this host in the foreground: reconciler, deployments refresher, health
    checks (and discovery and monitoring where configured). Ctrl-C stops paasport, not the
    services."""
    from paasport.reconcile.refresh import DeploymentsRefresher

    setup_logging(verbose)
    system = load_settings(config_file, soa_dir, state_dir)
    system.state_dir.mkdir(parents=True, exist_ok=True)
    _write_default_config(config_file, system)
    platform = build_platform(system, workers, full_pass_seconds, stop_grace_seconds)
    stop = threading.Event()
    _stop_on_signals(stop)
    log.info(
        "paasport up: cluster %s, soa-configs %s, state %s",
        system.local_cluster,
        system.soa_dir,
        system.state_dir,
    )
    refresher = DeploymentsRefresher(system.soa_dir, system, interval=refresh_seconds)
    platform.spawn("refresh", lambda: refresher.run_forever(stop))
    _start_monitoring(platform, stop, metrics_listen)
    if platform.agent is not None:
        agent = platform.agent
        platform.spawn("discovery-agent", lambda: agent.run_forever(stop))
    try:
        platform.deployd.run_forever(stop)
    finally:
        platform.close()
        log.info("paasport stopped")
