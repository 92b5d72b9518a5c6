"""Shared click options of every verb, so flags match everywhere, and ``settings_from``.

Every ``paasport.cli`` verb module decorates its command with these; ``settings_from`` turns the
``--config``/``--soa-dir`` values into the one frozen SystemConfig the verb passes down.
Parameter names the decorated function receives: ``soa_dir``, ``config_file``, ``as_json``,
``service``, ``cluster``, ``instance``, ``deploy_group`` (Path | None, bool or str | None).
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import click

from paasport.config.system import SystemConfig, load_system_config

F = TypeVar("F", bound=Callable[..., Any])

soa_dir_option: Callable[[F], F] = click.option(
    "--soa-dir",
    "-d",
    "soa_dir",
    type=click.Path(path_type=Path, file_okay=False),
    envvar="PAASPORT_SOA_DIR",
    default=None,
    help="soa-configs directory [env PAASPORT_SOA_DIR; else the system config's soa_dir]",
)

config_option: Callable[[F], F] = click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="PAASPORT_CONFIG",
    default=None,
    help="system config file [env PAASPORT_CONFIG; default /etc/paasport/paasport.yaml]",
)

json_option: Callable[[F], F] = click.option(
    "--json", "as_json", is_flag=True, default=False, help="print machine-readable JSON"
)


def service_option(required: bool = False) -> Callable[[F], F]:
    # no explicit default: click 8.5 treats `default=None` as a value for a required option
    return click.option("--service", "-s", "service", required=required, help="service name")


cluster_option: Callable[[F], F] = click.option(
    "--cluster", "-c", "cluster", default=None, help="cluster name"
)

instance_option: Callable[[F], F] = click.option(
    "--instance", "-i", "instance", default=None, help="instance name"
)

deploy_group_option: Callable[[F], F] = click.option(
    "--deploy-group", "-l", "deploy_group", default=None, help="deploy group, e.g. prod.canary"
)


def settings_from(ctx_or_args: click.Context | Mapping[str, Any]) -> SystemConfig:
    """The SystemConfig for this invocation, from ``--config``/``--soa-dir`` (or their env vars).

    Accepts the click context (its params, then its parents') or a mapping of the params.
    """
    params: dict[str, Any] = {}
    if isinstance(ctx_or_args, click.Context):
        ctx: click.Context | None = ctx_or_args
        while ctx is not None:
            for key, value in ctx.params.items():
                params.setdefault(key, value)
            ctx = ctx.parent
    else:
        params = dict(ctx_or_args)
    soa_dir = params.get("soa_dir")
    config_file = params.get("config_file")
    return load_system_config(
        Path(config_file) if config_file is not None else None,
        soa_dir=Path(soa_dir) if soa_dir is not None else None,
    )


def print_json(value: object) -> None:
    """Machine JSON on stdout: sorted keys, no colour, one trailing newline."""
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")
