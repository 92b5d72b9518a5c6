"""``paasport run``: a one-off task with the app's current image and config (``platform.runs``),
on the cluster's engine or through its API; streams its output and exits with its exit code.

``-t`` attaches a terminal (``docker start -ai`` on this host's engine, or the Swarm manager's
node); ``--detach`` prints the run id and leaves it to deployd, which keeps its output and
records how it ended.
"""

from __future__ import annotations

import getpass
import shutil
import signal
import socket
import subprocess
import threading
from typing import Any

import click

from paasport.cli.options import (
    config_option,
    settings_from,
    soa_dir_long_option,
    state_dir_option,
    token_option,
)
from paasport.errors import PaasportError, UsageError

RUN_PATH = "/v1/services/{service}/runs"


def who() -> str:
    try:
        return f"{getpass.getuser()}@{socket.gethostname()}"
    except (KeyError, OSError):
        return "someone"


def say(line: str) -> None:
    click.echo(line, err=True)


@click.command("run")
@click.option("--service", "-s", "service", required=True, help="service name")
@click.option("--cluster", "-c", "cluster", default=None,
              help="the cluster to run it on [this host's]")  # fmt: skip
@click.option("--instance", "-i", "adhoc", default=None,
              help="an adhoc instance (adhoc-<cluster>.yaml)")  # fmt: skip
@click.option("--from", "like", default=None,
              help="run with a long-running instance's config instead")  # fmt: skip
@click.option("--cmd", "cmd", default=None, help="run this command instead of the instance's")
@click.option("--tty", "-t", is_flag=True, help="interactive: a terminal, stdin attached")
@click.option("--detach", is_flag=True, help="print the run id and leave it running")
@token_option
@soa_dir_long_option
@config_option
@state_dir_option
@click.pass_context
def run(
    ctx: click.Context,
    /,
    service: str,
    cluster: str | None,
    adhoc: str | None,
    like: str | None,
    cmd: str | None,
    tty: bool,
    detach: bool,
    token: str | None,
    **_options: Any,
) -> int:  # fmt: skip
    """Run a one-off task of SERVICE on CLUSTER with its current image and config: an adhoc
    instance (-i) or a long-running instance's config (--from), its command or --cmd. Its
    output follows; the exit code is the task's. It is listed in status and the event log
    while it runs, never counted as one of the instance's tasks, and removed afterwards."""
    from paasport.platform import mutations

    if tty and detach:
        raise UsageError("--tty and --detach do not go together")
    system = settings_from(ctx)
    cluster = cluster or system.local_cluster
    remote = mutations.api_cluster_of(system, cluster)
    if remote is not None:
        if tty:
            raise UsageError(f"cluster {cluster} is run through its API, which has no terminal: "
                             "drop -t, or run it on one of its hosts")  # fmt: skip
        return _remote(remote, service, adhoc, like, cmd, detach, token)
    if cluster != system.local_cluster and cluster not in system.clusters:
        known = ", ".join(sorted(system.clusters)) or "none"
        raise UsageError(f"unknown cluster {cluster!r} (paasport.yaml names: {known})")
    if cluster != system.local_cluster:
        raise UsageError(
            f"cluster {cluster} is not this host's ({system.local_cluster}) and "
            f"names no api_url in paasport.yaml: run it on one of its hosts"
        )
    return _here(system, service, cluster, adhoc, like, cmd, tty, detach)


def _here(system: Any, service: str, cluster: str, adhoc: str | None, like: str | None,
          cmd: str | None, tty: bool, detach: bool) -> int:  # fmt: skip
    from paasport.config.tree import load_tree
    from paasport.engine.factory import engine_for
    from paasport.platform import runs

    tree = load_tree(system.soa_dir, [service], system=system)
    plan = runs.plan_run(system, tree, service, cluster, adhoc=adhoc, like=like, cmd=cmd)
    engine = engine_for(system.clusters[cluster])
    try:
        say(f"{service}.{plan.spec.instance} on cluster {cluster}: {plan.spec.image} "
            f"({plan.source})")  # fmt: skip
        if tty:
            return _interactive(system, engine, plan)
        run = runs.start_run(system, engine, plan.spec, who())
        say(f"run {run.run_id} started ({run.task_id[:12]})")
        if detach:
            click.echo(run.run_id)
            say(f"it runs on; `paasport status -s {service}` lists it, and deployd keeps its "
                "output and exit code when it ends")  # fmt: skip
            return 0
        return _attached(system, engine, run)
    finally:
        engine.close()


