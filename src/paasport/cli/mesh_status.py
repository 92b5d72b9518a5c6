"""``paasport mesh-status -s SERVICE``: this host's proxy view of the service's namespaces.

Renders ``view.mesh.load_mesh`` (HAProxy's stats and the registry's backends) as tables or
``--json``; exits 1 when this host's HAProxy or the registry does not answer.
"""

from __future__ import annotations

import sys

import click

from paasport.cli.options import (
    config_option,
    json_option,
    print_json,
    service_option,
    settings_from,
    soa_dir_option,
    state_dir_option,
)


@click.command("mesh-status")
@service_option(required=True)
@soa_dir_option
@config_option
@state_dir_option
@json_option
@click.pass_context
def mesh_status(
    ctx: click.Context,
    service: str,
    soa_dir: object,
    config_file: object,
    state_dir: object,
    as_json: bool,
) -> None:
    """Show the proxy's view of SERVICE's namespaces: backends, state, check, sessions."""
    from paasport.view.mesh import load_mesh

    system = settings_from(ctx)
    view = load_mesh(system, service)
    if as_json:
        print_json(view.to_json())
        ctx.exit(0 if view.ok else 1)
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 160)
    if view.error:
        console.print(f"[yellow]{view.error}[/yellow]")
    for v in view.namespaces:
        port = f"127.0.0.1:{v.proxy_port}" if v.proxy_port else "no proxy_port (discovery only)"
        console.print(f"[bold]{v.namespace}[/bold]  {port}  {v.up}/{len(v.backends)} backends up")
        table = Table("backend", "task", "state", "check", "sessions", "total", "weight")
        for b in v.backends:
            colour = {"up": "green", "drain": "yellow"}.get(b.state, "red")
            table.add_row(
                b.addr,
                (b.task_id or "-")[:12],
                f"[{colour}]{b.state}[/{colour}]",
                b.check,
                str(b.sessions),
                str(b.total_sessions),
                str(b.weight),
            )
        console.print(table)
    ctx.exit(0 if view.ok else 1)
