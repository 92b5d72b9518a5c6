"""One-off tasks (``paasport run``): planned from an adhoc instance (``adhoc-<cluster>.yaml``) or
a long-running instance (``--from``), started on the cluster's engine with the image its deploy
group runs, and finished: output kept under ``<state_dir>/runs/``, exit recorded, task removed.

The CLI (a run on this host's cluster), the HTTP API (a run asked from another host) and
deployd's reaper (a run whose caller went away, or ``--detach``) finish runs; the first to
create the run's log file (O_EXCL) records the ``run`` event, so each run is told once.
"""

from __future__ import annotations

import dataclasses
import os
import re
import secrets as random
import threading
import time
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

from paasport.bounce.desired import desired_app
from paasport.config.secrets import SecretStore, secret_refs
from paasport.config.state_files import private_dir
from paasport.config.system import SystemConfig, effective_registry
from paasport.config.tree import SoaTree
from paasport.deploy.deployments import read_deployments
from paasport.engine.base import Engine, OneOff
from paasport.errors import NotFoundError, PaasportError, UsageError
from paasport.monitoring.events import Event, EventKind, EventLog, events_path
from paasport.types import AppSpec, InstanceConfig

RUNS_DIR = "runs"
REAP_AFTER_SECONDS = 10.0  # an attached caller finishes its own run first
_RUN_ID = re.compile(r"[a-z0-9]{6,20}")


def new_run_id() -> str:
    return random.token_hex(4)


def check_run_id(run_id: str) -> str:
    if not _RUN_ID.fullmatch(run_id):
        raise UsageError(f"run id {run_id!r}: expected 6-20 lowercase letters and digits")
    return run_id


@dataclass(frozen=True)
class RunPlan:
    spec: AppSpec  # env as configured (SECRET(name) unresolved)
    source: str  # for people: "adhoc instance report", "like instance main"


def find_config(tree: SoaTree, service: str, cluster: str, adhoc: str | None,
                like: str | None) -> tuple[InstanceConfig, str]:  # fmt: skip
    """The config a one-off runs with: an adhoc instance or a long-running one. Pure."""
    if service not in tree.services:
        raise NotFoundError(f"no service {service!r} in {tree.soa_dir}")
    if (adhoc is None) == (like is None):
        names = ", ".join(sorted(c.instance for c in tree.adhoc_for(service, cluster))) or "none"
        raise UsageError(f"give one of -i ADHOC_INSTANCE (adhoc instances of {service} on "
                         f"{cluster}: {names}) and --from INSTANCE")  # fmt: skip
    if adhoc is not None:
        found = tree.adhoc_for(service, cluster, adhoc)
        kind, file = "adhoc instance", f"adhoc-{cluster}.yaml"
    else:
        assert like is not None
        found = tree.instances_for(service, cluster, like)
        kind, file = "instance", f"instances-{cluster}.yaml"
    name = adhoc or like
    if not found:
        problems = [str(p) for p in tree.problems if p.severity in ("error", "note")
                    and f"/{service}/" in p.file and f" {name}:" in str(p)]  # fmt: skip
        why = f": {problems[0]}" if problems else f" (in {service}/{file})"
        raise NotFoundError(f"{service}: no {kind} {name!r} on cluster {cluster}{why}")
    source = f"adhoc instance {adhoc}" if adhoc is not None else f"like instance {like}"
    return found[0], source


def plan_run(system: SystemConfig, tree: SoaTree, service: str, cluster: str, *,
             adhoc: str | None = None, like: str | None = None,
             cmd: str | None = None) -> RunPlan:  # fmt: skip
    """What ``paasport run`` starts: the config's image at its deploy group's sha (the app's
    current version), its env, resources and volumes, ``cmd`` instead of its command."""
    config, source = find_config(tree, service, cluster, adhoc, like)
    if cmd is not None:
        config = dataclasses.replace(config, cmd=cmd, args=None)
    if config.cmd is None and config.args is None:
        raise UsageError(f"{service}.{config.instance} has no cmd: give --cmd")
    known = read_deployments(system.soa_dir, service)
    state = known.state_for(cluster, config.instance, config.deploy_group) if known else None
    if state is None:
        raise UsageError(
            f"{service}: deploy group {config.deploy_group} was never marked for "
            "deployment: nothing to run yet (mark-for-deployment first)"
        )
    deployment = dataclasses.replace(state, desired_state="start")
    registry = effective_registry(tree.services[service], system)
    spec = dataclasses.replace(desired_app(config, deployment, registry), replicas=1)
    return RunPlan(spec, f"{source}, git {state.git_sha[:12]} ({config.deploy_group})")


def resolved(system: SystemConfig, spec: AppSpec) -> AppSpec:
    """``spec`` with its secrets' values, for the engine only (this host's cluster keeps them)."""
    if not secret_refs(spec.env):
        return spec
    if spec.cluster != system.local_cluster:
        raise UsageError(
            f"{spec.service}.{spec.instance} uses secrets of cluster "
            f"{spec.cluster}, kept on its hosts: run it through its API"
        )
    env = SecretStore(system.state_dir, spec.cluster).resolve_env(spec.service, spec.env)
    return dataclasses.replace(spec, env=env)


