"""``paasport up`` (the whole platform of one host, in the foreground) and ``paasport deployd``.

Both parse flags and start what ``paasport.platform.build_platform`` built (one desired-state
store, shared); ``up`` adds the deployments.json refresher, the discovery agent and the monitor,
each in its own thread. Ctrl-C stops paasport only: the services keep running.
"""

from __future__ import annotations

import logging
import signal
import sys
import threading
from collections.abc import Callable, Mapping
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING, Any

import click

from paasport.cli.options import (
    config_option,
    metrics_listen_option,
    soa_dir_option,
    state_dir_option,
    verbose_logging_option,
)
from paasport.config.state_files import private_dir
from paasport.config.system import SystemConfig, config_path, default_config_text
from paasport.errors import PaasportError
from paasport.platform.autorollback import AutoRollback
from paasport.platform.autoscaler import Autoscaler
from paasport.platform.build import Platform, build_platform, load_settings, start_metrics
from paasport.platform.jobs import JobScheduler

if TYPE_CHECKING:
    from paasport.discovery.registry import AgentReport
    from paasport.platform.addon_provisioner import AddonProvisioner

__all__ = ["deployd", "load_settings", "setup_logging", "up"]

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
autoscale_option = click.option(
    "--autoscale-seconds",
    "autoscale_seconds",
    type=click.FloatRange(1.0),
    default=10.0,
    show_default=True,
    help="how often autoscaled instances (max_instances set) are measured and sized",
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


STOPPING = "stopping paasport (the services keep running; `paasport down` stops them)"


def stop_on_signals(stop: threading.Event, message: str = STOPPING) -> None:
    """SIGINT and SIGTERM set ``stop`` (once, logging ``message``)."""

    def handler(signum: int, frame: FrameType | None) -> None:
        if stop.is_set():
            return
        log.info("%s", message)
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)


def _start_api(
    platform: Platform, system: SystemConfig, listen: str | None, stop: threading.Event
) -> None:
    """The API beside the reconciler; a port that is taken is a warning (paasport keeps
    running, like /metrics)."""
    from paasport.cli.api_cmds import start_api

    try:
        server = start_api(system, listen, stop)
    except PaasportError as err:
        log.warning("not serving the API: %s", err)
        return
    platform.closers.append(server.close)


@click.command("deployd")
@soa_dir_option
@config_option
@state_dir_option
@workers_option
@full_pass_option
@grace_option
@autoscale_option
@click.option(
    "--no-wait",
    is_flag=True,
    help="exit 1 when another deployd holds the cluster lock instead of standing by",
)
@verbose_logging_option
def deployd(
    soa_dir: Path | None,
    config_file: Path | None,
    state_dir: Path | None,
    workers: int,
    full_pass_seconds: float,
    stop_grace_seconds: float,
    autoscale_seconds: float,
    no_wait: bool,
    verbose: bool,
) -> None:
    """Run only the reconciler: converge this host's cluster to soa-configs + deployments.json.

    One deployd acts per cluster: with the ZooKeeper registry a second one stands by (doing
    nothing) and takes over when the first stops; with --no-wait it exits 1 instead."""
    setup_logging(verbose)
    system = load_settings(config_file, soa_dir, state_dir)
    platform = build_platform(
        system,
        deployd=True,
        workers=workers,
        full_pass_seconds=full_pass_seconds,
        stop_grace_seconds=stop_grace_seconds,
        wait_for_lock=not no_wait,
    )
    stop = threading.Event()
    stop_on_signals(stop)
    try:
        guard = auto_rollback_guard(platform)
        platform.spawn("auto-rollback", lambda: guard.run_forever(stop))
        scheduler = job_scheduler(platform)
        platform.spawn("jobs", lambda: scheduler.run_forever(stop))
        provisioner = addon_provisioner(platform)
        platform.spawn("addons", lambda: provisioner.run_forever(stop))
        scaler = autoscaler(platform, autoscale_seconds)
        platform.spawn("autoscaler", lambda: scaler.run_forever(stop))
        platform.deployd.run_forever(stop)
    finally:
        platform.close()


def addon_provisioner(platform: Platform) -> AddonProvisioner:
    """The Postgres add-on's provisioner (databases, credentials, old roles): it acts only while
    this deployd holds the cluster lock."""
    from paasport.platform.addon_provisioner import AddonProvisioner
    from paasport.platform.build import desired_hash_of

    return AddonProvisioner(
        platform.system, platform.store, platform.engine, platform.events,
        desired_hash=desired_hash_of(platform.store),
        may_act=lambda: platform.cluster_lock is None or platform.cluster_lock.is_open(),
    )  # fmt: skip


def job_scheduler(platform: Platform) -> JobScheduler:
    """The scheduler of this cluster's jobs and keeper of its one-off tasks: it acts only
    while this deployd holds the cluster lock."""
    return JobScheduler(
        platform.system, platform.store, platform.engine, platform.events,
        may_act=lambda: platform.cluster_lock is None or platform.cluster_lock.is_open(),
    )  # fmt: skip


