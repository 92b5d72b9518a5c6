"""Shared click options of every verb, so flags match everywhere, and ``settings_from``.

Every ``paasport.cli`` verb module decorates its command with these; ``settings_from`` turns the
``--config``/``--soa-dir``/``--state-dir`` values into the one frozen SystemConfig the verb passes
down. Parameter names the decorated function receives: ``soa_dir``, ``config_file``,
``state_dir``, ``as_json``, ``service``, ``cluster``, ``instance``, ``deploy_group``,
``metrics_listen``, ``verbose`` (Path | None, bool or str | None).
"""

from __future__ import annotations

import json
import sys
import threading
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, TypeVar

import click

from paasport.config.system import SystemConfig, load_system_config
from paasport.errors import PaasportError

F = TypeVar("F", bound=Callable[..., Any])
T = TypeVar("T")


def _soa_dir(*flags: str) -> Callable[[F], F]:
    return click.option(
        *flags,
        "soa_dir",
        type=click.Path(path_type=Path, file_okay=False),
        envvar="PAASPORT_SOA_DIR",
        default=None,
        help="soa-configs directory [env PAASPORT_SOA_DIR; else the system config's soa_dir]",
    )


soa_dir_option: Callable[[F], F] = _soa_dir("--soa-dir", "-d")
soa_dir_long_option: Callable[[F], F] = _soa_dir("--soa-dir")  # local-run's -d is --detach


def _explicit_config_exists(
    ctx: click.Context, param: click.Parameter, value: Path | None
) -> Path | None:
    """A --config typed on the command line must exist (a typo must not mean "defaults");
    ``up`` is the exception, it writes the default there. $PAASPORT_CONFIG or the default path
    may be missing: then the built-in one-host defaults apply."""
    source = ctx.get_parameter_source(param.name or "")
    if (
        value is not None
        and source is click.core.ParameterSource.COMMANDLINE
        and ctx.info_name != "up"
        and not value.exists()
    ):
        raise click.BadParameter(
            f"{value} does not exist (`paasport up` writes a default one; without --config "
            "the one-host defaults apply)",
            ctx=ctx,
            param=param,
        )
    return value


config_option: Callable[[F], F] = click.option(
    "--config",
    "config_file",
    type=click.Path(path_type=Path, dir_okay=False),
    envvar="PAASPORT_CONFIG",
    default=None,
    callback=_explicit_config_exists,
    help="system config file [env PAASPORT_CONFIG; default /etc/paasport/paasport.yaml]",
)

state_dir_option: Callable[[F], F] = click.option(
    "--state-dir",
    "state_dir",
    type=click.Path(path_type=Path, file_okay=False),
    envvar="PAASPORT_STATE_DIR",
    default=None,
    help="where events.sqlite and discovery state live [env PAASPORT_STATE_DIR]",
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

token_option: Callable[[F], F] = click.option(
    "--token",
    "token",
    envvar="PAASPORT_API_TOKEN",
    default=None,
    help="API token sent to clusters' APIs (env PAASPORT_API_TOKEN)",
)

instance_option: Callable[[F], F] = click.option(
    "--instance", "-i", "instance", default=None, help="instance name"
)

deploy_group_option: Callable[[F], F] = click.option(
    "--deploy-group", "-l", "deploy_group", default=None, help="deploy group, e.g. prod.canary"
)


def metrics_listen_option(default: str = "127.0.0.1:9464") -> Callable[[F], F]:
    """``--metrics-listen`` of the long-running verbs (``up``, ``monitor``, ``agent``)."""
    return click.option(
        "--metrics-listen",
        "metrics_listen",
        default=default,
        show_default=bool(default),
        help="serve Prometheus /metrics on HOST:PORT ('' to not serve)",
    )


verbose_logging_option: Callable[[F], F] = click.option(
    "-v", "--verbose", "verbose", is_flag=True, help="debug logging"
)


def settings_from(ctx_or_args: click.Context | Mapping[str, Any]) -> SystemConfig:
    """The SystemConfig for this invocation, from ``--config``/``--soa-dir``/``--state-dir`` (or
    their env vars), then the system config file.

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

    def path(key: str) -> Path | None:
        value = params.get(key)
        return Path(value) if value is not None else None

    return load_system_config(
        path("config_file"), soa_dir=path("soa_dir"), state_dir=path("state_dir")
    )


def print_json(value: object) -> None:
    """Machine JSON on stdout: sorted keys, no colour, one trailing newline."""
    sys.stdout.write(json.dumps(value, indent=2, sort_keys=True, default=str) + "\n")


def print_follows(
    sources: Mapping[str, Callable[[threading.Event], Iterator[T]]],
    show: Callable[[str, T], None],
) -> int:
    """``show(cluster, item)`` for what every cluster's follower gives, as it comes, until
    Ctrl-C (``-f`` across clusters); a cluster that cannot be followed is its one red line and
    the exit status 1."""
    from paasport.view.remote import cluster_line, merge_follows

    failed: list[str] = []

    def fail(name: str, err: PaasportError) -> None:
        failed.append(name)
        click.secho(cluster_line(name, err), fg="red", err=True)

    stop = threading.Event()
    try:
        for name, item in merge_follows(sources, stop, failed=fail):
            show(name, item)
    except KeyboardInterrupt:
        stop.set()
    return 1 if failed else 0