def _record(system: SystemConfig, event: Event) -> None:
    try:
        with EventLog(events_path(system.state_dir)) as log:
            log.record(event)
    except PaasportError:
        pass  # the run goes on; only its line in the event log is missing


def start_run(system: SystemConfig, engine: Engine, spec: AppSpec, by: str, *,
              kind: str = "adhoc", labels: Mapping[str, str] | None = None,
              run_id: str | None = None) -> OneOff:  # fmt: skip
    run_id = run_id or new_run_id()
    extra = dict(labels or {})
    run = engine.start_one_off(resolved(system, spec), run_id, kind, extra, by)
    if kind == "adhoc":
        record_started(system, run)
    return run


def record_started(system: SystemConfig, run: OneOff, how: str = "") -> None:
    _record(system, Event(
        time.time(), "info", EventKind.RUN, run.service, run.instance, run.cluster,
        f"one-off run {run.run_id}{how} started by {run.by or 'someone'}: "
        f"{run.command or '(the image command)'}",
        {"run_id": run.run_id, "task_id": run.task_id, "command": run.command, "by": run.by,
         "git_sha": run.git_sha, "state": "started"},
    ))  # fmt: skip


def log_path(state_dir: Path, service: str, run_id: str) -> Path:
    return state_dir / RUNS_DIR / service / f"{run_id}.log"


def keep_output(system: SystemConfig, engine: Engine, run: OneOff) -> Path | None:
    """Write the run's output to its log file; None when another finisher did it first."""
    path = log_path(system.state_dir, run.service, run.run_id)
    private_dir(path.parent)
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return None
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        try:
            for line in engine.one_off_output(run.task_id):
                out.write(line + "\n")
        except PaasportError as err:
            out.write(f"[paasport: the output could not be read: {err}]\n")
    return path


def finish_run(system: SystemConfig, engine: Engine, run: OneOff, *,
               remove: bool = True) -> Path | None:  # fmt: skip
    """Keep the output of an exited (or abandoned) run, say how it ended, remove its task.
    Returns the log file, None when another finisher got there first."""
    path = keep_output(system, engine, run)
    if path is not None and run.kind == "adhoc":
        took = (run.finished or time.time()) - run.started
        ended = f"exited {run.exit_code}" if run.done else "was stopped"
        _record(system, Event(
            time.time(), "info" if run.exit_code == 0 else "warning", EventKind.RUN,
            run.service, run.instance, run.cluster,
            f"one-off run {run.run_id} {ended} after {took:.1f}s: {run.command}",
            {"run_id": run.run_id, "task_id": run.task_id, "exit_code": run.exit_code,
             "seconds": round(took, 3), "log": str(path), "state": "finished"},
        ))  # fmt: skip
    if remove:
        engine.remove_one_off(run.task_id)
    return path


def reap(system: SystemConfig, engine: Engine, now: float) -> int:
    """Finish the adhoc runs that exited more than REAP_AFTER_SECONDS ago and nobody finished
    (their caller went away, or ``--detach``). Returns how many."""
    done = 0
    for run in engine.list_one_offs(kind="adhoc"):
        if run.done and run.finished is not None and now - run.finished >= REAP_AFTER_SECONDS:
            finish_run(system, engine, run)
            done += 1
    return done


def find_run(engine: Engine, service: str, run_id: str) -> OneOff | None:
    return next((r for r in engine.list_one_offs(service) if r.run_id == run_id), None)


def wait_for_exit(engine: Engine, run: OneOff, stop: threading.Event | None = None,
                  poll: float = 0.5) -> OneOff:  # fmt: skip
    """The run once it exited (or as it is when ``stop`` is set, or once it is gone)."""
    while True:
        found = find_run(engine, run.service, run.run_id)
        if found is None or found.done:
            return found or run
        run = found
        if stop is not None and stop.wait(poll):
            return run
        if stop is None:
            time.sleep(poll)


def output_then_exit(engine: Engine, run: OneOff, stop: threading.Event | None = None
                     ) -> Iterator[str | OneOff]:  # fmt: skip
    """Its output lines as it runs, then the run as it ended (for the CLI and the API)."""
    yield from engine.one_off_output(run.task_id, follow=True, stop=stop)
    yield wait_for_exit(engine, run, stop)


def recorded_end(system: SystemConfig, run: OneOff) -> OneOff:
    """``run`` as its ``run`` event says it ended (another finisher got there first: the
    reaper, after the caller was away); as it is when none says so."""
    try:
        with EventLog(events_path(system.state_dir)) as log:
            found = log.query(service=run.service, kinds=(EventKind.RUN,),
                              since=run.started - 60, limit=500)  # fmt: skip
    except PaasportError:
        return run
    for event in reversed(found):
        d = event.data
        if d.get("run_id") == run.run_id and d.get("state") == "finished":
            code = d.get("exit_code")
            return dataclasses.replace(
                run,
                state="exited",
                finished=event.time,
                exit_code=int(str(code)) if code is not None else None,
            )
    return run


def read_log(state_dir: Path, service: str, run_id: str) -> str:
    path = log_path(state_dir, service, check_run_id(run_id))
    try:
        return path.read_text(encoding="utf-8", errors="replace")
    except FileNotFoundError:
        raise NotFoundError(f"{service}: no output kept for run {run_id}") from None
