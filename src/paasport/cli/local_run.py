"""``paasport local-run``: one task of an instance on the local Docker engine, exactly as its
cluster runs it (``platform.local_run``); shows its health check as it goes and the URL to try.

``-d`` leaves it running; ``--healthcheck-only`` exits 0 or 1 on the health check's first
verdict (for CI) and removes the task; otherwise its output follows until Ctrl-C, which stops
and removes it.
"""

from __future__ import annotations

import threading
import time
from pathlib import Path
from typing import Any

import click

from paasport.cli.options import (
    config_option,
    settings_from,
    soa_dir_long_option,
    state_dir_option,
)
from paasport.errors import PaasportError, UsageError


@click.command("local-run")
@click.option("--service", "-s", "service", required=True, help="service name")
@click.option("--cluster", "-c", "cluster", required=True, help="run it as this cluster does")
@click.option("--instance", "-i", "instance", required=True, help="instance name")
@click.option("--build", is_flag=True, help="build the Dockerfile of --repo-dir as it is now")
@click.option(
    "--repo-dir",
    type=click.Path(path_type=Path, file_okay=False, exists=True),
    default=Path("."),
    show_default=True,
    help="the service's working tree (--build)",
)
@click.option("--image", default=None, help="run this image")
@click.option("--sha", default=None, help="run the image of this git sha (cook-image made it)")
@click.option("--cmd", "cmd", default=None, help="run this command instead of the instance's")
@click.option(
    "--port",
    "-p",
    "host_port",
    type=click.IntRange(1, 65535),
    default=None,
    help="publish on this port of 127.0.0.1 (default: any free one)",
)
@click.option("--detach", "-d", is_flag=True, help="leave it running and exit")
@click.option(
    "--healthcheck-only",
    is_flag=True,
    help="exit 0 or 1 on the health check's first verdict, then remove it",
)
@soa_dir_long_option
@config_option
@state_dir_option
@click.pass_context
def local_run(
    ctx: click.Context,
    /,
    service: str,
    cluster: str,
    instance: str,
    build: bool,
    repo_dir: Path,
    image: str | None,
    sha: str | None,
    cmd: str | None,
    host_port: int | None,
    detach: bool,
    healthcheck_only: bool,
    **_options: Any,
) -> int:  # fmt: skip
    """Run one task of SERVICE.INSTANCE here as CLUSTER runs it: its merged config, env (the
    PAASTA_* variables and secrets), resources, command, volumes, port and health check."""
    from paasport.deploy.images import build_working_tree
    from paasport.engine.docker import DockerEngine
    from paasport.platform.local_run import plan_local_run

    if sum(map(bool, (build, image, sha))) > 1:
        raise UsageError("give at most one of --build, --image and --sha")
    if detach and healthcheck_only:
        raise UsageError("--detach and --healthcheck-only do not go together")
    system = settings_from(ctx)
    built = None
    if build:
        folder = repo_dir.resolve()
        say(f"building {folder} as it is, uncommitted files included (cook-image builds commits)")
        built = (build_working_tree(folder, service, progress=say,
                                    base_url=system.local.docker_host), folder)  # fmt: skip
    run = plan_local_run(system, service, cluster, instance, image=image, sha=sha,
                         built=built, cmd=cmd)  # fmt: skip
    engine = DockerEngine(system.local_cluster, base_url=system.local.docker_host)
    try:
        return _run(system, engine, run, host_port, detach, healthcheck_only)
    finally:
        engine.close()


def say(line: str) -> None:
    click.echo(line, err=True)


def _run(system: Any, engine: Any, run: Any, host_port: int | None, detach: bool,
         healthcheck_only: bool) -> int:  # fmt: skip
    from paasport.platform.local_run import check_once, start, verdict

    spec = run.spec
    say(f"{spec.service}.{spec.instance} as cluster {spec.cluster} runs it: {spec.image} "
        f"({run.source})")  # fmt: skip
    cid, name, port = start(system, engine, run, host_port)
    url = f"http://127.0.0.1:{port}{run.check.uri if run.check.mode == 'http' else '/'}"
    say(f"started {name} ({cid[:12]}), port {spec.container_port} on 127.0.0.1:{port}")
    if detach:
        click.echo(cid)
        say(f"try {url}; stop it with: docker rm -f {name}")
        return 0
    removed = False

    def remove() -> None:
        nonlocal removed
        if not removed:
            removed = True
            engine.remove_standalone(cid)
            say(f"removed {name}")

    follower: threading.Thread | None = None
    try:
        if not healthcheck_only:
            follower = threading.Thread(target=_follow, args=(engine, cid), daemon=True)
            follower.start()
        started = time.monotonic()
        interval = min(max(run.check.interval_seconds, 0.5), 2.0)
        while True:
            result = check_once(engine, cid, port, run)
            said = verdict(result, time.monotonic() - started, run.check)
            if said is True:
                say(f"healthy: {result.detail}; try {url}")
                break
            if said is False:
                say(f"health check failed: {result.detail}")
                if healthcheck_only:
                    return 1
                break
            say(f"health check: not yet ({result.detail})")
            time.sleep(interval)
        if healthcheck_only:
            return 0
        while True:  # until Ctrl-C or the task exits
            state, code = engine.standalone_state(cid)
            if state in ("exited", "dead"):
                say(f"{name} exited with code {code}")
                return 1 if code else 0
            time.sleep(0.5)
    except KeyboardInterrupt:
        say("stopping")
        return 0
    except PaasportError:
        raise
    finally:
        remove()


def _follow(engine: Any, cid: str) -> None:
    try:
        for line in engine.standalone_logs(cid, follow=True):
            click.echo(line)
    except PaasportError:
        return  # removed under us: the output ends
