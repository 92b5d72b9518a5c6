"""``paasport monitor``: the checks loop of this host's cluster, with /metrics served.

Builds the Monitor through ``paasport.platform.build_platform`` (``paasport up`` runs the same one
in a thread, on the same desired-state store); ``--once`` runs one pass and prints the results.
"""

from __future__ import annotations

import json
import logging
import threading

import click

from paasport.cli.options import (
    config_option,
    json_option,
    metrics_listen_option,
    settings_from,
    soa_dir_option,
    state_dir_option,
)
from paasport.errors import UsageError


def _check_listen(metrics_listen: str) -> None:
    """A --metrics-listen that is not HOST:PORT is a usage error naming the flag."""
    from paasport.monitoring.metrics import parse_listen

    if not metrics_listen:
        return
    try:
        parse_listen(metrics_listen)
    except UsageError:
        raise UsageError(
            f"--metrics-listen {metrics_listen!r}: expected HOST:PORT (e.g. 127.0.0.1:9464, "
            "or '' to not serve)"
        ) from None


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
    from paasport.monitoring.metrics import serve_metrics
    from paasport.platform.build import build_platform

    _check_listen(metrics_listen)  # also with --once, which serves nothing: a typo must show
    system = settings_from(ctx)
    platform = build_platform(system, monitor=True, monitor_interval=interval, probe_engine=False)
    mon = platform.monitor
    if once:
        try:
            report = mon.run_once()
            mon.wait_sinks(30)
        finally:
            platform.close()
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
        platform.store.start(stop)
        mon.run_forever(stop)
    except KeyboardInterrupt:
        stop.set()
    finally:
        stop.set()
        platform.close()
        if server is not None:
            server.close()
