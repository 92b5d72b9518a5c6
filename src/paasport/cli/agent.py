"""``paasport agent``: run this host's discovery agent (health checks, registry, HAProxy).

``paasport up`` runs the same Agent in a thread; this verb runs it alone in the foreground, built
by ``paasport.platform`` (with its own desired-state store).
HAProxy keeps running when the agent stops (traffic flows across agent restarts) unless
``--stop-proxy`` is given.
"""

from __future__ import annotations

import signal
import threading
from pathlib import Path
from types import FrameType

import click

from paasport.cli.options import (
    config_option,
    metrics_listen_option,
    soa_dir_option,
    state_dir_option,
    verbose_logging_option,
)


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
    from paasport.platform.build import build_platform

    setup_logging(verbose)  # the same lines as `up`, without kazoo's per-retry chatter
    system = load_system_config(config_file, soa_dir=soa_dir, state_dir=state_dir)
    platform = build_platform(system, agent=True, agent_interval=interval, probe_engine=False)
    runner = platform.agent
    if runner is None:
        raise click.ClickException("discovery is not available on this host")
    if stop_proxy:
        platform.closers.append(lambda: runner.close(stop_proxy=True))
    if once:
        report = runner.run_once()
        platform.close()
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
        platform.store.start(stop)
        runner.run_forever(stop)
    finally:
        stop.set()
        platform.close()
