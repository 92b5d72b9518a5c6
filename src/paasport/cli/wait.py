"""``paasport wait-for-deployment``: block until every instance of a deploy group runs a commit.

Loads the soa-configs tree once, reads the group's marks from the tags (``view.history.
read_marks``, which regenerates deployments.json) and refuses at once a sha the group is not
marked at (``mark_problem``); then polls ``view.status.gather`` (deployments.json, one engine
list call and live probes per round) and decides with ``instance_done``; draws a progress bar
per instance; on timeout exits 1 naming each instance still waiting and why. Either way it
records a ``deploy`` event per instance in the event log, which monitoring's deploy_failed
check reads (``deploy_events``).
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from contextlib import closing
from pathlib import Path

import click

from paasport.cli.options import (
    config_option,
    deploy_group_option,
    service_option,
    soa_dir_option,
    state_dir_option,
    token_option,
)
from paasport.config.system import SystemConfig, load_system_config
from paasport.errors import NotFoundError, PaasportError, UsageError
from paasport.monitoring.events import DeployData, Event, EventKind, EventLog, events_path
from paasport.view.history import MarkReading
from paasport.view.observe import InstanceView
from paasport.view.remote import token_from_env


def mark_problem(service: str, deploy_group: str, commit: str, marks: MarkReading) -> str | None:
    """Why waiting for ``commit`` (a sha prefix) is pointless: the tags, read just now, do not
    mark the group at it. None when they do, or when they could not be read (the mark may
    still land, e.g. pushed by another tool and picked up by ``paasport up``). Pure."""
    if not marks.fresh or (marks.marked is not None and marks.marked.startswith(commit)):
        return None
    if marks.marked is None:
        return (
            f"{service}: {commit} was never marked for deployment to deploy group "
            f"{deploy_group}, which was never marked at all"
        )
    if any(sha.startswith(commit) for sha in marks.before):
        return (
            f"{service}: deploy group {deploy_group} is marked at {marks.marked}, not {commit} "
            f"(marked before, then replaced: paasport rollback -s {service} -l {deploy_group} "
            f"-c {commit})"
        )
    return (
        f"{service}: {commit} was never marked for deployment to deploy group {deploy_group}, "
        f"which is marked at {marks.marked}"
    )


def instance_done(view: InstanceView, commit: str) -> tuple[bool, str]:
    """Done = stopped, or runs ``commit`` (a sha prefix) on every expected task, healthy, with
    no other app version left. Otherwise the reason it is not done yet."""
    d = view.deployment
    if d is None:
        return False, "not marked for deployment yet (deployments.json not regenerated?)"
    if not d.git_sha.startswith(commit):
        return False, f"deployments.json says {d.git_sha[:8]}, not {commit[:8]}"
    if d.desired_state == "stop":
        return True, "stopped"
    others = [
        av for av in view.versions if view.desired and av.config_hash != view.desired.config_hash
    ]
    f = view.facts
    # f.dead: a corpse kept because the instance crash-loops; its brief healthy runs are no deploy
    if f.healthy >= f.expected and not f.dead and not any(av.tasks for av in others):
        return True, "done"
    return False, view.verdict.why or f"{f.healthy} of {f.expected} tasks healthy"


def entry_done(entry: Mapping[str, object], commit: str) -> tuple[bool, str]:
    """``instance_done`` for a ``status --json`` entry (another cluster's API answer): done =
    stopped, or every expected task healthy on ``commit`` with no other app version's task
    left. Otherwise the reason it is not done yet. Pure."""
    state = str(entry.get("state") or "")
    if state in ("Config error", "Unreachable"):
        return False, str(entry.get("why") or state)
    sha = str(entry.get("git_sha") or "")
    if not sha:
        return False, "not marked for deployment yet (deployments.json not regenerated?)"
    if not sha.startswith(commit):
        return False, f"deployments.json says {sha[:8]}, not {commit[:8]}"
    if entry.get("desired_state") == "stop":
        return True, "stopped"
    healthy, expected = _int(entry.get("healthy")), _int(entry.get("expected"))
    versions = entry.get("app_versions")
    old = [
        v for v in (versions if isinstance(versions, list) else [])
        if isinstance(v, Mapping) and not v.get("new") and _int(v.get("tasks"))
    ]  # fmt: skip
    if healthy >= expected and not old:
        return True, "done"
    return False, str(entry.get("why") or f"{healthy} of {expected} tasks healthy")


def _int(value: object) -> int:
    return value if isinstance(value, int) else 0


def deploy_events(
    cluster: str,
    service: str,
    deploy_group: str,
    outcomes: Mapping[str, tuple[str, str]],
    now: float,
) -> list[Event]:
    """One ``deploy`` event per instance (pure): ``outcomes`` maps an instance to (git sha,
    why it is not done, "" when it is). An error event raises deploy_failed for that sha."""
    found: list[Event] = []
    for instance, (sha, why) in sorted(outcomes.items()):
        where = f"{service}.{instance}"
        data = DeployData(deploy_group, sha, "timeout" if why else "ok", why).to_json()
        message = (
            f"deploy of {sha[:8]} to {deploy_group} timed out on {where}: {why}"
            if why
            else f"{deploy_group} runs {sha[:8]} healthily on {where}"
        )
        found.append(
            Event(
                time=now,
                level="error" if why else "info",
                kind=EventKind.DEPLOY,
                service=service,
                instance=instance,
                cluster=cluster,
                message=message,
                data=data,
            )
        )
    return found


def _record_outcomes(system: SystemConfig, found: list[Event]) -> None:
    """Write the deploy events; a log that cannot be written is a warning, not a failure."""
    try:
        with EventLog(events_path(system.state_dir)) as log:
            for event in found:
                log.record(event)
    except PaasportError as err:
        click.echo(f"warning: deploy outcome not recorded: {err}", err=True)


@click.command("wait-for-deployment")
@service_option(required=True)
@deploy_group_option
@click.option("--commit", "-c", "commit", required=True, help="git sha (or a prefix of it)")
@click.option(
    "--timeout",
    "-t",
    type=click.FloatRange(min=0, min_open=True),
    default=3600.0,
    show_default=True,
    help="seconds",
)
@click.option(
    "--cluster", "clusters", multiple=True,
    help="only this cluster (repeatable; default: every cluster the deploy group spans)",
)  # fmt: skip
@click.option(
    "--auto-rollback", is_flag=True,
    help="roll the group back by itself if COMMIT crash-loops, fails its health checks or "
    "answers more errors than the old version (this host's cluster; `paasport up` acts)",
)  # fmt: skip
@soa_dir_option
@config_option
@state_dir_option
@token_option
def wait_for_deployment(
    service: str,
    deploy_group: str | None,
    commit: str,
    timeout: float,
    clusters: tuple[str, ...],
    auto_rollback: bool,
    soa_dir: Path | None,
    config_file: Path | None,
    state_dir: Path | None,
    token: str | None,
) -> int:
    """Wait until every instance of DEPLOY_GROUP runs COMMIT with all tasks healthy, on every
    cluster it spans (this host's directly, the others through their api_url), one progress
    bar per cluster and instance."""
    from rich.progress import BarColumn, Progress, TextColumn

    from paasport.engine.factory import engine_for
    from paasport.view.history import read_marks
    from paasport.view.status import gather, load_selected_tree, select_instances

    if not deploy_group:
        raise UsageError("--deploy-group/-l is required")
    system = load_system_config(config_file, soa_dir=soa_dir, state_dir=state_dir)
    tree = load_selected_tree(system, service)  # once: each round re-reads deployments.json
    local = system.local_cluster
    spans = sorted(
        {c.cluster for c in tree.instances_for(service=service) if c.deploy_group == deploy_group}
    )
    for name in clusters:
        if name not in system.clusters:
            known = ", ".join(sorted(system.clusters))
            raise UsageError(f"--cluster {name}: no such cluster in paasport.yaml ({known})")
    wanted = [c for c in spans if c in (clusters or spans) and c in system.clusters]
    remote = [c for c in wanted if c != local and system.clusters[c].api_url]
    for name in sorted(set(wanted) - set(remote) - {local}):
        click.echo(
            f"cluster {name}: not followed (no api_url in paasport.yaml; run "
            f"wait-for-deployment on one of its hosts)",
            err=True,
        )
    configs = [
        c
        for c in select_instances(system, service, None, None, tree=tree)
        if c.deploy_group == deploy_group and local in wanted
    ]
    remote_instances = {
        name: sorted(
            c.instance for c in tree.instances_for(service=service, cluster=name)
            if c.deploy_group == deploy_group
        )
        for name in remote
    }  # fmt: skip
    if not configs and not remote:
        where = ", ".join(wanted or clusters or (local,))
        raise NotFoundError(
            f"{service}: no instance of deploy group {deploy_group!r} on cluster {where}"
        )
    commit = commit.lower()
    # before the first round, which then reads the deployments.json regenerated from the tags
    problem = mark_problem(
        service, deploy_group, commit, read_marks(system, tree, service, deploy_group)
    )
    several = len(remote) + bool(configs) > 1
    began = time.time()
    if auto_rollback and configs and problem is None:
        _arm_auto_rollback(system, service, deploy_group, commit)

    def label(cluster: str, key: str) -> str:
        return f"{cluster} {key}" if several or cluster != local else key

    deadline = time.monotonic() + timeout
    reasons: dict[str, str] = {}
    progress = Progress(
        TextColumn("{task.description}"),
        BarColumn(),
        TextColumn("{task.completed}/{task.total}"),
        TextColumn("{task.fields[why]}"),
        disable=not sys.stderr.isatty(),
    )
    bars = {
        label(local, f"{c.service}.{c.instance}"): progress.add_task(
            label(local, f"{c.service}.{c.instance}"), total=max(c.instances, 1), why=""
        )
        for c in configs
    }
    for name, instances in remote_instances.items():
        for instance in instances:
            key = label(name, f"{service}.{instance}")
            bars[key] = progress.add_task(key, total=1, why="")
    local_keys = {label(local, f"{c.service}.{c.instance}"): c.instance for c in configs}
    shas: dict[str, str] = {}  # local key -> the full sha, when known
    answered = False  # an engine that never answered is a setup problem: say so at once
    api_token = token_from_env(token)
    with progress, closing(engine_for(system.local)) as engine:
        while True:
            views = []
            if configs:
                try:
                    views = gather(system, configs, tree=tree, engine=engine)
                    answered = True
                except PaasportError as err:
                    if not answered:
                        raise
                    reasons.update({key: str(err) for key in local_keys})
            if problem is not None:  # once the engine answered: its error comes first
                raise NotFoundError(problem)
            rolled = _rolled_back(system, service, deploy_group, commit, began) if configs else ""
            if rolled:
                click.echo(f"rolled back: {rolled}", err=True)
                return 1
            for view in views:
                d = view.deployment
                full = d.git_sha if d is not None and d.git_sha.startswith(commit) else commit
                key = label(local, view.key)
                shas[key] = full
                done, why = instance_done(view, commit)
                reasons[key] = "" if done else why
                total = max(view.facts.expected, 1)
                progress.update(
                    bars[key],
                    total=total,
                    completed=total if done else min(view.facts.healthy, total),
                    why="" if done else why[:80],
                )
            if remote_instances:
                done_by_key, totals = _remote_round(
                    system, service, remote_instances, commit, api_token, label
                )
                for key, why in done_by_key.items():
                    reasons[key] = why
                    healthy, total = totals[key]
                    progress.update(
                        bars[key], total=max(total, 1),
                        completed=max(total, 1) if not why else min(healthy, max(total, 1)),
                        why=why[:80],
                    )  # fmt: skip
            if len(reasons) == len(bars) and not any(reasons.values()):
                _record(system, service, deploy_group, commit, shas, reasons, local_keys)
                where = f" on {', '.join(wanted)}" if several else ""
                click.echo(
                    f"{service}: {deploy_group} runs {commit[:8]} on every instance{where}",
                    err=True,
                )
                return 0
            if time.monotonic() >= deadline:
                break
            time.sleep(1.0)
    _record(system, service, deploy_group, commit, shas, reasons, local_keys)
    for key in sorted(bars):
        why = reasons.get(key, "no answer yet")
        if why:
            click.echo(f"timed out: {key}: {why}", err=True)
    return 1


def _arm_auto_rollback(system: SystemConfig, service: str, deploy_group: str, commit: str) -> None:
    """A ``mark`` event that arms the auto-rollback guard for the group at COMMIT."""
    from paasport.deploy.deployments import read_deployments

    found = read_deployments(system.soa_dir, service)
    entry = found.deployments.get(deploy_group) if found else None
    sha = str(entry.get("git_sha", "")) if entry else ""
    if not sha.startswith(commit):
        return  # not marked there (mark_problem says so)
    event = Event(
        time=time.time(), level="info", kind=EventKind.MARK, service=service,
        cluster=system.local_cluster,
        message=f"wait-for-deployment: auto-rollback armed for {deploy_group} at {sha[:12]}",
        data={"action": "auto-rollback", "deploy_group": deploy_group, "git_sha": sha,
              "auto_rollback": True, "user": "wait-for-deployment", "via": "cli"},
    )  # fmt: skip
    _record_outcomes(system, [event])


def _rolled_back(
    system: SystemConfig, service: str, deploy_group: str, commit: str, since: float
) -> str:
    """The auto-rollback guard's word on the group at COMMIT since ``since`` ("" none)."""
    from paasport.view.events import load_events

    try:
        found = load_events(system, service=service, since=since, kinds=("deploy",), limit=50)
    except PaasportError:
        return ""
    for event in found.events:
        data = event.data
        if (data.get("outcome") == "rolled_back" and data.get("deploy_group") == deploy_group
                and str(data.get("git_sha", "")).startswith(commit)):  # fmt: skip
            return event.message
    return ""


def _remote_round(
    system: SystemConfig,
    service: str,
    remote_instances: Mapping[str, Sequence[str]],
    commit: str,
    token: str | None,
    label: Callable[[str, str], str],
) -> tuple[dict[str, str], dict[str, tuple[int, int]]]:
    """One status reading of every other cluster, in parallel: each instance's reason it is
    not done ("" done) and its (healthy, expected), by progress key."""
    from paasport.view.remote import read_across
    from paasport.view.status import status_path

    answers = read_across(
        system, list(remote_instances), lambda: [], status_path(service, None), token=token
    )
    reasons: dict[str, str] = {}
    totals: dict[str, tuple[int, int]] = {}
    for answer in answers:
        entries = {
            str(e.get("instance")): e
            for e in (answer.data if answer.answered and isinstance(answer.data, list) else [])
            if isinstance(e, Mapping)
        }
        for instance in remote_instances[answer.cluster]:
            key = label(answer.cluster, f"{service}.{instance}")
            entry = entries.get(instance)
            if not answer.answered:
                reasons[key], totals[key] = answer.error, (0, 1)
            elif entry is None:
                reasons[key], totals[key] = "not in the cluster's status yet", (0, 1)
            else:
                done, why = entry_done(entry, commit)
                reasons[key] = "" if done else why
                totals[key] = (_int(entry.get("healthy")), _int(entry.get("expected")))
    return reasons, totals


def _record(
    system: SystemConfig,
    service: str,
    deploy_group: str,
    commit: str,
    shas: Mapping[str, str],
    reasons: Mapping[str, str],
    local_keys: Mapping[str, str],
) -> None:
    """The ``deploy`` events of this host's cluster's instances (``local_keys``: progress key
    -> instance); other clusters' monitors read their own event logs."""
    outcomes = {
        instance: (shas.get(key, commit), reasons.get(key, "no answer yet"))
        for key, instance in local_keys.items()
    }
    if not outcomes:
        return
    found = deploy_events(system.local_cluster, service, deploy_group, outcomes, time.time())
    _record_outcomes(system, found)
