"""The deploy-history view: a service's deploys and starts/stops from its git tags, newest first.

``load_deploy_history`` loads the service, reads its repo's tags (``deploy.workflow.history``)
and who made each one from the event log's ``mark`` events (``view.events``), and hands a
frozen DeployHistoryView on; ``paasport deploy-history`` and the API render it. ``read_marks``
tells ``wait-for-deployment`` what a deploy group is marked at.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

from paasport.config import tree as tree_module
from paasport.config.system import SystemConfig
from paasport.config.tree import SoaTree
from paasport.deploy import workflow
from paasport.deploy.git import GitRepo
from paasport.errors import NotFoundError, PaasportError
from paasport.monitoring.events import Event, EventKind
from paasport.view.events import load_events


@dataclass(frozen=True)
class DeployHistoryView:
    service: str
    entries: tuple[workflow.HistoryEntry, ...]

    def to_json(self) -> list[dict[str, object]]:
        """``paasport deploy-history --json`` (docs/views.md)."""
        return [e.as_json() for e in self.entries]


def who_by_tag(marks: Iterable[Event]) -> dict[str, str]:
    """tag name -> who made it, from ``mark`` events (a rollback's marker tag too). Pure."""
    out: dict[str, str] = {}
    for event in marks:
        user = event.data.get("user")
        if not isinstance(user, str):
            continue
        for key in ("tag", "rollback_tag"):
            tag = event.data.get(key)
            if isinstance(tag, str):
                out[tag] = user
    return out


def load_deploy_history(
    system: SystemConfig,
    service: str,
    deploy_group: str | None = None,
    limit: int | None = None,
    *,
    cluster: str | None = None,
) -> DeployHistoryView:
    """Deploy and control tags of ``service`` (only ``deploy_group``'s when given; only those
    concerning ``cluster`` when given: its instances' deploy groups, its starts and stops)."""
    tree = tree_module.load_tree(system.soa_dir, [service], system=system)
    target = workflow.target_from_tree(tree, service, write=False)
    marks = load_events(system, service=service, kinds=(EventKind.MARK.value,), limit=None)
    with GitRepo(target.require_git_url()) as repo:
        entries = workflow.history(target, repo, deploy_group, who_by_tag(marks.events))
    if cluster is not None:
        if cluster not in tree.clusters and cluster not in system.clusters:
            known = ", ".join(sorted(set(tree.clusters) | set(system.clusters)))
            raise NotFoundError(f"-c {cluster}: no such cluster (clusters: {known})")
        groups = {c.deploy_group for c in tree.instances_for(service=service, cluster=cluster)}
        entries = [e for e in entries if concerns_cluster(e, cluster, groups)]
    return DeployHistoryView(service, tuple(entries[:limit] if limit is not None else entries))


def concerns_cluster(entry: workflow.HistoryEntry, cluster: str, groups: set[str]) -> bool:
    """A deploy of one of the cluster's deploy groups, or a start/stop of one of its
    instances (``cluster.instance``). Pure."""
    if entry.kind == "deploy":
        return entry.deploy_group in groups
    return entry.target.startswith(f"{cluster}.")


@dataclass(frozen=True)
class MarkReading:
    """What a deploy group's tags say, read just now (``fresh``) or not at all."""

    fresh: bool  # False: no git_url, or git did not answer: a mark may still land unseen
    marked: str | None = None  # the sha the group is marked at now (None: never marked)
    before: tuple[str, ...] = ()  # every sha ever marked for the group, newest first
    why_not: str = ""  # why the tags could not be read (not fresh)


def read_marks(system: SystemConfig, tree: SoaTree, service: str, deploy_group: str) -> MarkReading:
    """The group's marks from the repo's tags; ``deployments.json`` is regenerated from them
    first when the service's config is complete (what ``generate-deployments`` writes), so
    a mark made just before is seen by whoever reads the file next."""
    try:
        complete = not tree.errors and service not in tree.incomplete_services
        target = workflow.target_from_tree(tree, service, write=complete)
        if not target.git_url:
            return MarkReading(False, why_not=f"{service}: service.yaml has no git_url")
        with GitRepo(target.require_git_url()) as repo:
            workflow.generate(target, repo)  # reads the tags afresh (git ls-remote)
            commits = workflow.deployed_commits(repo.tag_refs(), deploy_group)
    except PaasportError as err:
        return MarkReading(False, why_not=str(err))
    before = tuple(t.sha for t in commits)
    return MarkReading(True, before[0] if before else None, before)
