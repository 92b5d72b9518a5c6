"""``paasport addon list|info|psql|backup|restore|rotate-credentials|destroy``: the Postgres
add-on of this host's cluster (``addons: {postgres: {}}`` in a service's config).

Renders what ``platform.addons`` returns and asks before what cannot be undone: ``restore``
unless ``--yes``, ``destroy`` only with ``--yes``. No output ever holds a password: ``psql``
hands the service's credentials to psql in its environment, never its argv.
"""

from __future__ import annotations

import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar, cast

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
from paasport.config.system import SystemConfig
from paasport.errors import NotFoundError, UsageError
from paasport.monitoring.events import EventLog, events_path
from paasport.platform import addons

F = TypeVar("F", bound=Callable[..., Any])


def _system(ctx: click.Context, cluster: str | None) -> SystemConfig:
    system = settings_from(ctx)
    where = cluster or system.local_cluster
    if where != system.local_cluster:
        raise UsageError(
            f"the add-on databases of cluster {where} are run from its hosts: run this on one of "
            f"them; this host runs cluster {system.local_cluster}"
        )
    return system


def _server(system: SystemConfig) -> addons.AddonServer:
    server = addons.open_server(system, start=False)
    if server is None:
        raise NotFoundError(
            "no add-on database on this host yet: deployd (paasport up) starts the server and "
            "provisions a database once a service asks for one (addons: {postgres: {}})"
        )
    return server


def _events(system: SystemConfig) -> EventLog:
    return EventLog(events_path(system.state_dir))


def _common(service: bool = True, as_json: bool = True) -> Callable[[F], F]:
    def decorate(f: F) -> F:
        options: list[Callable[[F], F]] = [
            cast("Callable[[F], F]", click.pass_context),
            state_dir_option,
            config_option,
            soa_dir_option,
            click.option(
                "--cluster",
                "-c",
                "cluster",
                default=None,
                help="the cluster (default: this host's)",
            ),
        ]
        if service:
            options.append(service_option(required=True))
        if as_json:
            options.append(json_option)
        for option in options:
            f = option(f)
        return f

    return decorate


def _size(n: int | None) -> str:
    if n is None:
        return "-"
    if n < 1024:
        return f"{n} bytes"
    value = float(n)
    for unit in ("kB", "MB", "GB"):
        value /= 1024
        if value < 1024 or unit == "GB":
            break
    return f"{value:.1f} {unit}"


@click.group("addon")
def addon() -> None:
    """The Postgres add-on: a database per service and cluster, its credentials as secrets."""


@addon.command("list")
@_common(service=False)
def list_cmd(ctx: click.Context, /, cluster: str | None, as_json: bool, **_: Any) -> None:
    """Services with the add-on: provisioned, waiting for deployd, or orphaned (the config no
    longer asks for it; the database stays until `addon destroy`)."""
    from paasport.view.catalog import load_catalog_tree

    system = _system(ctx, cluster)
    tree = load_catalog_tree(system)
    entries = addons.list_addons(system, tree, addons.open_server(system, start=False))
    if as_json:
        print_json([e.to_json() for e in entries])
        return
    if not entries:
        click.echo(f"no service uses the postgres add-on on cluster {system.local_cluster}")
        return
    rows = [("SERVICE", "DATABASE", "STATE", "INSTANCES")]
    rows += [(e.service, e.database, e.state, ",".join(e.instances) or "-") for e in entries]
    widths = [max(len(r[i]) for r in rows) for i in range(3)]
    for r in rows:
        click.echo("  ".join(v.ljust(w) for v, w in zip(r[:3], widths, strict=True)) + "  " + r[3])
    if any(e.state == "orphaned" for e in entries):
        click.echo("orphaned: kept until `paasport addon destroy -s SERVICE --yes`")


@addon.command("info")
@_common()
def info(ctx: click.Context, /, service: str, cluster: str | None, as_json: bool, **_: Any) -> None:
    """The service's database: server, size, sessions, roles, credentials' versions, backups
    (never a password)."""
    from paasport.view.catalog import load_catalog_tree

    system = _system(ctx, cluster)
    tree = load_catalog_tree(system)
    found = addons.addon_info(system, tree, addons.open_server(system, start=False), service)
    if as_json:
        print_json(found.to_json())
        return
    db = found.database
    click.echo(f"{service}: postgres add-on on cluster {system.local_cluster}: {found.entry.state}")
    click.echo(f"  server       {found.server}")
    size = _size(db.size_bytes) if db else "not there"
    click.echo(f"  database     {found.entry.database} ({size})")
    if db is not None:
        click.echo(f"  owner        {db.owner}")
        click.echo(f"  sessions     {db.connections}")
        current = db.login_roles[-1] if db.login_roles else "-"
        click.echo(f"  roles        {', '.join(db.login_roles) or '-'} (current: {current})")
    click.echo(f"  asked for by {', '.join(found.entry.instances) or 'no instance'}")
    for s in found.secrets:
        click.echo(
            f"  secret       {s.name}  changed {addons.stamp(s.changed)}  version {s.version}"
        )
    for b in found.backups:
        click.echo(f"  backup       {b.name}  {_size(b.bytes)}")


