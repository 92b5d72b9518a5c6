"""``paasport logs``: the merged logs of a service's tasks, each line prefixed by its task.

Reads through the engine's ``logs`` (oldest first; with -f keeps following, new tasks included);
``--json`` prints one JSON object per line.
"""

from __future__ import annotations

import json
import re
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

import click

from paasport.cli.options import (
    cluster_option,
    config_option,
    instance_option,
    json_option,
    print_follows,
    service_option,
    token_option,
)
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
@cluster_option
@config_option
@click.option("-f", "--follow", is_flag=True, help="keep printing new lines")
@click.option("--since", default=None, help="only lines newer than this (10m, 2h, ISO time)")
@click.option(
    "-n", "--tail", type=click.IntRange(min=0), default=None, help="last N lines of each task"
)
@json_option
@token_option
def logs(
    service: str,
    instance: str | None,
    cluster: str | None,
    config_file: Path | None,
    follow: bool,
    since: str | None,
    tail: int | None,
    as_json: bool,
    token: str | None,
) -> int:
    """Merged task logs of a service (or one instance), prefixed by task.

    Without -c: every cluster the service has instances on (other clusters through their
    api_url, the last --tail lines, 100 by default); -c CLUSTER: only that one."""
    from paasport.engine.factory import engine_for
    from paasport.view.status import reading_plan

    system = load_system_config(config_file)
    plan = reading_plan(system, service, cluster)
    if plan.clusters != (system.local_cluster,):
        if since:
            raise UsageError(
                "--since reads this host's cluster only (add -c "
                f"{system.local_cluster}); other clusters give their last --tail lines"
            )
        code = _logs_across(system, plan.clusters, service, instance, tail or 100, as_json, token)
        if follow:
            code = max(code, _follow_across(system, plan.clusters, service, instance, as_json,
                                            token))  # fmt: skip
        return code
    engine = engine_for(system.local)
    start = parse_since(since, time.time()) if since else None
    if not engine.list_app_versions(service, instance):
        # nothing runs: a typo must not look like a quiet service (a removed service's
        # leftovers still show, as they have tasks)
        check_configured(system, service, instance)
        if not follow:
            target = f"{service}.{instance}" if instance else service
            click.echo(f"no tasks of {target} on cluster {system.local_cluster}", err=True)
            return 0
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
        return 0
    if not printed and not follow:  # say so: an empty screen looks like a hang or a bug
        target = f"{service}.{instance}" if instance else service
        click.echo(
            f"the tasks of {target} wrote no log lines{' in that time' * bool(since)}", err=True
        )
    return 0


def _logs_across(
    system: SystemConfig,
    clusters: Sequence[str],
    service: str,
    instance: str | None,
    tail: int,
    as_json: bool,
    token: str | None,
) -> int:
    """The last ``tail`` lines of every cluster's tasks, each line prefixed by its cluster; a
    cluster that does not answer is one line on stderr and exit 1."""
    from paasport.view.logs import load_logs
    from paasport.view.remote import read_across, token_from_env

    def local() -> object:
        return load_logs(system, service, instance, tail=tail).to_json()

    params = {"tail": str(tail), **({"instance": instance} if instance else {})}
    path = f"/v1/services/{service}/logs"
    answers = read_across(system, clusters, local, path, params, token=token_from_env(token))
    for answer in answers:
        for row in answer.data if answer.answered and isinstance(answer.data, list) else ():
            _echo_row(answer.cluster, row, as_json)
    for answer in answers:
        if not answer.answered:
            click.secho(answer.error, fg="red", err=True)
    return 0 if all(a.answered for a in answers) else 1


def _echo_row(cluster: str, row: Mapping[str, Any], as_json: bool) -> None:
    """One line of a cluster's (the ``logs --json`` object), prefixed by the cluster."""
    if as_json:
        click.echo(json.dumps({**row, "cluster": cluster}, sort_keys=True))
    else:
        click.echo(f"{cluster} {row.get('task')} | {row.get('message')}")


def _follow_across(
    system: SystemConfig,
    clusters: Sequence[str],
    service: str,
    instance: str | None,
    as_json: bool,
    token: str | None,
) -> int:
    """``-f`` across clusters: each new line of every cluster's tasks as it is written (this
    host's from the engine, the others' from their API's log stream, opened again when it is
    cut: lines written while it was gone are not shown). Until Ctrl-C; exit 1 when a cluster
    could not be followed."""
    from paasport.engine.factory import engine_for
    from paasport.view.remote import follow_sse, token_from_env

    bearer = token_from_env(token)
    params = {"tail": "0", **({"instance": instance} if instance else {})}

    def note(line: str) -> None:
        click.secho(line, fg="yellow", err=True)

    def local(stop: threading.Event) -> Iterator[Mapping[str, Any]]:
        engine = engine_for(system.local)
        try:
            for line in engine.logs(service, instance, follow=True, tail=0, stop=stop):
                yield log_json(line)
        finally:
            engine.close()

    def remote(name: str) -> Callable[[threading.Event], Iterator[Mapping[str, Any]]]:
        def follow(stop: threading.Event) -> Iterator[Mapping[str, Any]]:
            path = f"/v1/services/{service}/logs/stream"
            for _event, row in follow_sse(
                system.clusters[name], path, lambda: params, token=bearer, stop=stop, note=note
            ):
                if isinstance(row, Mapping):
                    yield row

        return follow

    sources = {n: local if n == system.local_cluster else remote(n) for n in clusters}
    return print_follows(sources, lambda name, row: _echo_row(name, row, as_json))
