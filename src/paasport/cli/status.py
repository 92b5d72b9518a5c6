"""``paasport status``: per instance desired vs running vs healthy, bounces, and why not healthy.

Asks ``view.status.load_status`` for the StatusView (one tree load, one engine list call, a
live probe per task, this host's proxy and registry, the event log) and renders it as text or
``--json``. Exit 1 when any instance is not healthy.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

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
    token_option,
)
from paasport.config.system import load_system_config
from paasport.view.status import (
    StatusView,
    answer_entries,
    clusters_to_read,
    config_errors,
    deployments_errors,
    error_entry,
    gather,
    load_status,
    select_instances,
    status_of_clusters,
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


def _host_cell(task: Mapping[str, Any]) -> str:
    """``node address:port`` (the node in red when the engine reports it down)."""
    host, port, node = task.get("host") or "", task.get("port"), task.get("node") or ""
    where = f"{host}:{port}" if port else host
    if not node or node == host:
        shown = ""
    elif task.get("host_down"):
        shown = f"[red]{node} (down)[/red] "
    else:
        shown = f"{node} "
    return f"{shown}{where}"


def _state_cell(task: Mapping[str, Any]) -> str:
    """The task's state, its exit code, and the engine's word on why it is not running."""
    from rich.markup import escape

    state = str(task.get("state") or "")
    code = task.get("exit_code")
    cell = state + (f" ({code})" if code is not None else "")
    if task.get("status_message") and state != "running":
        cell += f": {escape(str(task['status_message']))}"
    return cell


def _task_row(task: Mapping[str, Any], namespaces: Sequence[str]) -> list[str]:
    health = str(task.get("health") or "unknown")
    if health != "healthy" and task.get("detail"):
        health += f" ({task['detail']})"
    age = task.get("age_seconds")
    row = [
        str(task.get("name") or str(task.get("id", ""))[:12]),
        _host_cell(task),
        _state_cell(task),
        health,
        _age(float(age)) if age is not None else "-",
        str(task.get("restarts", 0)),
        "new" if task.get("new") else "old",
    ]
    if namespaces:
        proxy = task.get("proxy") or {}
        row.append(", ".join(f"{ns}: {proxy.get(ns, 'not registered')}" for ns in namespaces))
    return row


def render(entries: Sequence[Mapping[str, Any]], verbose: int) -> None:
    """``status --json`` entries (local or from a cluster's API) as text."""
    from rich.console import Console
    from rich.markup import escape
    from rich.table import Table

    console = Console(highlight=False, soft_wrap=True, width=None if sys.stdout.isatty() else 160)
    for e in entries:
        inst = e.get("instance")
        key, cluster, ok = f"{e['service']}.{inst}" if inst else e["service"], e["cluster"], e["ok"]
        colour = "green" if ok else "red"
        if e.get("run"):  # a one-off task: never one of the instance's tasks
            console.print(f"[bold]{key}[/bold] ({cluster})  {escape(str(e.get('why') or ''))}")
            continue
        if e.get("expected") is None:  # a config error or a cluster that did not answer
            console.print(f"[bold]{key}[/bold] ({cluster})  [red]{e['state']}[/red]")
            console.print(f"  [red]why:[/red] {escape(str(e.get('why') or ''))}")
            continue
        sha = str(e.get("git_sha") or "")[:8] or "-"
        desired = e.get("desired_state") or "not deployed"
        console.print(
            f"[bold]{key}[/bold] ({cluster})  [{colour}]{e['state']}[/{colour}]  "
            f"{e['healthy']}/{e['expected']} healthy, {e['running']} running  "
            f"desired: {desired}  git {sha}"
        )
        for av in e.get("app_versions") or ():
            console.print(
                f"  app version git {str(av['git_sha'])[:8]} config {str(av['config_hash'])[:8]} "
                f"({'new' if av.get('new') else 'old'}): {av['tasks']} task(s)"
            )
        b = e.get("bounce")
        if b and b.get("in_progress") and e.get("app_versions"):
            console.print(
                f"  bounce: {b['method']}, {b['new_healthy']}/{e['expected']} new healthy, "
                f"{b['old_remaining']} old left; {b.get('waiting_on') or 'in progress'}"
            )
        if e.get("why"):
            console.print(f"  [{colour}]why:[/{colour}] {escape(str(e['why']))}")
        auto = e.get("autoscaling")
        if auto:
            metric = auto.get("metric")
            said = (
                f"{auto['metrics_provider']} {metric:.2f}"
                if metric is not None
                else "no reading yet"
            )
            over = auto.get("override")
            rng = (f"override {over['min']}..{over['max']}" if over else
                   f"{auto['min_instances']}..{auto['max_instances']}")  # fmt: skip
            console.print(
                f"  autoscaling: {said} vs setpoint {auto.get('setpoint')}, {rng}; "
                f"{escape(str(auto.get('last_decision') or 'no decision yet'))}"
            )
        if e.get("traffic"):
            worse = str(e["traffic"]).endswith(": worse")
            tint = "yellow" if worse else "green"
            console.print(f"  [{tint}]traffic:[/{tint}] {escape(str(e['traffic']))}")
        tasks = e.get("tasks") or []
        if verbose >= 1 and tasks:
            namespaces = list(dict.fromkeys(ns for t in tasks for ns in (t.get("proxy") or {})))
            table = Table(box=None, padding=(0, 2), show_edge=False)
            columns = ["task", "host", "state", "health", "age", "restarts", "version"]
            for col in [*columns, "proxy"] if namespaces else columns:
                table.add_column(col)
            for t in tasks:
                table.add_row(*_task_row(t, namespaces))
            console.print(table)
        if verbose >= 2:
            for ev in (e.get("events") or [])[-10:]:
                stamp = time.strftime("%H:%M:%S", time.localtime(float(ev["time"])))
                console.print(
                    f"    {stamp} {ev['level']:<7} {ev['kind']}: {escape(str(ev['message']))}"
                )


@click.command("status")
@service_option()
@cluster_option
@instance_option
@soa_dir_option
@config_option
@json_option
@state_dir_option
@token_option
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
    token: str | None,
) -> int:
    """Desired vs running vs healthy per instance, bounces in progress, and why not healthy.

    With -s and no -c: every cluster the service has instances on, one block per cluster (other
    clusters through their api_url, in parallel, 2 s each); -c CLUSTER: only that one."""
    system = load_system_config(config_file, soa_dir=soa_dir, state_dir=state_dir)
    with_events = verbose >= 2 or as_json
    plan = clusters_to_read(system, service, cluster)
    if plan.clusters == (system.local_cluster,):
        view = load_status(
            system, service, cluster, instance, with_events=with_events, tree=plan.tree
        )
        if as_json:
            print_json(view.to_json())
        elif not view.instances and not view.config_errors and not view.runs:
            click.echo("no instances configured for this cluster")
        else:
            render(view.to_json(), verbose)
            _proxy_note(view, verbose)
        _skipped_note(plan.skipped)
        return 0 if view.ok else 1
    answers = status_of_clusters(
        system, plan.clusters, service, instance, with_events=with_events, token=token
    )
    entries = [entry for answer in answers for entry in answer_entries(answer, service, instance)]
    if as_json:
        print_json(entries)
    else:
        for answer in answers:
            if not answer.answered:
                click.secho(answer.error, fg="red")
            elif answer.data:
                render(answer.data, verbose)
            else:
                click.echo(f"cluster {answer.cluster}: no instances configured")
        _skipped_note(plan.skipped)
    return 0 if entries and all(e.get("ok") for e in entries) else 1


def _proxy_note(view: StatusView, verbose: int) -> None:
    message = view.discovery.message if view.discovery else ""
    if message and view.discovery and (verbose or not view.discovery.answered):
        click.echo(f"proxy: {message}", err=True)


def _skipped_note(skipped: Sequence[str]) -> None:
    for name in skipped:
        click.echo(
            f"cluster {name}: not asked (no api_url for it in paasport.yaml; -c {name} on one "
            "of its hosts)",
            err=True,
        )
