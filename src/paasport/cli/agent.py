"""``paasport agent``: run this host's discovery agent (health checks, registry, HAProxy).

``paasport up`` runs the same Agent in a thread; this verb runs it alone in the foreground.
HAProxy keeps running when the agent stops (traffic flows across agent restarts) unless
``--stop-proxy`` is given.
"""

from __future__ import annotations

import signal
import threading
from collections.abc import Callable
from pathlib import Path
from types import FrameType
from typing import TYPE_CHECKING

import click

from paasport.cli.options import (
    config_option,
    metrics_listen_option,
    soa_dir_option,
    state_dir_option,
    verbose_logging_option,
)

if TYPE_CHECKING:
    from paasport.discovery.agent import Agent
    from paasport.monitoring.events import EventLog


def claim_proxy_ports(runner: Agent) -> None:
    """Lock this host's proxy ports of the tree's namespaces before the first pass."""
    from paasport.errors import PaasportError

    if runner.proxy is None:
        return
    try:
        namespaces, _ = runner.source()
    except PaasportError:
        return  # no config to route yet: the passes say why and claim the ports later
    runner.proxy.claim(list(namespaces.values()))


def event_hook(events: EventLog, cluster: str) -> Callable[[str, str], None]:
    """The agent's ``on_event(level, message)`` -> the event log (kind ``proxy``)."""
    import time

    from paasport.monitoring.events import Event

    def record(level: str, message: str) -> None:
        lvl = level if level in ("debug", "info", "warning", "error", "critical") else "error"
        events.record(Event(time.time(), lvl, "proxy", cluster=cluster, message=message))  # type: ignore[arg-type]

    return record


@click.command("agent")
@soa_dir_option
@config_option
@state_dir_option
@click.option(
    "--interval",
    type=click.FloatRange(0.05, 60),
    default=0.3,
    show_default=True,
    help="seconds between passes",
)
@click.option("--once", is_flag=True, help="run one pass and exit")
@click.option("--stop-proxy", is_flag=True, help="stop HAProxy when the agent exits")
@metrics_listen_option(default="")
@verbose_logging_option
def agent(
    soa_dir: Path | None,
    config_file: Path | None,
    state_dir: Path | None,
    interval: float,
    once: bool,
    stop_proxy: bool,
    metrics_listen: str,
    verbose: bool,
) -> None:
    """Register this host's healthy tasks and route every namespace through HAProxy."""
    from paasport.cli.up import setup_logging
    from paasport.config.system import load_system_config
    from paasport.discovery.proxy_lock import ProxyConflict
    from paasport.discovery.wiring import build_agent
    from paasport.engine.factory import engine_for
    from paasport.monitoring.events import EventLog, events_path

    setup_logging(verbose)  # the same lines as `up`, without kazoo's per-retry chatter
    system = load_system_config(config_file, soa_dir=soa_dir, state_dir=state_dir)
    engine = engine_for(system.local)
    events = EventLog(events_path(system.state_dir))
    runner = build_agent(
        system, engine, interval=interval, on_event=event_hook(events, system.local_cluster)
    )
    try:  # another agent serves these ports: refuse, never start a second proxy
        claim_proxy_ports(runner)
    except ProxyConflict as err:
        runner.close()
        events.close()
        raise click.ClickException(str(err)) from None
    if once:
        report = runner.run_once()
        runner.close(stop_proxy=stop_proxy)
        events.close()
        click.echo(
            f"{report.tasks} tasks, +{report.registered} -{report.deregistered}, "
            f"version {report.version}, reloaded {report.reloaded}"
        )
        if report.errors:
            raise click.ClickException("; ".join(report.errors))
        return
    if metrics_listen:
        from paasport.monitoring.metrics import serve_metrics

        serve_metrics(metrics_listen)
    stop = threading.Event()

    def handler(signum: int, frame: FrameType | None) -> None:
        stop.set()

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    try:
        runner.run_forever(stop)
    finally:
        runner.close(stop_proxy=stop_proxy)
        events.close()
