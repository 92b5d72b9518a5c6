"""``paasport mesh-status -s SERVICE``: this host's proxy view of the service's namespaces.

Reads HAProxy's stats over its admin socket and the registry (which task is behind each
address), then prints ``discovery.mesh.mesh_view`` as tables or ``--json``.
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
from paasport.errors import NotFoundError


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
    from paasport.config.tree import load_tree
    from paasport.discovery.mesh import mesh_view
    from paasport.discovery.wiring import read_proxy

    system = settings_from(ctx)
    tree = load_tree(system.soa_dir, services=[service])
    if service not in tree.services:
        raise NotFoundError(f"service {service!r} not found in {system.soa_dir}")
    namespaces = [ns for ns in tree.namespaces.values() if ns.service == service]
    if not namespaces:
        raise NotFoundError(f"service {service} has no namespaces (no smartstack.yaml)")
    reading = read_proxy(system)
    proxy_error = reading.error
    views = mesh_view(namespaces, reading.stats, reading.backends)
    if as_json:
        print_json(
            {
                "service": service,
                "error": proxy_error or None,
                "namespaces": [v.to_json() for v in views],
            }
        )
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 160)
    if proxy_error:
        console.print(f"[yellow]{proxy_error}[/yellow]")
    for v in views:
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
