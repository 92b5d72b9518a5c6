"""Regenerates every service's deployments.json from its git tags, so tags pushed by any tool count.

``paasport up`` runs ``DeploymentsRefresher.run_forever`` in a thread; it hands each service to
``deploy.workflow.generate`` (which writes only on change, atomically), and deployd's watcher
sees the rename and reconciles that service at once.
"""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from paasport.config.system import SystemConfig
from paasport.config.tree import load_tree
from paasport.deploy.git import GitRepo, resolve_git_url
from paasport.deploy.workflow import ServiceTarget, generate
from paasport.errors import PaasportError

log = logging.getLogger("paasport.refresh")


def targets(soa_dir: Path, system: SystemConfig | None = None) -> list[ServiceTarget]:
    """One ServiceTarget per service with a git_url (every cluster's control branches)."""
    tree = load_tree(soa_dir, system=system)
    out: list[ServiceTarget] = []
    for name, svc in sorted(tree.services.items()):
        if not svc.git_url:
            continue
        branches = {
            f"{c.cluster}.{c.instance}": c.deploy_group for c in tree.instances_for(service=name)
        }
        out.append(
            ServiceTarget(
                service=name,
                git_url=resolve_git_url(svc.git_url, soa_dir / name),
                deploy_groups=svc.deploy_groups,
                control_branches=branches,
                soa_dir=soa_dir,
            )
        )
    return out


def refresh_once(soa_dir: Path, system: SystemConfig | None = None) -> list[str]:
    """Regenerate every service's deployments.json; returns the services whose file changed."""
    changed: list[str] = []
    for target in targets(soa_dir, system):
        try:
            with GitRepo(target.require_git_url()) as repo:
                if generate(target, repo).changed:
                    changed.append(target.service)
        except PaasportError as err:
            log.warning("%s: cannot regenerate deployments.json: %s", target.service, err)
    return changed


class DeploymentsRefresher:
    """Calls ``refresh_once`` every ``interval`` seconds until stopped."""

    def __init__(
        self, soa_dir: Path, system: SystemConfig | None = None, interval: float = 10.0
    ) -> None:
        self.soa_dir = soa_dir
        self.system = system
        self.interval = interval

    def run_forever(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                for service in refresh_once(self.soa_dir, self.system):
                    log.info("%s: deployments.json regenerated from new git tags", service)
            except PaasportError as err:
                log.warning("refreshing deployments: %s", err)
            stop.wait(self.interval)
