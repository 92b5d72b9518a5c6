"""The writing deploy verbs as plain functions: mark-for-deployment, start/stop/restart, rollback.

``cli/deploy_cmds.py`` and the HTTP API (``api/app.py``) both call these: each loads the
service, tags through ``deploy.workflow`` (tags in git, never the engine) and records who did
it in the event log (a ``mark`` event; the API adds the token's name and team). A mutation of a
cluster of other hosts goes through that cluster's API instead (``api_cluster_of``,
``through_api``), so its token, ownership and event log apply.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from paasport.config.system import ClusterConfig, SystemConfig
from paasport.config.tree import SoaTree, load_tree
from paasport.deploy import tags, workflow
from paasport.deploy.git import GitRepo, check_git_url, resolve_git_url
from paasport.errors import ConfigError, ConflictError, PaasportError, PermanentError, UsageError
from paasport.monitoring.events import Event, EventKind, EventLog, events_path

ControlAction = Literal["start", "stop", "restart"]
CONTROL_STATES: dict[str, tags.ControlState] = {
    "start": "start",
    "stop": "stop",
    "restart": "start",  # a new start tag forces a bounce
}


@dataclass(frozen=True)
class Actor:
    """Who asks: a person at the CLI (``who``) or an API token (its name and team)."""

    who: str
    team: str | None = None
    token: str | None = None  # the token's name (API)
    admin: bool = False

    @property
    def via(self) -> str:
        return "api" if self.token is not None else "cli"

    @property
    def label(self) -> str:
        if self.token is None:
            return self.who
        return f"{self.who} (token {self.token}, team {self.team or '-'}, via the API)"


@dataclass(frozen=True)
class Outcome:
    result: workflow.TagResult
    warning: str | None = None  # the tag is made, but the event log could not be written
    # "instance (git 1234abcd)" of each bounce under way that this mark supersedes
    supersedes: tuple[str, ...] = ()


def superseded_bounces(
    system: SystemConfig, target: workflow.ServiceTarget, deploy_group: str
) -> tuple[str, ...]:
    """The group's instances on this host's cluster whose bounce is under way (from the event
    log): deployd moves them to the new mark instead, in the same bounce."""
    from paasport.view.events import bounces_under_way, load_events

    cluster = system.local_cluster
    members = {
        key.split(".", 1)[1] for key, group in target.control_branches.items()
        if group == deploy_group and key.split(".", 1)[0] == cluster
    }  # fmt: skip
    if not members:
        return ()
    try:
        found = load_events(system, service=target.service, cluster=cluster,
                            kinds=(EventKind.BOUNCE,), limit=2000)  # fmt: skip
    except PaasportError:
        return ()
    going = bounces_under_way(found.events)
    return tuple(
        f"{instance} (git {sha})" for (_s, instance), sha in sorted(going.items())
        if instance in members
    )  # fmt: skip


def require_valid(tree: SoaTree, service: str) -> None:
    """Writing verbs regenerate deployments.json from the instance list: it must be complete."""
    if tree.errors:  # load_tree(services=[service]) reports only that service's problems
        raise ConfigError(tree.errors)
    if service in tree.incomplete_services:
        raise ConfigError(f"{service}: its configuration is incomplete; run paasport validate")


def service_target(
    system: SystemConfig,
    service: str,
    *,
    write: bool = True,
    git_url: str | None = None,
    base_dir: Path | None = None,
) -> tuple[SoaTree, workflow.ServiceTarget]:
    """The loaded tree and the ServiceTarget of ``service``; ``git_url`` overrides service.yaml's
    (a relative path is resolved against ``base_dir``)."""
    tree = load_tree(system.soa_dir, [service], system=system)
    if write:
        require_valid(tree, service)
    target = workflow.target_from_tree(tree, service, write=write)
    if git_url:
        why = check_git_url(git_url)  # before a relative path is made absolute
        if why is not None:
            raise UsageError(f"--git-url: {why}")
        target = workflow.ServiceTarget(
            service=target.service,
            git_url=resolve_git_url(git_url, base_dir or Path.cwd()),
            deploy_groups=target.deploy_groups,
            control_branches=target.control_branches,
            soa_dir=target.soa_dir,
            git_url_source="--git-url",
        )
    return tree, target


def mark_event(
    service: str,
    result: workflow.TagResult,
    *,
    action: str,
    actor: Actor,
    deploy_group: str | None,
    cluster: str | None = None,
    instance: str | None = None,
    now: float,
) -> Event:
    """The ``mark`` event of one tag: who made it and why (deploy-history reads it). Pure."""
    parsed = tags.parse_deploy_tag(tags.TAG_PREFIX + result.tag, result.sha)
    where = f"{cluster}.{instance}" if cluster and instance else deploy_group
    message = f"{actor.label}: {action} {service} {where} at {result.sha[:12]} (tag {result.tag})"
    data: dict[str, object] = {
        "user": actor.who,
        "action": action,
        "git_sha": result.sha,
        "deploy_group": deploy_group,
        "tag": result.tag,
        "image_version": parsed.image_version if parsed else None,
        "via": actor.via,
    }
    if actor.token is not None:
        data["token"] = actor.token
        data["team"] = actor.team
    if result.rollback_tag:
        data["rollback_tag"] = result.rollback_tag
    return Event(
        time=now,
        level="info",
        kind=EventKind.MARK,
        service=service,
        instance=instance,
        cluster=cluster,
        message=message,
        data=data,
    )


def record(system: SystemConfig, event: Event) -> str | None:
    """Append ``event``; the tag is already made, so a failure is a warning (returned)."""
    try:
        with EventLog(events_path(system.state_dir)) as log:
            log.record(event)
    except PaasportError as err:
        return f"tag made, but who made it is not recorded: {err}"
    return None


def rolled_back_message(
    service: str, sha: str, marks: Sequence[tags.AnyTag], who: Mapping[str, str]
) -> str:
    """Why a sha is refused: each group it was rolled back from, when and by whom. Pure."""
    said = []
    for mark in marks:
        when = tags.parse_timestamp(mark.timestamp).strftime("%Y-%m-%d %H:%M:%S UTC")
        name = mark.ref.removeprefix(tags.TAG_PREFIX)
        by = f" by {who[name]}" if name in who else ""
        said.append(f"from {mark.target} at {when}{by} (tag {name})")
    return f"{service}: {sha[:12]} was rolled back {'; '.join(said)}; deploy it anyway with --force"


def rolled_back_by(system: SystemConfig, service: str) -> dict[str, str]:
    """rollback tag -> who made it, from the event log's ``mark`` events (tags are
    lightweight: git does not know)."""
    from paasport.view.events import load_events

    try:
        marks = load_events(system, service=service, kinds=(EventKind.MARK,), limit=None)
    except PaasportError:
        return {}
    found: dict[str, str] = {}
    for event in marks.events:
        tag = event.data.get("rollback_tag")
        if isinstance(tag, str):
            user, token = event.data.get("user"), event.data.get("token")
            found[tag] = f"{user} (token {token})" if token else str(user or "someone")
    return found


def mark_for_deployment(
    system: SystemConfig,
    target: workflow.ServiceTarget,
    deploy_group: str,
    commit: str,
    actor: Actor,
    *,
    image_version: str | None = None,
    force: bool = False,
    auto_rollback: bool = False,
    clock: Callable[[], float] = time.time,
) -> Outcome:
    """Tag ``commit`` as what ``deploy_group`` runs, regenerate deployments.json, record it.
    A sha some group was rolled back from is refused (ConflictError naming when and by whom)
    unless ``force``. A bounce of the group under way is superseded (said in the event)."""
    supersedes = superseded_bounces(system, target, deploy_group)
    with GitRepo(target.require_git_url()) as repo:
        if not force:
            target.require_group(deploy_group)
            sha = repo.resolve_commit(commit)
            marks = tags.rollback_marks(repo.tag_refs(), sha)
            if marks:
                who = rolled_back_by(system, target.service)
                raise ConflictError(rolled_back_message(target.service, sha, marks, who))
        result = workflow.mark_for_deployment(
            target, repo, deploy_group, commit, now=clock(), image_version=image_version,
            who=actor.who,
        )  # fmt: skip
    event = mark_event(
        target.service, result, action="deploy", actor=actor, deploy_group=deploy_group,
        now=clock(),
    )  # fmt: skip
    if auto_rollback:  # the auto-rollback guard watches this deploy (platform.autorollback)
        event = dataclasses.replace(
            event, message=event.message + " (auto-rollback armed)",
            data={**event.data, "auto_rollback": True},
        )  # fmt: skip
    if supersedes:
        note = f"; supersedes the bounce under way of {', '.join(supersedes)}"
        event = dataclasses.replace(
            event, message=event.message + note,
            data={**event.data, "supersedes": list(supersedes)},
        )  # fmt: skip
    return Outcome(result, record(system, event), supersedes)


def set_desired_state(
    system: SystemConfig,
    target: workflow.ServiceTarget,
    cluster: str,
    instance: str,
    action: ControlAction,
    actor: Actor,
    *,
    clock: Callable[[], float] = time.time,
) -> Outcome:
    """start/stop/restart one instance (a control tag on the sha its deploy group runs)."""
    with GitRepo(target.require_git_url()) as repo:
        result = workflow.set_desired_state(
            target, repo, cluster, instance, CONTROL_STATES[action], now=clock(), who=actor.who
        )
    event = mark_event(
        target.service,
        result,
        action=action,
        actor=actor,
        deploy_group=target.control_branches.get(f"{cluster}.{instance}"),
        cluster=cluster,
        instance=instance,
        now=clock(),
    )
    return Outcome(result, record(system, event))


def marked_instances(target: workflow.ServiceTarget, deploy_group: str) -> list[str]:
    """``cluster.instance`` of every instance that runs ``deploy_group``, sorted. Pure."""
    return sorted(key for key, group in target.control_branches.items() if group == deploy_group)


def deployed_before(target: workflow.ServiceTarget, deploy_group: str) -> list[tags.DeployTag]:
    """Each sha the group ran, newest first (the first is what it runs now)."""
    target.require_group(deploy_group)
    with GitRepo(target.require_git_url()) as repo:
        return workflow.deployed_commits(repo.tag_refs(), deploy_group)


def previous_sha(before: list[tags.DeployTag], service: str, deploy_group: str) -> str:
    """The sha a rollback without one goes back to: the one deployed before the current. Pure."""
    if len(before) < 2:
        what = "was never marked" if not before else f"ran only {before[0].sha[:12]}"
        raise ConflictError(f"{service}: {deploy_group} {what}: there is no earlier sha")
    return before[1].sha


def rollback(
    system: SystemConfig,
    target: workflow.ServiceTarget,
    deploy_group: str,
    commit: str | None,
    actor: Actor,
    *,
    force: bool = False,
    clock: Callable[[], float] = time.time,
) -> Outcome:
    """Re-mark ``deploy_group`` at ``commit`` (None: the sha it ran before the current one)."""
    target.require_group(deploy_group)
    with GitRepo(target.require_git_url()) as repo:
        if commit is None:
            before = workflow.deployed_commits(repo.tag_refs(), deploy_group)
            commit = previous_sha(before, target.service, deploy_group)
        result = workflow.rollback(
            target, repo, deploy_group, commit, now=clock(), force=force, who=actor.who
        )
    event = mark_event(
        target.service, result, action="rollback", actor=actor, deploy_group=deploy_group,
        now=clock(),
    )  # fmt: skip
    return Outcome(result, record(system, event))


# ---- a cluster of another host: the mutation goes through that cluster's API -------------

REMOTE_WRITE_TIMEOUT_SECONDS = 30.0  # tagging fetches and pushes git: longer than a read


def api_cluster_of(system: SystemConfig, cluster: str) -> ClusterConfig | None:
    """The cluster whose API takes a mutation of ``cluster``: None when it is this host's or
    names no ``api_url`` (then the tag is written here, in the service's repo). Pure."""
    if cluster == system.local_cluster:
        return None
    found = system.clusters.get(cluster)
    return found if found is not None and found.api_url else None


def api_cluster_of_group(
    system: SystemConfig, target: workflow.ServiceTarget, deploy_group: str
) -> ClusterConfig | None:
    """The cluster whose API tags ``deploy_group``: None when the group has an instance on
    this host's cluster or none of its clusters has an API; else the first (by name) of its
    clusters that has one. The tag is the same from any of them (one repo). Pure."""
    clusters = sorted(
        {key.split(".", 1)[0] for key, group in target.control_branches.items()
         if group == deploy_group}
    )  # fmt: skip
    if not clusters or system.local_cluster in clusters:
        return None
    for name in clusters:
        found = api_cluster_of(system, name)
        if found is not None:
            return found
    return None


def through_api_json(
    cluster: ClusterConfig, method: str, path: str, body: dict[str, Any] | None,
    token: str | None,
) -> dict[str, Any]:  # fmt: skip
    """One write to ``cluster``'s API with ``token``; its JSON object answer."""
    from paasport.view.remote import TOKEN_ENV, request_json

    if not token:
        raise UsageError(
            f"cluster {cluster.name} is changed through its API at {cluster.api_url}, which "
            f"needs a token: pass --token or set {TOKEN_ENV} (make one on a host of "
            f"{cluster.name} with: paasport token create --team TEAM)"
        )
    answer = request_json(
        cluster, method, path, body=body, token=token, timeout=REMOTE_WRITE_TIMEOUT_SECONDS
    )
    if not isinstance(answer, dict):
        raise PermanentError(f"cluster {cluster.name}: API answered {answer!r}, not an object")
    return answer


def through_api(
    cluster: ClusterConfig, path: str, body: dict[str, Any], token: str | None
) -> dict[str, Any]:
    """POST a mutation to ``cluster``'s API with ``token``; its answer (``_outcome``'s JSON)."""
    answer = through_api_json(cluster, "POST", path, body, token)
    if "tag" not in answer:
        raise PermanentError(f"cluster {cluster.name}: API answered {answer!r}, not a tag")
    return answer