def autoscaler(platform: Platform, interval: float) -> Autoscaler:
    """The autoscaler of this host's deployd (the lock holder's only): the engine's CPU stats
    and, with discovery here, this host's HAProxy's requests in flight."""
    from paasport.discovery.haproxy import read_stats
    from paasport.discovery.wiring import haproxy_dir

    sock = haproxy_dir(platform.system) / "admin.sock"
    return Autoscaler(
        platform.system, platform.store, platform.engine, platform.events,
        with_health=platform.health.with_health if platform.health is not None else None,
        stats=(lambda: read_stats(sock)) if platform.agent is not None else None,
        reports=agent_reports(platform),
        interval=interval,
        may_act=lambda: platform.cluster_lock is None or platform.cluster_lock.is_open(),
    )  # fmt: skip


def agent_reports(platform: Platform) -> Callable[[], Mapping[str, AgentReport]]:
    """Every host's agent reports (their tasks' loads), through this host's agent's registry
    client or one of the autoscaler's own, opened on first use and closed with the platform."""
    if platform.agent is not None:
        own: Callable[[], Mapping[str, AgentReport]] = platform.agent.registry.reports
        return own
    from paasport.discovery.wiring import open_registry

    opened: list[Any] = []

    def reports() -> Mapping[str, AgentReport]:
        if not opened:
            registry = open_registry(platform.system)
            opened.append(registry)
            platform.closers.append(registry.close)
        result: Mapping[str, AgentReport] = opened[0].reports()
        return result

    return reports


def auto_rollback_guard(platform: Platform) -> AutoRollback:
    """The auto-rollback guard of this host's deployd: its store, engine, event log, the
    health monitor's verdicts and (with discovery here) this host's HAProxy counters."""
    from paasport.discovery.haproxy import read_stats
    from paasport.discovery.wiring import haproxy_dir

    system = platform.system
    sock = haproxy_dir(system) / "admin.sock"
    return AutoRollback(
        system, platform.store, platform.engine, platform.events,
        with_health=platform.health.with_health if platform.health is not None else None,
        stats=(lambda: read_stats(sock)) if platform.agent is not None else None,
        may_act=lambda: platform.cluster_lock is None or platform.cluster_lock.is_open(),
    )  # fmt: skip


@click.command("up")
@soa_dir_option
@config_option
@state_dir_option
@workers_option
@full_pass_option
@grace_option
@autoscale_option
@click.option(
    "--refresh-seconds",
    type=click.FloatRange(1.0),
    default=10.0,
    show_default=True,
    help="how often deployments.json is regenerated from every service's git tags",
)
@metrics_listen_option()
@click.option(
    "--api-listen",
    "api_listen",
    default=None,
    metavar="HOST:PORT",
    help="serve the HTTP API and dashboard on HOST:PORT (default: api.listen in paasport.yaml,"
    " 127.0.0.1:5054; '' to not serve)",
)
@verbose_logging_option
def up(
    soa_dir: Path | None,
    config_file: Path | None,
    state_dir: Path | None,
    workers: int,
    full_pass_seconds: float,
    stop_grace_seconds: float,
    autoscale_seconds: float,
    refresh_seconds: float,
    metrics_listen: str,
    api_listen: str | None,
    verbose: bool,
) -> None:
    """Run paasport on this host in the foreground: reconciler, deployments refresher, health
    checks, discovery, monitoring and the HTTP API. Ctrl-C stops paasport, not the services."""
    setup_logging(verbose)
    system = load_settings(config_file, soa_dir, state_dir)
    private_dir(system.state_dir)
    _write_default_config(config_file, system)
    platform = build_platform(
        system,
        deployd=True,
        agent=True,
        monitor=True,
        refresher=True,
        workers=workers,
        full_pass_seconds=full_pass_seconds,
        stop_grace_seconds=stop_grace_seconds,
        refresh_seconds=refresh_seconds,
    )
    stop = threading.Event()
    stop_on_signals(stop)
    log.info(
        "paasport up: cluster %s, soa-configs %s, state %s",
        system.local_cluster,
        system.soa_dir,
        system.state_dir,
    )
    try:
        platform.store.start(stop)  # one load and one watcher thread, read by every part
        refresher, monitor, agent = platform.refresher, platform.monitor, platform.agent
        platform.spawn("refresh", lambda: refresher.run_forever(stop))
        platform.spawn("monitor", lambda: monitor.run_forever(stop))
        if metrics_listen:
            start_metrics(platform, metrics_listen)
        if api_listen != "":
            _start_api(platform, system, api_listen, stop)
        if agent is not None:
            platform.spawn("discovery-agent", lambda: agent.run_forever(stop))
        guard = auto_rollback_guard(platform)
        platform.spawn("auto-rollback", lambda: guard.run_forever(stop))
        scheduler = job_scheduler(platform)
        platform.spawn("jobs", lambda: scheduler.run_forever(stop))
        provisioner = addon_provisioner(platform)
        platform.spawn("addons", lambda: provisioner.run_forever(stop))
        scaler = autoscaler(platform, autoscale_seconds)
        platform.spawn("autoscaler", lambda: scaler.run_forever(stop))
        platform.deployd.run_forever(stop)
    finally:
        stop.set()
        platform.close()
        log.info("paasport stopped")
