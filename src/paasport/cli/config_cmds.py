"""Read-only soa-configs verbs: ``validate``, ``list``, ``list-clusters``, ``info``, ``schema``.

Registered lazily in ``cli.main.COMMANDS``; each loads the system config and the tree through
``paasport.config`` and prints plain lines, rich tables (imported only when needed) or JSON.
Exit status: 0 valid, 1 invalid (ConfigError / ``validate`` finding errors), 2 usage.
"""

from __future__ import annotations

from dataclasses import replace
from typing import Any

import click

from paasport.cli.options import (
    config_option,
    json_option,
    print_json,
    service_option,
    settings_from,
    soa_dir_option,
)
from paasport.config.system import SystemConfig
from paasport.config.tree import SoaTree, load_tree
from paasport.errors import ConfigError, ConfigProblem, UsageError
from paasport.view.catalog import clusters_json, info_json, problem_json, services_json


def _tree(ctx: click.Context, services: list[str] | None = None) -> tuple[SystemConfig, SoaTree]:
    system = settings_from(ctx)
    return system, load_tree(system.soa_dir, services, system=system)


def with_deployments_problems(tree: SoaTree) -> SoaTree:
    """``tree`` plus the problems of each service's deployments.json that the tree does not
    report (the tree checks JSON syntax; its v2 shape is deploy's, read as deployd reads it)."""
    from paasport.deploy.deployments import deployments_path, parse_deployments

    reported = {p.file for p in tree.problems}
    extra: list[ConfigProblem] = []
    for name in sorted(tree.services):
        path = deployments_path(tree.soa_dir, name)
        if str(path) in reported:
            continue
        try:
            raw = path.read_bytes()
        except OSError:
            continue  # missing (never deployed) or unreadable (the tree said so)
        try:
            parse_deployments(name, raw, str(path))
        except ConfigError as err:
            extra.extend(err.problems)
    if not extra:
        return tree
    problems = sorted({*tree.problems, *extra}, key=lambda p: (p.file, p.line, p.subject, p.field))
    return replace(tree, problems=tuple(problems))


def _console() -> Any:
    from rich.console import Console

    return Console(highlight=False)


@click.command("validate")
@service_option()
@soa_dir_option
@config_option
@json_option
@click.pass_context
def validate(ctx: click.Context, /, service: str | None, **_params: Any) -> int:
    """Validate the soa-configs tree (or one service): every problem, with file and line."""
    _, tree = _tree(ctx, [service] if service else None)
    tree = with_deployments_problems(tree)
    errors = tree.errors
    if ctx.params["as_json"]:
        print_json(
            {
                "valid": not errors,
                "soa_dir": str(tree.soa_dir),
                "services": sorted(tree.services),
                "instances": len(tree.instances),
                "errors": len(errors),
                "warnings": len(tree.warnings),
                "problems": [problem_json(p) for p in tree.problems],
            }
        )
        return 1 if errors else 0
    for p in tree.problems:
        suffix = "" if p.severity == "error" else f" [{p.severity}]"
        click.echo(f"{p}{suffix}")
    count = len(tree.services)
    scope = f"service {service}" if service else f"{count} service{'s' if count != 1 else ''}"
    if errors:
        click.echo(
            f"invalid: {len(errors)} error(s), {len(tree.warnings)} warning(s) in {scope} "
            f"({tree.soa_dir})"
        )
        return 1
    click.echo(
        f"valid: {scope}, {len(tree.instances)} instances, {len(tree.warnings)} warning(s) "
        f"({tree.soa_dir})"
    )
    return 0


@click.command("list")
@soa_dir_option
@config_option
@json_option
@click.pass_context
def list_services(ctx: click.Context, /, as_json: bool, **_params: Any) -> None:
    """List the services of the soa-configs tree."""
    _, tree = _tree(ctx)
    if as_json:
        print_json(services_json(tree))
        return
    for name in sorted(tree.services):
        click.echo(name)


@click.command("list-clusters")
@soa_dir_option
@config_option
@json_option
@click.pass_context
def list_clusters(ctx: click.Context, /, as_json: bool, **_params: Any) -> None:
    """List clusters: those of the system config and those instance files name."""
    system, tree = _tree(ctx)
    rows = clusters_json(system, tree)
    if as_json:
        print_json(rows)
        return
    from rich.table import Table

    table = Table("cluster", "engine", "instances", "note")
    for row in rows:
        note = "this host" if row["local"] else ""
        if not row["configured"]:
            note = "not in the system config: not deployed from this host"
        table.add_row(row["cluster"], row["engine"] or "-", str(row["instances"]), note)
    _console().print(table)


@click.command("info")
@service_option(required=True)
@soa_dir_option
@config_option
@json_option
@click.pass_context
def info(ctx: click.Context, /, service: str, as_json: bool, **_params: Any) -> int:
    """Describe one service: owner, repo, instances per cluster, namespaces and proxy ports."""
    _, tree = _tree(ctx, [service])
    svc = tree.services[service]
    mon = tree.monitoring[service]
    instances = sorted(tree.instances_for(service=service), key=lambda c: (c.cluster, c.instance))
    namespaces = sorted(
        (ns for ns in tree.namespaces.values() if ns.service == service), key=lambda n: n.name
    )
    if as_json:
        print_json(info_json(tree, service))
        return 1 if tree.errors else 0
    from rich.table import Table

    console = _console()
    console.print(f"[bold]{service}[/bold]: {svc.description or '(no description)'}")
    console.print(f"git_url: {svc.git_url or '-'}")
    console.print(f"team: {mon.team or '-'}")
    console.print(f"deploy groups: {', '.join(svc.deploy_groups) or '-'}")
    table = Table("cluster", "instance", "tasks", "cpus", "mem", "deploy group", "registrations")
    for c in instances:
        table.add_row(
            c.cluster,
            c.instance,
            str(c.instances),
            f"{c.cpus:g}",
            f"{c.mem:g}",
            c.deploy_group,
            ", ".join(c.registrations) or "-",
        )
    console.print(table)
    if namespaces:
        ns_table = Table("namespace", "proxy port", "mode")
        for ns in namespaces:
            port = str(ns.proxy_port) if ns.proxy_port is not None else "-"
            ns_table.add_row(ns.full_name, port, ns.mode)
        console.print(ns_table)
    if tree.errors:
        click.echo(
            f"{len(tree.errors)} error(s): instances with errors are not shown "
            f"(paasport validate -s {service})",
            err=True,
        )
        return 1
    return 0


@click.command("schema")
@click.argument("kind", required=False)
@json_option
def schema(kind: str | None, as_json: bool) -> None:
    """Print the JSON Schema of one file kind (for yaml-language-server)."""
    from paasport.config.schema import KINDS, json_schema

    if kind is None or kind not in KINDS:
        found = f'"{kind}"' if kind else "nothing"
        raise UsageError(f"schema: expected a file kind ({', '.join(KINDS)}), found {found}")
    print_json(json_schema(kind))
