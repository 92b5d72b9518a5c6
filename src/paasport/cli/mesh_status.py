"""``paasport mesh-status -s SERVICE``: the proxy view of the service's namespaces.

Renders ``view.mesh.load_mesh`` (HAProxy's stats and the registry's backends) as tables or
``--json``; exits 1 when a HAProxy or the registry does not answer. Without -c it reads every
cluster the service has instances on (the others through their API, ``view.remote``); one
cluster prints its document, several a list of them, each with its ``cluster``.
"""

from __future__ import annotations

import sys
from collections.abc import Mapping
from typing import Any

import click

from paasport.cli.options import (
    cluster_option,
    config_option,
    json_option,
    print_json,
    service_option,
    settings_from,
    soa_dir_option,
    state_dir_option,
    token_option,
)


def mesh_ok(doc: Mapping[str, Any]) -> bool:
    """HAProxy and the registry both answered (a mesh-status document). Pure."""
    return not doc.get("proxy_error") and not doc.get("registry_error")


@click.command("mesh-status")
@service_option(required=True)
@cluster_option
@soa_dir_option
@config_option
@state_dir_option
@json_option
@token_option
@click.pass_context
def mesh_status(
    ctx: click.Context,
    service: str,
    cluster: str | None,
    soa_dir: object,
    config_file: object,
    state_dir: object,
    as_json: bool,
    token: str | None,
) -> None:
    """Show the proxy's view of SERVICE's namespaces: backends, state, check, sessions."""
    from paasport.view.mesh import load_mesh
    from paasport.view.remote import read_across, token_from_env
    from paasport.view.status import reading_plan

    system = settings_from(ctx)
    plan = reading_plan(system, service, cluster)
    if plan.clusters == (system.local_cluster,):  # this host's own errors raise as they are
        docs: list[dict[str, Any]] = [
            {"cluster": system.local_cluster, **load_mesh(system, service).to_json()}
        ]
    else:
        answers = read_across(
            system,
            plan.clusters,
            lambda: load_mesh(system, service).to_json(),
            f"/v1/services/{service}/mesh",
            token=token_from_env(token),
        )
        docs = [
            {"cluster": a.cluster, **a.data}
            if a.answered
            else {"cluster": a.cluster, "error": a.error, "unreachable": True}
            for a in answers
        ]
    ok = all(not d.get("unreachable") and mesh_ok(d) for d in docs)
    if as_json:
        print_json(docs[0] if len(docs) == 1 else docs)
        ctx.exit(0 if ok else 1)
    from rich.console import Console
    from rich.markup import escape

    console = Console(width=None if sys.stdout.isatty() else 160)
    for doc in docs:
        if doc.get("unreachable"):  # one line, on stderr like every verb's
            click.secho(str(doc["error"]), fg="red", err=True)
            continue
        if len(docs) > 1:
            console.print(f"[bold]cluster {escape(str(doc['cluster']))}[/bold]")
        _render(console, doc)
    ctx.exit(0 if ok else 1)


def _render(console: Any, doc: Mapping[str, Any]) -> None:
    from rich.markup import escape
    from rich.table import Table

    if doc.get("error"):
        console.print(f"[yellow]{escape(str(doc['error']))}[/yellow]")
    for v in doc.get("namespaces") or ():
        port = f"127.0.0.1:{v['proxy_port']}" if v.get("proxy_port") else (
            "no proxy_port (discovery only)"
        )  # fmt: skip
        console.print(
            f"[bold]{escape(v['namespace'])}[/bold]  {port}  {v['up']}/{v['total']} backends up"
        )
        table = Table("backend", "task", "state", "check", "sessions", "total", "weight")
        for b in v.get("backends") or ():
            colour = {"up": "green", "drain": "yellow"}.get(b["state"], "red")
            table.add_row(
                escape(str(b["addr"])),
                (b.get("task_id") or "-")[:12],
                f"[{colour}]{escape(str(b['state']))}[/{colour}]",
                escape(str(b.get("check") or "")),
                str(b["sessions"]),
                str(b["total_sessions"]),
                str(b["weight"]),
            )
        console.print(table)
