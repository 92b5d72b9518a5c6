"""``paasport autoscale-override``: a temporary min/max for an autoscaled instance (PaaSTA's
failover overrides), expiring by itself; another cluster's through its API."""

from __future__ import annotations

import time
from datetime import datetime
from typing import Any

import click

from paasport.cli.options import (
    config_option,
    json_option,
    print_json,
    settings_from,
    soa_dir_option,
    state_dir_option,
    token_option,
)
from paasport.errors import UsageError

OVERRIDE_PATH = "/v1/services/{service}/autoscale-overrides"


def parse_until(text: str, now: float) -> float:
    """``30m``/``2h`` from now, or a time like ``2026-12-05 18:00`` (local unless it names a
    zone). Epoch seconds."""
    from paasport.config.spec import parse_duration

    seconds = parse_duration(text.strip())
    if seconds is not None:
        return now + seconds
    try:
        when = datetime.fromisoformat(text.strip())
    except ValueError:
        raise UsageError(f'--until: expected a duration like "2h" or a time like '
                         f'"2026-12-05 18:00", found "{text}"') from None  # fmt: skip
    return when.timestamp()


@click.command("autoscale-override")
@click.option("--service", "-s", "service", required=True, help="service name")
@click.option("--instance", "-i", "instance", required=True, help="an autoscaled instance")
@click.option("--min", "lo", type=click.IntRange(0), required=True, help="lowest task count")
@click.option("--max", "hi", type=click.IntRange(0), required=True, help="highest task count")
@click.option("--until", "until", required=True,
              help='when it expires: "2h" from now, or a time "2026-12-05 18:00"')  # fmt: skip
@click.option(
    "--cluster", "-c", "cluster", default=None, help="the instance's cluster [this host's]"
)
@token_option
@json_option
@soa_dir_option
@config_option
@state_dir_option
@click.pass_context
def autoscale_override(ctx: click.Context, /, service: str, instance: str, lo: int, hi: int,
                       until: str, cluster: str | None, token: str | None, as_json: bool,
                       **_options: Any) -> int:  # fmt: skip
    """Autoscale SERVICE.INSTANCE between --min and --max instead of its min_instances and
    max_instances until --until; then its own range applies again."""
    from paasport.cli.run_cmd import who
    from paasport.platform import mutations
    from paasport.platform.autoscaler import set_override

    system = settings_from(ctx)
    cluster = cluster or system.local_cluster
    ends = parse_until(until, time.time())
    remote = mutations.api_cluster_of(system, cluster)
    if remote is not None:
        body = {"instance": instance, "min": lo, "max": hi, "until": ends, "by": who()}
        answer = mutations.through_api_json(remote, "POST", OVERRIDE_PATH.format(service=service),
                                            body, token)  # fmt: skip
    else:
        if cluster != system.local_cluster:
            raise UsageError(f"cluster {cluster} is not this host's ({system.local_cluster}) "
                             "and names no api_url in paasport.yaml")  # fmt: skip
        override = set_override(system, service, instance, lo, hi, ends, who())
        answer = {"service": service, "instance": instance, "cluster": cluster,
                  "min": override.min_instances, "max": override.max_instances,
                  "until": override.until}  # fmt: skip
    if as_json:
        print_json(answer)
    else:
        stamp = time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(float(answer["until"])))
        click.echo(f"{service}.{instance} on {cluster}: autoscaled within {lo}..{hi} until "
                   f"{stamp}")  # fmt: skip
    return 0
