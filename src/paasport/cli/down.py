"""``paasport down``: stop and remove every task paasport runs on this host (or one service's).

Lists the local engine's app versions (one call) and deletes each; asks first unless --yes.
Without -s it also stops this host's HAProxy (which ``up`` leaves running so traffic outlives
paasport restarts). A running ``paasport up`` would start them again: stop it first.
"""

from __future__ import annotations

from pathlib import Path

import click

from paasport.cli.options import config_option, service_option, state_dir_option
from paasport.config.system import SystemConfig, load_system_config


@click.command("down")
@service_option()
@config_option
@state_dir_option
@click.option("--yes", "-y", is_flag=True, help="do not ask for confirmation")
def down(service: str | None, config_file: Path | None, state_dir: Path | None, yes: bool) -> None:
    """Stop and remove what paasport runs on this host (every service, or -s SERVICE)."""
    from paasport.engine.factory import engine_for

    system = load_system_config(config_file, state_dir=state_dir)
    engine = engine_for(system.local)
    versions = list(engine.list_app_versions(service))
    if not versions:
        click.echo(f"nothing runs for {service or 'paasport'} on cluster {system.local_cluster}")
        if service is None:
            _stop_proxy(system)
        return
    tasks = sum(len(av.tasks) for av in versions)
    names = sorted({f"{av.service}.{av.instance}" for av in versions})
    click.echo(f"{tasks} task(s) of {len(names)} instance(s): {', '.join(names)}")
    if not yes:
        click.confirm("stop and remove them?", abort=True)
    for av in versions:
        engine.delete_app_version(av.service, av.instance, av.config_hash)
        click.echo(f"removed {av.service}.{av.instance} config {av.config_hash[:8]}")
    if service is None:
        _stop_proxy(system)
    click.echo("done (a running `paasport up` starts them again: stop it first)")


def _stop_proxy(system: SystemConfig) -> None:
    from paasport.discovery.wiring import proxy_for

    proxy = proxy_for(system)
    pid = proxy.master_pid()
    if pid is not None and proxy.running():
        proxy.stop()
        click.echo(f"stopped this host's HAProxy (pid {pid})")