@addon.command("psql", context_settings={"ignore_unknown_options": True})
@click.argument("psql_args", nargs=-1, type=click.UNPROCESSED)
@_common(as_json=False)
def psql(
    ctx: click.Context, /, service: str, cluster: str | None, psql_args: tuple[str, ...], **_: Any
) -> None:
    """psql on the service's database as the service (its credentials in psql's environment);
    arguments after -- go to psql."""
    system = _system(ctx, cluster)
    server = _server(system)
    env = {k: v for k, v in os.environ.items() if not k.startswith("PG")}
    env.update(addons.psql_env(system, server, service))
    env["PGCONNECT_TIMEOUT"] = "10"  # a server that does not answer is an error, not a hang
    binary = Path(system.addons.postgres.bin_dir) / "psql"
    program = str(binary) if binary.is_file() else shutil.which("psql")
    if not program:
        raise NotFoundError("psql is not installed (Debian: postgresql-client-15)")
    sys.stdout.flush()
    os.execve(program, [program, *psql_args], env)  # psql's exit status is ours


@addon.command("backup")
@click.option(
    "--keep-days",
    type=click.IntRange(1),
    default=None,
    help="remove this service's backups older than this (default: "
    "addons.postgres.backup_keep_days, 7)",
)
@_common()
def backup(
    ctx: click.Context,
    /,
    service: str,
    cluster: str | None,
    keep_days: int | None,
    as_json: bool,
    **_: Any,
) -> None:
    """pg_dump of the service's database into <state_dir>/addons/postgres/<service>/."""
    system = _system(ctx, cluster)
    with _events(system) as events:
        done = addons.backup(system, _server(system), events, service, keep_days)
    if as_json:
        print_json({"service": service, "cluster": system.local_cluster, **done.to_json()})
        return
    click.echo(f"{service}: backup {done.path} ({_size(done.bytes)})")


@addon.command("restore")
@click.option(
    "--backup",
    "-b",
    "name",
    default=None,
    help="the backup's file name (or a unique start of it); default: the newest",
)
@click.option("--yes", "-y", is_flag=True, help="do not ask")
@_common()
def restore(
    ctx: click.Context,
    /,
    service: str,
    cluster: str | None,
    name: str | None,
    yes: bool,
    as_json: bool,
    **_: Any,
) -> None:
    """Replace the objects of the service's database with a backup's (asks unless --yes)."""
    system = _system(ctx, cluster)
    chosen = addons.choose_backup(addons.backups(system, service), name)
    server = _server(system)
    if not yes:
        if not sys.stdin.isatty():
            raise UsageError(
                f"restore replaces the contents of {service}'s database with "
                f"{chosen.name}: add --yes"
            )
        click.confirm(
            f"replace the contents of {service}'s database with {chosen.name} "
            f"({addons.stamp(chosen.time)})?",
            abort=True,
            err=True,
        )
    with _events(system) as events:
        addons.restore(system, server, events, service, chosen)
    if as_json:
        print_json({"service": service, "cluster": system.local_cluster, "restored": chosen.name})
        return
    click.echo(f"{service}: database restored from {chosen.name}")


@addon.command("rotate-credentials")
@_common()
def rotate_credentials(
    ctx: click.Context, /, service: str, cluster: str | None, as_json: bool, **_: Any
) -> None:
    """A new role and password for the service: its instances bounce onto them, and deployd
    drops the old role once no task or session uses it."""
    system = _system(ctx, cluster)
    with _events(system) as events:
        creds, old = addons.rotate(system, _server(system), events, service)
    if as_json:
        print_json(
            {
                "service": service,
                "cluster": system.local_cluster,
                "database": creds.database,
                "role": creds.user,
                "old_roles": list(old),
            }
        )
        return
    click.echo(
        f"{service}: new role {creds.user} for database {creds.database}; its instances "
        "bounce onto it"
    )
    if old:
        click.echo(f"deployd drops {', '.join(old)} once no task or session uses it")


@addon.command("destroy")
@click.option("--yes", "-y", is_flag=True, help="really drop the database")
@_common()
def destroy(
    ctx: click.Context, /, service: str, cluster: str | None, yes: bool, as_json: bool, **_: Any
) -> None:
    """Drop the service's database and roles and remove its credentials (only with --yes;
    refused while its config asks for the add-on; backups stay)."""
    from paasport.config.tree import load_tree

    system = _system(ctx, cluster)
    folder = addons.addon_dir(system, service)
    if not yes:
        raise UsageError(
            f"destroy drops {service}'s database and its roles for good (backups "
            f"stay in {folder}): add --yes"
        )
    server = _server(system)
    services = [service] if (system.soa_dir / service).is_dir() else []
    tree = load_tree(system.soa_dir, services, system=system)
    with _events(system) as events:
        removed = addons.destroy(system, server, events, tree, service)
    if as_json:
        print_json(
            {
                "service": service,
                "cluster": system.local_cluster,
                "destroyed": True,
                "secrets_removed": removed,
                "backups": str(folder),
            }
        )
        return
    click.echo(
        f"{service}: database and roles dropped, {len(removed)} credential secret(s) "
        f"removed; backups stay in {folder}"
    )
