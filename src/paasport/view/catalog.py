"""The catalog view: the services of soa-configs, one service's info, and the clusters.

``paasport list``, ``info`` and ``list-clusters`` print these as ``--json``; the API serves the
same JSON at ``/v1/services``, ``/v1/services/{service}`` and ``/v1/clusters``. Pure: each takes
an already loaded SoaTree (``load_catalog_tree`` loads one).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from paasport.config.placement import placement_rules
from paasport.config.system import SystemConfig
from paasport.config.tree import SoaTree, load_tree
from paasport.errors import ConfigProblem, NotFoundError, UsageError
from paasport.types import InstanceConfig


def load_catalog_tree(system: SystemConfig, service: str | None = None) -> SoaTree:
    """The tree of every service (or only ``service``, NotFoundError when it has no folder)."""
    if not system.soa_dir.is_dir():
        raise UsageError(f"soa-configs directory {system.soa_dir} does not exist (--soa-dir)")
    tree = load_tree(system.soa_dir, [service] if service else None, system=system)
    if service is not None and service not in tree.services:
        raise NotFoundError(f"no service {service!r} in {system.soa_dir}")
    return tree


def problem_json(p: ConfigProblem) -> dict[str, Any]:
    return {**asdict(p), "text": str(p)}


def services_json(tree: SoaTree) -> list[dict[str, Any]]:
    """``paasport list --json``: each service, its description and cluster.instance names."""
    return [
        {
            "service": name,
            "description": svc.description,
            "instances": sorted(
                f"{c.cluster}.{c.instance}" for c in tree.instances_for(service=name)
            ),
        }
        for name, svc in sorted(tree.services.items())
    ]


def clusters_json(system: SystemConfig, tree: SoaTree) -> list[dict[str, Any]]:
    """``paasport list-clusters --json``: the system config's clusters and those files name."""
    rows: list[dict[str, Any]] = []
    for name in sorted(set(system.clusters) | set(tree.clusters)):
        cluster = system.clusters.get(name)
        rows.append(
            {
                "cluster": name,
                "engine": cluster.engine if cluster else None,
                "docker_host": cluster.docker_host if cluster else None,
                "local": name == system.local_cluster,
                "configured": cluster is not None,
                "instances": len(tree.instances_for(cluster=name)),
            }
        )
    return rows


def instance_row(c: InstanceConfig) -> dict[str, Any]:
    return {
        "cluster": c.cluster,
        "instance": c.instance,
        "instances": c.instances,
        "cpus": c.cpus,
        "mem": c.mem,
        "disk": c.disk,
        "deploy_group": c.deploy_group,
        "registrations": list(c.registrations),
        "bounce_method": c.bounce_method,
        "healthcheck_mode": c.healthcheck.mode,
        "pool": c.pool,
        "placement": list(placement_rules(c.constraints)),  # docs/placement.md
    }


def info_json(tree: SoaTree, service: str) -> dict[str, Any]:
    """``paasport info --json``: owner, repo, instances per cluster, namespaces, errors."""
    svc = tree.services[service]
    mon = tree.monitoring[service]
    instances = sorted(tree.instances_for(service=service), key=lambda c: (c.cluster, c.instance))
    namespaces = sorted(
        (ns for ns in tree.namespaces.values() if ns.service == service), key=lambda n: n.name
    )
    return {
        "service": service,
        "description": svc.description,
        "git_url": svc.git_url,
        "docker_registry": svc.docker_registry,
        "team": mon.team,
        "deploy_groups": list(svc.deploy_groups),
        "instances": [instance_row(c) for c in instances],
        "namespaces": [
            {"namespace": ns.full_name, "proxy_port": ns.proxy_port, "mode": ns.mode}
            for ns in namespaces
        ],
        "errors": [problem_json(p) for p in tree.errors],
    }
