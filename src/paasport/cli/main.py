"""The ``paasport`` command: a click group whose verbs load lazily, and the one place exits happen.

Each verb group lives in its own module under ``paasport.cli``; ``COMMANDS`` maps a verb to
``module:attribute`` so ``paasport validate`` never imports the Docker SDK, httpx or kazoo.
PaasportError subclasses become one readable line on stderr and their ``exit_code``.
"""

from __future__ import annotations

import importlib
import sys
from typing import NoReturn

import click

from paasport.errors import PaasportError

# verb -> "module:attribute"; keep sorted, one line per verb.
COMMANDS: dict[str, str] = {
    "addon": "paasport.cli.addon_cmds:addon",
    "agent": "paasport.cli.agent:agent",
    "api": "paasport.cli.api_cmds:api",
    "autoscale-override": "paasport.cli.autoscale_cmds:autoscale_override",
    "cook-image": "paasport.cli.deploy_cmds:cook_image",
    "deploy-history": "paasport.cli.deploy_cmds:deploy_history",
    "deployd": "paasport.cli.up:deployd",
    "diff": "paasport.cli.diff:diff",
    "down": "paasport.cli.down:down",
    "events": "paasport.cli.events:events",
    "generate-deployments": "paasport.cli.deploy_cmds:generate_deployments",
    "get-latest-deployment": "paasport.cli.deploy_cmds:get_latest_deployment",
    "hosts": "paasport.cli.hosts:hosts",
    "info": "paasport.cli.config_cmds:info",
    "job-run-now": "paasport.cli.jobs_cmds:job_run_now",
    "job-runs": "paasport.cli.jobs_cmds:job_runs",
    "jobs": "paasport.cli.jobs_cmds:jobs",
    "list": "paasport.cli.config_cmds:list_services",
    "list-clusters": "paasport.cli.config_cmds:list_clusters",
    "list-hosts": "paasport.cli.hosts:hosts",
    "local-run": "paasport.cli.local_run:local_run",
    "logs": "paasport.cli.logs:logs",
    "mark-for-deployment": "paasport.cli.deploy_cmds:mark_for_deployment",
    "mesh-status": "paasport.cli.mesh_status:mesh_status",
    "monitor": "paasport.cli.monitor:monitor",
    "push-to-registry": "paasport.cli.deploy_cmds:push_to_registry",
    "restart": "paasport.cli.deploy_cmds:restart",
    "rollback": "paasport.cli.deploy_cmds:rollback",
    "run": "paasport.cli.run_cmd:run",
    "schema": "paasport.cli.config_cmds:schema",
    "secret": "paasport.cli.secret_cmds:secret",
    "start": "paasport.cli.deploy_cmds:start",
    "status": "paasport.cli.status:status",
    "stop": "paasport.cli.deploy_cmds:stop",
    "token": "paasport.cli.api_cmds:token",
    "up": "paasport.cli.up:up",
    "validate": "paasport.cli.config_cmds:validate",
    "wait-for-deployment": "paasport.cli.wait:wait_for_deployment",
}


class LazyGroup(click.Group):
    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(set(super().list_commands(ctx)) | set(COMMANDS))

    def get_command(self, ctx: click.Context, cmd_name: str) -> click.Command | None:
        if cmd_name in COMMANDS:
            module_name, attr = COMMANDS[cmd_name].split(":")
            command = getattr(importlib.import_module(module_name), attr)
            assert isinstance(command, click.Command)
            return command
        return super().get_command(ctx, cmd_name)


@click.group(cls=LazyGroup, context_settings={"help_option_names": ["-h", "--help"]})
@click.version_option(package_name="paasport")
def cli() -> None:
    """paasport: declarative Docker services in the spirit of PaaSTA."""


def main(argv: list[str] | None = None) -> NoReturn:
    try:
        rv = cli.main(args=argv, prog_name="paasport", standalone_mode=False)
    except PaasportError as err:
        click.echo(f"error: {err}", err=True)
        sys.exit(err.exit_code)
    except click.exceptions.Abort:
        click.echo("aborted", err=True)
        sys.exit(130)
    except click.ClickException as err:
        err.show()
        sys.exit(err.exit_code)
    except KeyboardInterrupt:
        sys.exit(130)
    sys.exit(rv if isinstance(rv, int) else 0)


if __name__ == "__main__":
    main()
