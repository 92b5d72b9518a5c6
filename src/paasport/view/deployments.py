"""The deployments view: what each deploy group of a service is marked at (sha, image, when).

``load_deployments`` reads the service's repo tags once (``deploy.workflow``) and hands a frozen
DeploymentsView on; the API serves it at ``/v1/services/{service}/deployments``, each entry the
JSON ``paasport get-latest-deployment --json`` prints (``latest_json``, shared with it).
"""

from __future__ import annotations

from dataclasses import dataclass

from paasport.config.system import SystemConfig, effective_registry
from paasport.deploy import tags, workflow
from paasport.deploy.git import GitRepo
from paasport.deploy.images import image_name
from paasport.view.catalog import load_catalog_tree


def latest_json(
    service: str, deploy_group: str, latest: tags.DeployTag | None, registry: str | None
) -> dict[str, object]:
    """One deploy group's newest deploy tag (all null but the names: never marked). Pure."""
    if latest is None:
        return {
            "service": service,
            "deploy_group": deploy_group,
            "git_sha": None,
            "image_version": None,
            "docker_image": None,
            "tag": None,
            "time": None,
        }
    return {
        "service": service,
        "deploy_group": deploy_group,
        "git_sha": latest.sha,
        "image_version": latest.image_version,
        "docker_image": image_name(service, latest.sha, registry, latest.image_version),
        "tag": latest.ref.removeprefix(tags.TAG_PREFIX),
        "time": tags.parse_timestamp(latest.timestamp).isoformat(),
    }


@dataclass(frozen=True)
class DeploymentsView:
    service: str
    groups: tuple[dict[str, object], ...]  # latest_json per deploy group, deploy.yaml order

    def to_json(self) -> list[dict[str, object]]:
        return [dict(g) for g in self.groups]


def load_deployments(system: SystemConfig, service: str) -> DeploymentsView:
    """Each deploy group of ``service`` with what it is marked at (one read of the tags)."""
    tree = load_catalog_tree(system, service)
    target = workflow.target_from_tree(tree, service, write=False)
    registry = effective_registry(tree.services[service], system)
    with GitRepo(target.require_git_url()) as repo:
        latest = tags.latest_deploy_tags(repo.tag_refs(), list(target.deploy_groups))
    return DeploymentsView(
        service,
        tuple(latest_json(service, g, latest.get(g), registry) for g in target.deploy_groups),
    )
