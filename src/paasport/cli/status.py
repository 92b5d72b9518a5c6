"""``paasport status``: per instance desired vs running vs healthy, bounces, and why not healthy.

Asks ``view.status.load_status`` for the StatusView (one tree load, one engine list call, a
live probe per task, this host's proxy and registry, the event log) and renders it as text or
``--json``. Exit 1 when any instance is not healthy.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Sequence
from pathlib import Path

import click

from paasport.cli.options import (
    cluster_option,
    config_option,
    instance_option,
    json_option,
    print_json,
    service_option,
    soa_dir_option,
    state_dir_option,
)
from paasport.config.system import load_system_config
from paasport.view.observe import InstanceView, TaskView
from paasport.view.status import (
    StatusView,
    config_errors,
    deployments_errors,
    error_entry,
    gather,
    load_status,
    select_instances,
)

__all__ = [  # moved to view.status; kept importable from here for existing callers
    "config_errors",
    "deployments_errors",
    "error_entry",
    "gather",
    "select_instances",
    "status",
]


def _age(seconds: float) -> str:
    seconds = max(seconds, 0)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.0f}h"
    return f"{seconds / 86400:.0f}d"


def _proxy_cell(view: InstanceView, task_id: str) -> str:
    cells = [
        f"{ns}: {view.proxy.get(task_id, {}).get(ns, 'not registered')}"
        for ns in view.config.registrations
    ]
    return ", ".join(cells) or "-"


def _host_cell(tv: TaskView) -> str:
    """``node address:port`` (the node in red when the engine reports it down)."""
    t = tv.task
    where = f"{t.host}:{t.port}" if t.port else t.host
    if not t.node or t.node == t.host:
        node = ""
    elif tv.host_down:
        node = f"[red]{t.node} (down)[/red] "
    else:
        node = f"{t.node} "
    return f"{node}{where}"


def _state_cell(tv: TaskView) -> str:
    """The task's state, its exit code, and the engine's word on why it is not running."""
    t = tv.task
    cell = t.state + (f" ({t.exit_code})" if t.exit_code is not None else "")
    if t.status_message and t.state != "running":
        from rich.markup import escape

        cell += f": {escape(t.status_message)}"
    return cell


def render(views: Sequence[InstanceView], verbose: int) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    now = time.time()
    for view in views:
        c, d, f, v = view.config, view.deployment, view.facts, view.verdict
        colour = "green" if v.ok else "red"
        sha = d.git_sha[:8] if d else "-"
        console.print(
            f"[bold]{view.key}[/bold] ({c.cluster})  [{colour}]{v.state}[/{colour}]  "
            f"{f.healthy}/{f.expected} healthy, {f.running} running  "
            f"desired: {d.desired_state if d else 'not deployed'}  git {sha}"
        )
        for av in view.versions:
            new = view.desired is not None and av.config_hash == view.desired.config_hash
            console.print(
                f"  app version git {av.git_sha[:8]} config {av.config_hash[:8]} "
                f"({'new' if new else 'old'}): {len(av.tasks)} task(s)"
            )
        b = view.bounce
        if b is not None and b.in_progress and view.versions:
            console.print(
                f"  bounce: {b.method}, {b.new_healthy}/{f.expected} new healthy, "
                f"{b.old_remaining} old left; {b.waiting_on or 'in progress'}"
            )
        if v.why:
            console.print(f"  [{colour}]why:[/{colour}] {v.why}")
        if verbose >= 1 and view.tasks:
            table = Table(box=None, padding=(0, 2), show_edge=False)
            in_mesh = bool(c.registrations)
            columns = ["task", "host", "state", "health", "age", "restarts", "version"]
            for col in [*columns, "proxy"] if in_mesh else columns:
                table.add_column(col)
            for tv in view.tasks:
                t = tv.task
                health = tv.health + (f" ({tv.detail})" if tv.health != "healthy" else "")
                row = [
                    t.name or t.task_id[:12],
                    _host_cell(tv),
                    _state_cell(tv),
                    health,
                    _age(now - t.started_at) if t.started_at else "-",
                    str(t.restarts),
                    "new" if tv.is_new else "old",
                ]
                if in_mesh:
                    row.append(_proxy_cell(view, t.task_id))
                table.add_row(*row)
            console.print(table)
        if verbose >= 2:
            for e in view.events[-10:]:
                stamp = time.strftime("%H:%M:%S", time.localtime(e.time))
                console.print(f"    {stamp} {e.level:<7} {e.kind}: {e.message}")


@click.command("status")
@service_option()
@cluster_option
@instance_option
@soa_dir_option
@config_option
@json_option
@state_dir_option
@click.option("-v", "--verbose", count=True, help="-v tasks, -vv recent events too")
def status(
    service: str | None,
    cluster: str | None,
    instance: str | None,
    soa_dir: Path | None,
    config_file: Path | None,
    as_json: bool,
    verbose: int,
    state_dir: Path | None,
) -> int:
    """Desired vs running vs healthy per instance, bounces in progress, and why not healthy."""
    system = load_system_config(config_file, soa_dir=soa_dir, state_dir=state_dir)
    view = load_status(system, service, cluster, instance, with_events=verbose >= 2 or as_json)
    if as_json:
        print_json(view.to_json())
    elif not view.instances and not view.config_errors:
        click.echo("no instances configured for this cluster")
    else:
        _render_status(view, verbose)
    return 0 if view.ok else 1


def _render_status(view: StatusView, verbose: int) -> None:
    render(view.instances, verbose)
    for entry in view.config_errors:
        click.secho(f"{entry.key} ({entry.cluster})  Config error", fg="red", bold=True)
        click.echo(f"  why: {entry.why}")
    message = view.discovery.message if view.discovery else ""
    if message and view.discovery and (verbose or not view.discovery.answered):
        click.echo(f"proxy: {message}", err=True)
