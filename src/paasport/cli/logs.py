"""``paasport logs``: the merged logs of a service's tasks, each line prefixed by its task.

Reads through the engine's ``logs`` (oldest first; with -f keeps following, new tasks included);
``--json`` prints one JSON object per line.
"""

from __future__ import annotations

import json
import re
import time
from datetime import datetime
from pathlib import Path

import click

from paasport.cli.options import config_option, instance_option, json_option, service_option
from paasport.config.system import SystemConfig, load_system_config
from paasport.errors import NotFoundError, UsageError
from paasport.view.logs import log_json

_DURATION = re.compile(r"^(\d+(?:\.\d+)?)([smhd]?)$")
_UNITS = {"": 1, "s": 1, "m": 60, "h": 3600, "d": 86400}


def parse_since(value: str, now: float) -> float:
    """``90s``, ``10m``, ``2h``, ``1d`` ago, or an ISO time, as a unix timestamp."""
    m = _DURATION.match(value.strip())
    if m:
        return now - float(m.group(1)) * _UNITS[m.group(2)]
    try:
        return datetime.fromisoformat(value).timestamp()
    except ValueError:
        raise UsageError(
            f"--since {value!r}: expected a duration (30s, 10m, 2h, 1d) or an ISO time"
        ) from None


def check_configured(system: SystemConfig, service: str, instance: str | None) -> None:
    """NotFoundError naming what is known when ``service`` (``instance``) is not configured
    for this host's cluster."""
    from paasport.config.tree import load_tree

    if not system.soa_dir.is_dir():
        return  # nothing to compare with: "no tasks" says enough
    if not (system.soa_dir / service).is_dir():
        load_tree(system.soa_dir, [service], system=system)  # NotFoundError naming the known
        raise NotFoundError(f"no service {service} in {system.soa_dir}")
    if instance is None:
        return
    tree = load_tree(system.soa_dir, [service], system=system)
    cluster = system.local_cluster
    known = {c.instance for c in tree.instances_for(service=service, cluster=cluster)}
    known |= {i for s, c, i in tree.rejected_instances if s == service and c == cluster}
    if instance not in known and service not in tree.incomplete_services:
        raise NotFoundError(
            f"{service}: no instance {instance!r} on cluster {cluster} "
            f"(instances: {', '.join(sorted(known)) or 'none'})"
        )


@click.command("logs")
@service_option(required=True)
@instance_option
@config_option
@click.option("-f", "--follow", is_flag=True, help="keep printing new lines")
@click.option("--since", default=None, help="only lines newer than this (10m, 2h, ISO time)")
@click.option(
    "-n", "--tail", type=click.IntRange(min=0), default=None, help="last N lines of each task"
)
@json_option
def logs(
    service: str,
    instance: str | None,
    config_file: Path | None,
    follow: bool,
    since: str | None,
    tail: int | None,
    as_json: bool,
) -> None:
    """Merged task logs of a service (or one instance), prefixed by task."""
    from paasport.engine.factory import engine_for

    system = load_system_config(config_file)
    engine = engine_for(system.local)
    start = parse_since(since, time.time()) if since else None
    if not engine.list_app_versions(service, instance):
        # nothing runs: a typo must not look like a quiet service (a removed service's
        # leftovers still show, as they have tasks)
        check_configured(system, service, instance)
        if not follow:
            target = f"{service}.{instance}" if instance else service
            click.echo(f"no tasks of {target} on cluster {system.local_cluster}", err=True)
            return
    printed = 0
    try:
        for line in engine.logs(service, instance, follow=follow, since=start, tail=tail):
            name = line.task_name or line.task_id[:12]
            if as_json:  # one JSON object per line, so -f output can be piped
                click.echo(json.dumps(log_json(line), sort_keys=True))
            else:
                click.echo(f"{name} | {line.message.rstrip()}")
            printed += 1
    except KeyboardInterrupt:
        return
    if not printed and not follow:  # say so: an empty screen looks like a hang or a bug
        target = f"{service}.{instance}" if instance else service
        click.echo(
            f"the tasks of {target} wrote no log lines{' in that time' * bool(since)}", err=True
        )
