"""``paasport hosts`` (alias ``list-hosts``): the cluster's nodes, their state and capacity.

Renders ``view.hosts.load_hosts`` (one ``node_capacity`` call to the cluster's engine) as a
table, a Down node in red, or ``--json``. A listing: it exits 0 whatever the nodes' state.
"""

from __future__ import annotations

import sys

import click

from paasport.cli.options import (
    config_option,
    json_option,
    print_json,
    settings_from,
    soa_dir_option,
    state_dir_option,
)


def _num(value: float | None, spec: str) -> str:
    return "?" if value is None else format(value, spec)


def _usage(total: float | None, reserved: float | None, free: float | None, spec: str) -> str:
    """``reserved/total (free)``: what paasport's tasks and others reserved, what is left."""
    if total is None:
        return "?"
    return f"{_num(reserved, spec)}/{_num(total, spec)} ({_num(free, spec)} free)"


@click.command("hosts")
@soa_dir_option
@config_option
@state_dir_option
@json_option
@click.pass_context
def hosts(
    ctx: click.Context, soa_dir: object, config_file: object, state_dir: object, as_json: bool
) -> None:
    """List the cluster's nodes: address, state, availability, role, CPUs and memory
    (reserved/total, free), paasport tasks on each, labels."""
    from paasport.view.hosts import load_hosts

    system = settings_from(ctx)
    view = load_hosts(system)
    if as_json:
        print_json(view.to_json())
        return
    from rich.console import Console
    from rich.table import Table

    console = Console(width=None if sys.stdout.isatty() else 200)
    down = view.down
    summary = f"cluster {view.cluster}: {len(view.hosts)} node(s)"
    if down:
        summary += f", [bold red]{len(down)} down: {', '.join(h.node for h in down)}[/bold red]"
    console.print(summary)
    table = Table(
        "node", "address", "state", "availability", "role", "cpus", "mem MB", "tasks", "labels"
    )
    for h in view.hosts:
        state = f"[bold red]{h.state.upper()}[/bold red]" if h.down else f"[green]{h.state}[/green]"
        avail = (
            h.availability if h.availability == "active" else f"[yellow]{h.availability}[/yellow]"
        )
        table.add_row(
            f"[bold red]{h.node}[/bold red]" if h.down else h.node,
            h.address or "-",
            state,
            avail,
            h.role or "-",
            _usage(h.cpus, h.cpus_reserved, h.cpus_free, "g"),
            _usage(h.mem_mb, h.mem_reserved_mb, h.mem_free_mb, ".0f"),
            "?" if h.tasks is None else str(h.tasks),
            ",".join(f"{k}={v}" for k, v in sorted(h.labels.items())) or "-",
        )
    console.print(table)
