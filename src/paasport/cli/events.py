"""``paasport events``: the event log (bounces, crashes, deploys, checks, alerts), newest last.

Renders ``view.events.load_events`` (``-f``: ``view.events.follow_events``, which keeps following);
other clusters' events come from their API (``view.remote.read_across``), merged by time, and
with ``-f`` from their API's event stream (``view.events.follow_remote_events``).
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from datetime import datetime

import click

from paasport.cli.options import (
    cluster_option,
    config_option,
    instance_option,
    json_option,
    print_follows,
    service_option,
    settings_from,
    soa_dir_option,
    state_dir_option,
    token_option,
)
from paasport.config.system import SystemConfig
from paasport.monitoring.events import KINDS, LEVELS, Event
from paasport.view.events import (
    event_key,
    follow_events,
    follow_remote_events,
    load_events,
    merged_events,
    parse_since,
)
from paasport.view.remote import (
    read_across,
    token_from_env,
)
from paasport.view.status import reading_plan

_COLOURS = {"debug": "bright_black", "info": None, "warning": "yellow", "error": "red"}


def format_event(event: Event) -> str:
    """One line a person reads: time, level, kind, where, message (pure)."""
    at = datetime.fromtimestamp(event.time).strftime("%Y-%m-%d %H:%M:%S")
    where = ".".join(p for p in (event.service, event.instance) if p)
    if event.cluster:
        where = f"{where}@{event.cluster}" if where else f"@{event.cluster}"
    return f"{at} {event.level.upper():8} {event.kind:9} {where or '-'}: {event.message}"


def _echo(event: Event, as_json: bool) -> None:
    if as_json:
        click.echo(json.dumps(event.to_json(), sort_keys=True, default=str))
        return
    colour = "magenta" if event.level == "critical" else _COLOURS[event.level]
    click.echo(click.style(format_event(event), fg=colour))


@click.command("events")
@soa_dir_option
@config_option
@state_dir_option
@service_option()
@instance_option
@cluster_option
@click.option("--since", default=None, help="only events since: 30s, 10m, 2h, 1d, ISO time")
@click.option("--level", type=click.Choice(LEVELS), default=None, help="only this level and above")
@click.option(
    "--kind",
    "kinds",
    multiple=True,
    type=click.Choice(KINDS),
    help="only these kinds (repeatable)",
)
@click.option(
    "-n",
    "--limit",
    type=click.IntRange(min=1),
    default=100,
    show_default=True,
    help="newest N events",
)
@click.option("-f", "--follow", is_flag=True, help="keep printing new events")
@json_option
@token_option
@click.pass_context
def events(
    ctx: click.Context,
    soa_dir: object,
    config_file: object,
    state_dir: object,
    service: str | None,
    instance: str | None,
    cluster: str | None,
    since: str | None,
    level: str | None,
    kinds: tuple[str, ...],
    limit: int,
    follow: bool,
    as_json: bool,
    token: str | None,
) -> None:
    """Show what happened: bounces, crashes, deploys, check results and alerts, newest last.

    With -s and no -c: every cluster the service has instances on, merged by time (other
    clusters through their api_url); -c CLUSTER: only that one."""
    system = settings_from(ctx)
    since_ts = parse_since(since, time.time()) if since else None
    plan = reading_plan(system, service, cluster)
    if plan.clusters != (system.local_cluster,):
        ctx.exit(_events_across(system, plan.clusters, service, instance, since_ts, level,
                                kinds, limit, as_json, token, follow))  # fmt: skip
    filters = {
        "service": service,
        "instance": instance,
        "cluster": cluster,
        "since": since_ts,
        "level": level,
        "kinds": kinds or None,
        "limit": limit,
    }
    if follow:
        stop = threading.Event()
        try:
            for event in follow_events(system, stop, **filters):  # type: ignore[arg-type]
                _echo(event, as_json)
        except KeyboardInterrupt:
            stop.set()
        return
    view = load_events(system, **filters)  # type: ignore[arg-type]
    if not view.recorded:
        if as_json:
            click.echo("[]")
        else:
            click.echo(f"no events recorded yet ({view.path} does not exist)", err=True)
        return
    if as_json:
        click.echo(json.dumps(view.to_json(), indent=2, sort_keys=True, default=str))
        return
    if not view.events:
        click.echo("no matching events", err=True)
    for event in view.events:
        _echo(event, as_json=False)


def _note(line: str) -> None:
    click.secho(line, fg="yellow", err=True)


def _events_across(
    system: SystemConfig,
    clusters: Sequence[str],
    service: str | None,
    instance: str | None,
    since: float | None,
    level: str | None,
    kinds: Sequence[str],
    limit: int,
    as_json: bool,
    token: str | None,
    follow: bool,
) -> int:
    """The events of several clusters merged by time (the newest ``limit``); a cluster that
    does not answer is one line on stderr and exit 1. ``follow``: then each new event of every
    cluster as it is recorded (this host's from its log, the others' from their API's stream,
    opened again when it is cut) until Ctrl-C; ``--json`` is then one object per line."""
    start = time.time()

    def local() -> object:
        return load_events(
            system, service=service, instance=instance,
            since=since, level=level, kinds=kinds or None, limit=limit,
        ).to_json()  # fmt: skip

    params: dict[str, str | Sequence[str]] = {"limit": str(limit)}
    for key, value in (("service", service), ("instance", instance), ("level", level)):
        if value:
            params[key] = value
    if since is not None:
        params["since"] = repr(since)
    if kinds:
        params["kind"] = list(kinds)
    answers = read_across(
        system, clusters, local, "/v1/events", params, token=token_from_env(token)
    )
    found = merged_events(answers, limit)
    if as_json and not follow:
        click.echo(json.dumps([e.to_json() for e in found], indent=2, sort_keys=True, default=str))
    else:
        for event in found:
            _echo(event, as_json)
        if not found and not follow:
            click.echo("no matching events", err=True)
    for answer in answers:
        if not answer.answered:
            click.secho(answer.error, fg="red", err=True)
    code = 0 if all(a.answered for a in answers) else 1
    if not follow:
        return code
    printed = {event_key(e) for e in found}
    bearer = token_from_env(token)
    wanted = kinds or None

    def source(name: str) -> Callable[[threading.Event], Iterator[Event]]:
        if name == system.local_cluster:
            return lambda stop: follow_events(
                system, stop, service=service, instance=instance, level=level, kinds=wanted,
                since=start, limit=None,
            )  # fmt: skip
        return lambda stop: follow_remote_events(
            system.clusters[name], stop, service=service, instance=instance, level=level,
            kinds=wanted, since=start, token=bearer, note=_note,
        )  # fmt: skip

    def show(_cluster: str, event: Event) -> None:
        if event_key(event) not in printed:
            _echo(event, as_json)

    return print_follows({n: source(n) for n in clusters}, show) or code
