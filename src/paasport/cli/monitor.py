"""``paasport monitor``: the checks loop of this host's cluster, with /metrics served.

Builds the Monitor through ``monitoring.sources.build_monitor`` (``paasport up`` runs the same one
in a thread); ``--once`` runs one pass and prints the check results.
"""

from __future__ import annotations

import importlib
import json
import logging
import threading
from collections.abc import Sequence

import click

from paasport.cli.options import (
    config_option,
    json_option,
    metrics_listen_option,
    settings_from,
    soa_dir_option,
    state_dir_option,
)
from paasport.engine.base import Engine
from paasport.monitoring.monitor import HealthFn
from paasport.types import AppVersion


def health_for(engine: Engine) -> HealthFn | None:
    """The engine's health monitor (``paasport.engine.health``) as a function over app versions."""
    try:
        health = importlib.import_module("paasport.engine.health")
    except ImportError:
        return None
    monitor = health.HealthMonitor(engine.exec_in_task)

    def with_health(versions: Sequence[AppVersion]) -> Sequence[AppVersion]:
        monitor.update([task for version in versions for task in version.tasks])
        result: Sequence[AppVersion] = monitor.with_health(versions)
        return result

    return with_health


@click.command("monitor")
@soa_dir_option
@config_option
@state_dir_option
@metrics_listen_option()
@click.option(
    "--interval",
    type=click.FloatRange(min=0, min_open=True),
    default=None,
    help="seconds between passes [config]",
)
@click.option("--once", is_flag=True, help="run one pass, print the results and exit")
@json_option
@click.pass_context
def monitor(
    ctx: click.Context,
    soa_dir: object,
    config_file: object,
    state_dir: object,
    metrics_listen: str,
    interval: float | None,
    once: bool,
    as_json: bool,
) -> None:
    """Run the monitoring checks of this host's cluster and send alerts to the configured sinks."""
    from paasport.discovery.wiring import BackendsUp, haproxy_dir
    from paasport.engine.factory import engine_for
    from paasport.monitoring.metrics import serve_metrics
    from paasport.monitoring.sources import build_monitor

    system = settings_from(ctx)
    engine = engine_for(system.local)
    # replication also counts the tasks up in this host's proxy, once an agent ran here
    backends_up = BackendsUp(system) if (haproxy_dir(system) / "haproxy.cfg").exists() else None
    mon = build_monitor(
        system,
        engine=engine,
        with_health=health_for(engine),
        interval=interval,
        backends_up=backends_up,
    )
    if once:
        report = mon.run_once()
        mon.wait_sinks(30)
        mon.close()
        if backends_up is not None:
            backends_up.close()
        rows = [
            {"check": r.check, "service": r.service, "instance": r.instance, "status": r.status,
             "message": r.message}
            for r in report.results
        ]  # fmt: skip
        if as_json:
            click.echo(json.dumps({"results": rows, "errors": list(report.errors)}, indent=2))
        else:
            for row in rows:
                click.echo(f"{row['status']:4} {row['check']:13} {row['message']}")
            for error in report.errors:
                click.echo(f"error: {error}", err=True)
        if any(r.status == "CRIT" for r in report.results) or report.errors:
            ctx.exit(1)
        return
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(message)s")
    server = serve_metrics(metrics_listen) if metrics_listen else None
    if server is not None:
        click.echo(f"metrics on {server.url}", err=True)
    click.echo(
        f"monitoring cluster {system.local_cluster} every {mon.interval:g}s (Ctrl-C stops)",
        err=True,
    )
    stop = threading.Event()
    try:
        mon.run_forever(stop)
    except KeyboardInterrupt:
        stop.set()
    finally:
        mon.close()
        if backends_up is not None:
            backends_up.close()
        if server is not None:
            server.close()
