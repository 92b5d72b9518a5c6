"""``paasport secret add|update|list|rm``: the secrets a service's env names as ``SECRET(name)``.

The value is read from standard input (asked for without echo on a terminal) or
``--value-file``, never from the command line, where shell history and ``ps`` would keep it; it
is stored encrypted with the cluster's key (``config.secrets.SecretStore``). ``list`` shows names
and when they changed, never values. A changed secret bounces the instances that use it.
"""

from __future__ import annotations

import sys
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

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
from paasport.config.addons import is_reserved_secret
from paasport.config.secrets import SecretStore, check_name
from paasport.config.system import SystemConfig
from paasport.errors import ConflictError, NotFoundError, UsageError


def _not_reserved(name: str) -> None:
    if is_reserved_secret(name):
        raise UsageError(f"secret {name!r}: names starting with addon- are the add-ons' own "
                         "(paasport addon rotate-credentials, paasport addon destroy)")  # fmt: skip


def _store(ctx: click.Context, service: str, cluster: str | None) -> SecretStore:
    system: SystemConfig = settings_from(ctx)
    where = cluster or system.local_cluster
    if where not in system.clusters:
        known = ", ".join(sorted(system.clusters))
        raise UsageError(f"--cluster {where}: no such cluster in paasport.yaml ({known})")
    if where != system.local_cluster:
        raise UsageError(
            f"the secrets of cluster {where} are kept on its hosts (their state dir): run this "
            f"on one of them; this host runs cluster {system.local_cluster}"
        )
    from paasport.view.catalog import load_catalog_tree

    load_catalog_tree(system, service)  # a typo is "no such service", not a new secret
    return SecretStore(system.state_dir, where)


def _value(value_file: Path | None, name: str) -> bytes:
    if value_file is not None:
        try:
            data = value_file.read_bytes()
        except OSError as err:
            raise UsageError(f"--value-file {value_file}: {err.strerror or err}") from None
    elif sys.stdin.isatty():
        data = click.prompt(
            f"value of {name}", hide_input=True, confirmation_prompt=True, err=True
        ).encode()
    else:
        data = sys.stdin.buffer.read()
    return data[:-1] if data.endswith(b"\n") else data  # one trailing newline: the file's end


def _common(f: Any) -> Any:
    for option in (
        click.pass_context,
        json_option,
        state_dir_option,
        config_option,
        soa_dir_option,
        click.option(
            "--cluster", "-c", "cluster", default=None, help="the cluster (default: this host's)"
        ),
        service_option(required=True),
    ):
        f = option(f)
    return f


@click.group("secret")
def secret() -> None:
    """Secrets for SECRET(name) env values: stored encrypted, shown never."""


def _put(ctx: click.Context, service: str, name: str, cluster: str | None,
         value_file: Path | None, as_json: bool, *, update: bool) -> None:  # fmt: skip
    import time

    check_name(name)
    _not_reserved(name)
    store = _store(ctx, service, cluster)
    exists = any(e.name == name for e in store.entries(service))
    if update and not exists:
        raise NotFoundError(f"{service}: no secret {name!r} (paasport secret add)")
    if not update and exists:
        raise ConflictError(f"{service}: secret {name!r} exists (paasport secret update)")
    entry, _ = store.put(service, name, _value(value_file, name), time.time())
    if as_json:
        print_json({"service": service, "cluster": store.cluster, **entry.to_json()})
        return
    verb = "updated" if update else "added"
    click.echo(f"{service}: secret {name} {verb} on cluster {store.cluster} (version "
               f"{entry.version}); the instances that use it bounce")  # fmt: skip


def _put_command(verb: str, update: bool, doc: str) -> click.Command:
    @click.option("--name", "-n", "name", required=True,
                  help="the secret's name, as in SECRET(name)")  # fmt: skip
    @click.option("--value-file", type=click.Path(path_type=Path, dir_okay=False), default=None,
                  help="read the value from this file (else standard input)")  # fmt: skip
    @_common
    def command(ctx: click.Context, /, service: str, name: str, cluster: str | None,
                value_file: Path | None, as_json: bool, **_: Any) -> None:  # fmt: skip
        _put(ctx, service, name, cluster, value_file, as_json, update=update)

    command.__doc__ = doc
    return secret.command(verb, help=doc)(command)


add = _put_command("add", False, "Add secret NAME of SERVICE; its value from standard input or "
                   "--value-file.")  # fmt: skip
update = _put_command("update", True, "Give secret NAME a new value: the instances that use it "
                      "bounce.")  # fmt: skip


@secret.command("list")
@_common
def list_secrets(ctx: click.Context, /, service: str, cluster: str | None, as_json: bool,
                 **_: Any) -> None:  # fmt: skip
    """The secrets of SERVICE: names, versions and when they changed (never values)."""
    store = _store(ctx, service, cluster)
    entries = store.entries(service)
    if as_json:
        print_json([{"service": service, "cluster": store.cluster, **e.to_json()}
                    for e in entries])  # fmt: skip
        return
    if not entries:
        click.echo(f"{service}: no secrets on cluster {store.cluster}")
        return
    for e in entries:
        when = datetime.fromtimestamp(e.changed, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")
        click.echo(f"{e.name}  changed {when}  version {e.version}")


@secret.command("rm")
@click.option("--name", "-n", "name", required=True, help="the secret's name")
@_common
def remove(ctx: click.Context, /, service: str, name: str, cluster: str | None, as_json: bool,
           **_: Any) -> None:  # fmt: skip
    """Remove secret NAME (instances that still use it fail their config check)."""
    _not_reserved(name)
    store = _store(ctx, service, cluster)
    gone = store.remove(service, name)
    if as_json:
        print_json({"service": service, "cluster": store.cluster, "removed": gone.name})
    else:
        click.echo(f"{service}: secret {name} removed from cluster {store.cluster}")
