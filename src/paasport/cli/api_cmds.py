"""``paasport api`` (the HTTP API in the foreground) and ``paasport token create|list|revoke``.

The app is ``paasport.api.app.create_app``; tokens live in ``platform.tokens`` (only their
hashes are kept). docs/api.md has the endpoints.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING

import click

from paasport.cli.options import (
    config_option,
    json_option,
    print_json,
    soa_dir_option,
    state_dir_option,
    verbose_logging_option,
)
from paasport.config.system import SystemConfig
from paasport.platform.build import load_settings
from paasport.platform.tokens import TokenStore

if TYPE_CHECKING:
    from paasport.api.server import ApiServer

listen_option = click.option(
    "--listen",
    default=None,
    metavar="HOST:PORT",
    help="where the API listens (default: api.listen in paasport.yaml, 127.0.0.1:5054)",
)


def start_api(system: SystemConfig, listen: str | None, stopping: threading.Event) -> ApiServer:
    """The API of ``system`` served in a thread (``paasport up`` calls this too)."""
    from paasport.api.app import create_app
    from paasport.api.server import serve

    return serve(create_app(system, stop=stopping), listen or system.api.listen, stopping)


@click.command("api")
@soa_dir_option
@config_option
@state_dir_option
@listen_option
@verbose_logging_option
def api(
    soa_dir: Path | None,
    config_file: Path | None,
    state_dir: Path | None,
    listen: str | None,
    verbose: bool,
) -> None:
    """Serve this cluster's HTTP API and dashboard in the foreground (reads, deploy verbs,
    event stream, web pages)."""
    from paasport.cli.up import setup_logging, stop_on_signals

    setup_logging(verbose)
    system = load_settings(config_file, soa_dir, state_dir)
    stop = threading.Event()
    stop_on_signals(stop, "stopping the API")
    server = start_api(system, listen, threading.Event())
    click.echo(f"paasport API of cluster {system.local_cluster} on {server.url}", err=True)
    try:
        server.wait(stop)
    finally:
        server.close()


@click.group("token")
def token() -> None:
    """API tokens: made once and shown once; only their hashes are kept in the state dir."""


@token.command("create")
@click.option("--team", required=True, help="the team whose services the token may change")
@click.option("--admin", is_flag=True, help="may change every service")
@click.option("--name", default=None, help="a name for the token (default: TEAM-N)")
@config_option
@state_dir_option
@json_option
def token_create(
    team: str,
    admin: bool,
    name: str | None,
    config_file: Path | None,
    state_dir: Path | None,
    as_json: bool,
) -> None:
    """Make a token and print it once (it cannot be shown again)."""
    system = load_settings(config_file, None, state_dir)
    secret, record = TokenStore(system.state_dir).create(
        team, admin=admin, name=name, now=time.time()
    )
    if as_json:
        print_json({**record.to_json(), "token": secret})
        return
    kind = "admin token" if admin else f"token of team {team}"
    click.echo(f"created {kind} {record.name}; it is shown only now:", err=True)
    click.echo(secret)


@token.command("list")
@config_option
@state_dir_option
@json_option
def token_list(config_file: Path | None, state_dir: Path | None, as_json: bool) -> None:
    """The tokens (names, teams, when made; never the tokens)."""
    system = load_settings(config_file, None, state_dir)
    records = TokenStore(system.state_dir).load()
    if as_json:
        print_json([r.to_json() for r in records])
        return
    if not records:
        click.echo("no tokens (paasport token create --team TEAM)")
    for r in records:
        made = time.strftime("%Y-%m-%d %H:%M", time.localtime(r.created))
        click.echo(f"{r.name:<24} team {r.team:<16} {'admin' if r.admin else '-':<6} {made}")


@token.command("revoke")
@click.argument("name")
@config_option
@state_dir_option
def token_revoke(name: str, config_file: Path | None, state_dir: Path | None) -> None:
    """Revoke the token NAME: the API refuses it from the next request on."""
    system = load_settings(config_file, None, state_dir)
    record = TokenStore(system.state_dir).revoke(name)
    click.echo(f"revoked {record.name} (team {record.team})")
