"""``paasport jobs``, ``job-runs`` and ``job-run-now``: the scheduled jobs of tron-<cluster>.yaml
(``view.jobs``, ``platform.jobs``). ``job-run-now`` of another cluster goes through its API."""

from __future__ import annotations

import time
from typing import Any

import click

from paasport.cli.options import (
    config_option,
    json_option,
    print_json,
    settings_from,
    soa_dir_option,
    state_dir_option,
    token_option,
)
from paasport.errors import UsageError

JOB_RUNS_PATH = "/v1/services/{service}/jobs/{job}/runs"
STARTED_WITHIN_SECONDS = 10.0  # job-run-now: the scheduler should start the first action by then


def _when(at: float | None) -> str:
    if at is None:
        return "-"
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(at))


def _took(seconds: float | None) -> str:
    return "-" if seconds is None else f"{seconds:.1f}s"


def _tree(system: Any, service: str | None) -> Any:
    from paasport.view.status import load_selected_tree

    return load_selected_tree(system, service)


@click.command("jobs")
@click.option("--service", "-s", "service", default=None, help="only this service's jobs")
@json_option
@soa_dir_option
@config_option
@state_dir_option
@click.pass_context
def jobs(ctx: click.Context, /, service: str | None, as_json: bool, **_options: Any) -> int:
    """The scheduled jobs of this host's cluster: schedule, state, last run and next run."""
    from paasport.view.jobs import load_jobs

    system = settings_from(ctx)
    views = load_jobs(system, _tree(system, service), service)
    if as_json:
        print_json([v.to_json() for v in views])
        return 0
    if not views:
        click.echo(f"no jobs on cluster {system.local_cluster}")
        return 0
    for v in views:
        last = v.last
        said = (f"last run {last.run_id} {last.state} {_when(last.started)} "
                f"({_took(last.seconds)})" if last else "never ran")  # fmt: skip
        click.echo(
            f"{v.job.service}.{v.job.name} ({v.job.cluster})  {v.state}  "
            f"{v.job.schedule} {v.job.time_zone}  {said}  next {_when(v.next_run)}"
        )
    return 0


@click.command("job-runs")
@click.option("--service", "-s", "service", required=True, help="service name")
@click.option("--job", "-j", "job", required=True, help="job name")
@click.option("--limit", "-n", "limit", type=click.IntRange(1), default=20, show_default=True,
              help="the newest N runs")  # fmt: skip
@json_option
@soa_dir_option
@config_option
@state_dir_option
@click.pass_context
def job_runs(ctx: click.Context, /, service: str, job: str, limit: int, as_json: bool,
             **_options: Any) -> int:  # fmt: skip
    """A job's runs, newest last: trigger, state, duration, each action's exit code and where
    its output is kept."""
    from paasport.platform.jobs import find_job
    from paasport.view.jobs import load_jobs

    system = settings_from(ctx)
    tree = _tree(system, service)
    find_job(tree.jobs, service, job, system.local_cluster)
    [view] = load_jobs(system, tree, service, job)
    runs = view.runs[-limit:]
    if as_json:
        document = view.to_json(with_runs=True)
        print_json({**document, "runs": document["runs"][-limit:]})
        return 0
    if not runs:
        click.echo(f"{service}.{job}: no runs yet (next {_when(view.next_run)})")
        return 0
    for run in runs:
        click.echo(
            f"run {run.run_id}  {run.state}  {run.trigger}  started {_when(run.started)}"
            f"  took {_took(run.seconds)}  git {run.git_sha[:8] or '-'}"
        )
        for action in run.actions.values():
            for t in action.attempts:
                code = "running" if not t.done else f"exit {t.exit_code}"
                took = _took(None if t.finished is None else t.finished - t.started)
                click.echo(
                    f"  {action.name}#{t.number}  {code}  {took}  "
                    f"{t.log or '(output kept when it ends)'}"
                )
        for note in (run.message, run.late):
            if note:
                click.echo(f"  {note}")
    return 0


@click.command("job-run-now")
@click.option("--service", "-s", "service", required=True, help="service name")
@click.option("--job", "-j", "job", required=True, help="job name")
@click.option("--cluster", "-c", "cluster", default=None, help="the job's cluster [this host's]")
@token_option
@json_option
@soa_dir_option
@config_option
@state_dir_option
@click.pass_context
def job_run_now(ctx: click.Context, /, service: str, job: str, cluster: str | None,
                token: str | None, as_json: bool, **_options: Any) -> int:  # fmt: skip
    """Start a run of a job now, whatever its schedule (disabled jobs too); the scheduler of
    the cluster's deployd starts its actions."""
    from paasport.platform import mutations

    system = settings_from(ctx)
    cluster = cluster or system.local_cluster
    remote = mutations.api_cluster_of(system, cluster)
    if remote is not None:
        who = _who()
        answer = mutations.through_api_json(
            remote, "POST", JOB_RUNS_PATH.format(service=service, job=job), {"by": who}, token
        )
        if as_json:
            print_json(answer)
        else:
            click.echo(f"job {job} run {answer.get('run_id')} started on cluster {cluster}")
        return 0
    if cluster != system.local_cluster:
        raise UsageError(
            f"cluster {cluster} is not this host's ({system.local_cluster}) and "
            "names no api_url in paasport.yaml: run it on one of its hosts"
        )
    from paasport.platform.jobs import start_now

    run_id = start_now(system, service, job, _who())
    if as_json:
        print_json({"run_id": run_id, "service": service, "job": job, "cluster": cluster})
    else:
        click.echo(f"job {job} run {run_id} started; `paasport job-runs -s {service} -j {job}`")
    _wait_started(system, service, job, run_id)
    return 0


def _who() -> str:
    from paasport.cli.run_cmd import who

    return who()


def _wait_started(system: Any, service: str, job: str, run_id: str) -> None:
    """Say so when no scheduler picks the run up (no `up` or deployd runs here)."""
    from paasport.view.events import load_events

    deadline = time.monotonic() + STARTED_WITHIN_SECONDS
    since = time.time() - 60
    while time.monotonic() < deadline:
        found = load_events(system, service=service, instance=job, kinds=("job",), since=since,
                            limit=200).events  # fmt: skip
        if any(e.data.get("run_id") == run_id and e.data.get("state") == "action_started"
               for e in found):  # fmt: skip
            return
        time.sleep(0.5)
    click.echo(f"no action of run {run_id} started within {STARTED_WITHIN_SECONDS:g}s: is "
               "`paasport up` or `deployd` running here, holding the cluster lock? The acting "
               "deployd starts runs from its own host's event log: on many hosts, run "
               "job-run-now on that host or through the cluster's API", err=True)  # fmt: skip