def _attached(system: Any, engine: Any, run: Any) -> int:
    from paasport.platform import runs

    stop = threading.Event()
    ended = run
    try:
        for item in runs.output_then_exit(engine, run, stop):
            if isinstance(item, str):
                click.echo(item)
            else:
                ended = item
    except KeyboardInterrupt:
        stop.set()
        say(f"stopping run {run.run_id}")
        runs.finish_run(system, engine, run)
        return 130
    if not ended.done:  # finished by another (deployd's reaper) while we were away
        ended = runs.recorded_end(system, ended)
        path = runs.log_path(system.state_dir, run.service, run.run_id)
    else:
        path = runs.finish_run(system, engine, ended) or runs.log_path(
            system.state_dir, run.service, run.run_id)  # fmt: skip
    code = ended.exit_code if ended.exit_code is not None else 1
    say(f"run {run.run_id} exited {code}; output kept in {path}")
    return int(code)


def _interactive(system: Any, engine: Any, plan: Any) -> int:
    """``docker start -ai``: the docker CLI does the terminal (raw mode, resize, signals)."""
    from paasport.engine.docker import DockerEngine
    from paasport.platform import runs

    daemon = engine if isinstance(engine, DockerEngine) else getattr(engine, "daemon", None)
    if not isinstance(daemon, DockerEngine):
        raise UsageError(f"cluster {plan.spec.cluster}'s engine gives no terminal")
    docker = shutil.which("docker")
    if docker is None:
        raise UsageError("-t needs the docker command line (apt-get install docker.io)")
    run_id = runs.new_run_id()
    spec = runs.resolved(system, plan.spec)
    cid = daemon.create_one_off(spec, run_id, "adhoc", {}, who(), tty=True)
    created = daemon.one_off(cid)
    if created is not None:
        runs.record_started(system, created, " (interactive)")
    say(f"run {run_id}: a terminal in {spec.service}.{spec.instance} (exit the shell to end)")
    argv = [docker, *(["-H", daemon.base_url] if daemon.base_url else []), "start", "-ai", cid]
    previous = signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C belongs to the task
    try:
        subprocess.run(argv, check=False)  # interactive: as long as the person types
    finally:
        signal.signal(signal.SIGINT, previous)
    ended = daemon.one_off(cid)
    code = ended.exit_code if ended is not None and ended.exit_code is not None else 1
    if ended is not None:
        runs.finish_run(system, daemon, ended)
    return int(code)


def _remote(cluster: Any, service: str, adhoc: str | None, like: str | None, cmd: str | None,
            detach: bool, token: str | None) -> int:  # fmt: skip
    from paasport.platform.mutations import through_api_json
    from paasport.view.remote import follow_sse

    path = RUN_PATH.format(service=service)
    body = {"instance": adhoc, "from": like, "cmd": cmd, "by": who()}
    started = through_api_json(cluster, "POST", path, body, token)
    run_id = str(started.get("run_id"))
    say(f"{service}.{started.get('instance')} on cluster {cluster.name}: {started.get('image')} "
        f"({started.get('source')}); run {run_id} started")  # fmt: skip
    if detach:
        click.echo(run_id)
        return 0
    seen = [0]  # lines printed: a stream opened again resumes after them
    code: int | None = None
    stop = threading.Event()
    try:
        for event, data in follow_sse(
            cluster, f"{path}/{run_id}/output/stream", lambda: {"skip": str(seen[0])},
            token=token, stop=stop, note=say,
        ):  # fmt: skip
            if event == "line" and isinstance(data, dict):
                seen[0] += 1
                click.echo(str(data.get("line", "")))
            elif event == "exit" and isinstance(data, dict):
                code = data.get("exit_code")
                stop.set()
    except KeyboardInterrupt:
        say(f"stopping run {run_id}")
        code = 130
    finally:
        stop.set()
    try:
        finished = through_api_json(cluster, "DELETE", f"{path}/{run_id}", None, token)
    except PaasportError as err:
        say(f"run {run_id}: {err}")
        finished = {}
    if code is None:
        code = finished.get("exit_code")
    final = int(code) if isinstance(code, int) else 1
    say(f"run {run_id} exited {final}")
    return final
