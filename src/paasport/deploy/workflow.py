"""The deploy verbs as operations on one service: mark, start/stop, rollback, generate, history.

Called by ``paasport.cli.deploy_cmds`` (which loads the soa-configs into a ServiceTarget);
reads and writes tags through ``deploy.git.GitRepo``, decides with the pure ``deploy.tags``
functions and writes deployments.json through ``deploy.deployments``.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

from paasport.config.tree import SoaTree
from paasport.deploy import tags
from paasport.deploy.deployments import deployments_path, write_deployments
from paasport.deploy.git import GitRepo, Tagger, check_git_url
from paasport.errors import ConfigError, NotFoundError, PermanentError, UsageError

# How long a mark may wait for a second of its own (one tag per second per group or instance:
# N concurrent marks of one group take about N seconds), and how far ahead of this clock an
# existing tag may be before a mark refuses rather than wait for it.
TAG_DEADLINE_SECONDS = 60.0
MAX_AHEAD_SECONDS = 5.0


@dataclass(frozen=True)
class ServiceTarget:
    """What the deploy verbs need to know about one service, from its soa-configs folder."""

    service: str
    git_url: str | None  # resolved (a relative path is made absolute by the caller)
    deploy_groups: tuple[str, ...] = ()
    control_branches: Mapping[str, str] = field(default_factory=dict)  # cluster.instance -> group
    soa_dir: Path | None = None  # where <service>/deployments.json lives; None: never write
    git_url_source: str = ""  # where git_url came from, for errors: "<file>: git_url", "--git-url"

    def require_git_url(self) -> str:
        """The git url, refused (naming where it came from) when git must not be given it."""
        if not self.git_url:
            raise UsageError(f"{self.service}: service.yaml has no git_url (or pass --git-url)")
        why = check_git_url(self.git_url)
        if why is not None:
            raise UsageError(f"{self.git_url_source or self.service + ': git_url'}: {why}")
        return self.git_url

    def require_group(self, deploy_group: str) -> None:
        if deploy_group not in self.deploy_groups:
            known = ", ".join(self.deploy_groups) or "none"
            raise NotFoundError(
                f"{self.service}: deploy group {deploy_group!r} is not in deploy.yaml "
                f"(deploy groups: {known})"
            )


def target_from_tree(tree: SoaTree, service: str, *, write: bool = True) -> ServiceTarget:
    """The ServiceTarget of a loaded service (``write``: deployments.json goes in its folder)."""
    config = tree.services.get(service)
    if config is None:
        raise NotFoundError(f"unknown service {service!r} in {tree.soa_dir}")
    branches = {
        f"{c.cluster}.{c.instance}": c.deploy_group for c in tree.instances_for(service=service)
    }
    return ServiceTarget(
        service=service,
        git_url=config.git_url,
        deploy_groups=config.deploy_groups,
        control_branches=branches,
        soa_dir=tree.soa_dir if write else None,
        git_url_source=f"{config.source_file or service}: git_url",
    )


@dataclass(frozen=True)
class GenerateResult:
    path: Path | None
    changed: bool
    document: Mapping[str, object]


@dataclass(frozen=True)
class TagResult:
    tag: str
    sha: str
    generated: GenerateResult | None
    rollback_tag: str | None = None  # PaaSTA's marker on the sha a rollback left


class Present:
    """The present as a mark sees it: ``now`` (the caller's clock reading) plus the monotonic
    time since; lets callers inject ``now`` and still wait for real seconds to pass."""

    def __init__(self, now: float, sleep: Callable[[float], None] = time.sleep) -> None:
        self._base = now
        self._start = time.monotonic()
        self._sleep = sleep

    def __call__(self) -> float:
        return self._base + (time.monotonic() - self._start)

    def sleep(self, seconds: float) -> None:
        self._sleep(seconds)


@dataclass(frozen=True)
class HistoryEntry:
    """One deploy or control tag, for ``deploy-history``."""

    timestamp: str  # YYYYMMDDTHHMMSS (UTC), from the tag name
    kind: str  # deploy | start | stop
    target: str  # the deploy group, or cluster.instance for start/stop
    deploy_group: str | None
    sha: str
    image_version: str | None
    tagger: str | None  # who, from the event log (or an old annotated tag); None: unknown
    tag: str

    def as_json(self) -> dict[str, object]:
        return {
            "time": tags.parse_timestamp(self.timestamp).isoformat(),
            "timestamp": self.timestamp,
            "kind": self.kind,
            "target": self.target,
            "deploy_group": self.deploy_group,
            "git_sha": self.sha,
            "image_version": self.image_version,
            "tagger": self.tagger,
            "tag": self.tag,
        }


def generate(target: ServiceTarget, repo: GitRepo | None, *, fresh: bool = True) -> GenerateResult:
    """Regenerate ``<service>/deployments.json`` from the tags (``repo`` None: no git_url)."""
    refs: Mapping[str, str] = {}
    if repo is not None:
        refs = repo.ls_remote() if fresh else repo.tag_refs()
    document = tags.deployments_from_refs(target.service, refs, target.control_branches)
    if target.soa_dir is None:
        return GenerateResult(path=None, changed=False, document=document)
    changed = write_deployments(target.soa_dir, target.service, document)
    return GenerateResult(deployments_path(target.soa_dir, target.service), changed, document)


def _check_writable(target: ServiceTarget) -> None:
    """Refuse before tagging when deployments.json could not be regenerated afterwards."""
    if target.soa_dir is None:
        return
    folder = target.soa_dir / target.service
    if not folder.is_dir():
        raise NotFoundError(f"unknown service {target.service!r}: no folder {folder}")
    if not os.access(folder, os.W_OK):
        raise ConfigError(f"{folder}: not writable, cannot regenerate deployments.json")


def _create_tag(
    repo: GitRepo,
    sha: str,
    *,
    present: Present,
    existing: list[str],
    name_for: Callable[[str], str],
) -> str:
    """Tag ``sha`` with the present second, once that sorts after every ``existing`` timestamp
    of the same kind: when this second is taken, wait for the next one (bounded). A tag is
    never stamped later than the present, so another tool tagging "now" never collides."""
    deadline = present() + TAG_DEADLINE_SECONDS
    while True:
        now = present()
        choice = tags.choose_timestamp(now, existing)
        if choice.stamp is not None:
            name = name_for(choice.stamp)
            if repo.create_tag(name, sha):
                return name
            existing.append(choice.stamp)  # another writer took this second: the next one
            continue
        if choice.wait_seconds > MAX_AHEAD_SECONDS + 1.0:
            raise PermanentError(
                f"the newest tag in {repo.url} is {choice.wait_seconds:.0f} s ahead of this "
                "clock: a tag made now would not be the newest (check the clocks)"
            )
        if now + choice.wait_seconds > deadline:
            raise PermanentError(
                f"could not create a unique tag in {repo.url} within {TAG_DEADLINE_SECONDS:.0f} s"
            )
        present.sleep(choice.wait_seconds)


def mark_for_deployment(
    target: ServiceTarget,
    repo: GitRepo,
    deploy_group: str,
    commit: str,
    *,
    now: float,
    image_version: str | None = None,
    who: str = "paasport",
    sleep: Callable[[float], None] = time.sleep,
) -> TagResult:
    """Tag ``commit`` as what ``deploy_group`` runs (a lightweight tag), then regenerate
    deployments.json. ``who`` is not written to git: the caller records it in the event log."""
    target.require_group(deploy_group)
    why = tags.check_deploy_group(deploy_group)
    if why is None and image_version is not None:
        why = tags.check_image_version(image_version)
    if why is not None:
        raise UsageError(f"{target.service}: {why}")
    _check_writable(target)
    sha = repo.resolve_commit(commit)
    existing = [
        t.timestamp for t in tags.deploy_tags(repo.tag_refs()) if t.deploy_group == deploy_group
    ]
    name = _create_tag(
        repo,
        sha,
        present=Present(now, sleep),
        existing=existing,
        name_for=lambda stamp: tags.deploy_tag_name(deploy_group, stamp, image_version),
    )
    return TagResult(tag=name, sha=sha, generated=_regenerate(target, repo))


def _regenerate(target: ServiceTarget, repo: GitRepo) -> GenerateResult | None:
    return generate(target, repo) if target.soa_dir is not None else None


def deployed(target: ServiceTarget, repo: GitRepo, deploy_group: str) -> tags.DeployTag:
    """The newest deploy tag of the group; NotFoundError when it was never marked."""
    latest = tags.latest_deploy_tags(repo.tag_refs(), [deploy_group]).get(deploy_group)
    if latest is None:
        raise NotFoundError(
            f"{target.service}: deploy group {deploy_group!r} was never marked for deployment "
            f"(run mark-for-deployment -s {target.service} -l {deploy_group} -c COMMIT)"
        )
    return latest


def set_desired_state(
    target: ServiceTarget,
    repo: GitRepo,
    cluster: str,
    instance: str,
    state: tags.ControlState,
    *,
    now: float,
    who: str = "paasport",
    sleep: Callable[[float], None] = time.sleep,
) -> TagResult:
    """A start/stop tag on the sha the instance's deploy group runs (restart = a new start)."""
    branch = f"{cluster}.{instance}"
    group = target.control_branches.get(branch)
    if group is None:
        clusters = sorted({b.split(".", 1)[0] for b in target.control_branches})
        if cluster not in clusters:
            raise NotFoundError(
                f"{target.service}: no instances on cluster {cluster!r} "
                f"(clusters: {', '.join(clusters) or 'none'})"
            )
        raise NotFoundError(f"{target.service}: no instance {instance!r} on cluster {cluster!r}")
    _check_writable(target)
    current = deployed(target, repo, group)
    existing = [t.timestamp for t in tags.control_tags(repo.tag_refs()) if t.branch == branch]
    name = _create_tag(
        repo,
        current.sha,
        present=Present(now, sleep),
        existing=existing,
        name_for=lambda stamp: tags.control_tag_name(cluster, instance, stamp, state),
    )
    return TagResult(tag=name, sha=current.sha, generated=_regenerate(target, repo))


def deployed_commits(refs: Mapping[str, str], deploy_group: str) -> list[tags.DeployTag]:
    """Each sha ever deployed to the group, newest deploy first (one entry per sha)."""
    seen: set[str] = set()
    out: list[tags.DeployTag] = []
    for tag in reversed(tags.deploy_tags(refs)):
        if tag.deploy_group == deploy_group and tag.sha not in seen:
            seen.add(tag.sha)
            out.append(tag)
    return out


def rollback(
    target: ServiceTarget,
    repo: GitRepo,
    deploy_group: str,
    commit: str,
    *,
    now: float,
    force: bool = False,
    who: str = "paasport",
    sleep: Callable[[float], None] = time.sleep,
) -> TagResult:
    """Re-mark the group at a sha it ran before (any sha with ``force``), and put PaaSTA's
    rollback marker ``paasta-<group>[+<iv>]-<ts>-rollback`` on the sha it leaves."""
    target.require_group(deploy_group)
    sha = repo.resolve_commit(commit)
    if not force:
        before = {t.sha for t in deployed_commits(repo.tag_refs(), deploy_group)}
        if sha not in before:
            raise PermanentError(
                f"{target.service}: commit {sha[:12]} was never deployed to {deploy_group!r}; "
                "pass --force to deploy it anyway"
            )
    left = tags.latest_deploy_tags(repo.tag_refs(), [deploy_group]).get(deploy_group)
    result = mark_for_deployment(target, repo, deploy_group, sha, now=now, who=who, sleep=sleep)
    if left is None or left.sha == sha:
        return result
    stamp = tags.parse_deploy_tag(tags.TAG_PREFIX + result.tag, sha)
    assert stamp is not None  # we just made it
    marker = tags.rollback_tag_name(deploy_group, stamp.timestamp, left.image_version)
    made = repo.create_tag(marker, left.sha)
    return TagResult(result.tag, result.sha, result.generated, marker if made else None)


def history(
    target: ServiceTarget,
    repo: GitRepo,
    deploy_group: str | None = None,
    who_by_tag: Mapping[str, str] | None = None,
) -> list[HistoryEntry]:
    """Deploy and start/stop tags, newest first; with a group, only that group's instances.

    ``who_by_tag``: tag name -> who made it, from the event log (paasport's tags are
    lightweight); an old annotated tag's tagger is the fallback, other tools' tags have none.
    """
    if deploy_group is not None:
        target.require_group(deploy_group)
    refs = repo.tag_refs()
    taggers = {ref: who for ref, t in repo.taggers().items() if (who := _who(t)) is not None}
    taggers.update({tags.TAG_PREFIX + tag: who for tag, who in (who_by_tag or {}).items()})
    entries: list[HistoryEntry] = []
    for d in tags.deploy_tags(refs):
        if deploy_group is None or d.deploy_group == deploy_group:
            entries.append(
                HistoryEntry(
                    d.timestamp,
                    "deploy",
                    d.deploy_group,
                    d.deploy_group,
                    d.sha,
                    d.image_version,
                    taggers.get(d.ref),
                    d.ref.removeprefix(tags.TAG_PREFIX),
                )
            )
    for c in tags.control_tags(refs):
        group = target.control_branches.get(c.branch)
        if deploy_group is None or group == deploy_group:
            entries.append(
                HistoryEntry(
                    c.timestamp,
                    c.state,
                    c.branch,
                    group,
                    c.sha,
                    None,
                    taggers.get(c.ref),
                    c.ref.removeprefix(tags.TAG_PREFIX),
                )
            )
    entries.sort(key=lambda e: (e.timestamp, e.tag), reverse=True)
    return entries


def _who(tagger: Tagger | None) -> str | None:
    if tagger is None:
        return None
    return f"{tagger.name} <{tagger.email}>" if tagger.email else tagger.name
