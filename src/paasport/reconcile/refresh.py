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
from paasport.deploy.git import GitRepo
from paasport.deploy.workflow import ServiceTarget, generate, target_from_tree
from paasport.errors import PaasportError

log = logging.getLogger("paasport.refresh")


def targets(soa_dir: Path, system: SystemConfig | None = None) -> list[ServiceTarget]:
    """One ServiceTarget per service with a git_url whose configuration is complete.

    A service with config errors is skipped, as ``generate-deployments`` refuses it: an instance
    left out for a typo must not silently lose its entry in deployments.json.
    """
    tree = load_tree(soa_dir, system=system)
    out: list[ServiceTarget] = []
    for name, svc in sorted(tree.services.items()):
        if not svc.git_url:
            continue
        if name in tree.incomplete_services:
            log.warning("%s: configuration has errors; deployments.json left as it is", name)
            continue
        out.append(target_from_tree(tree, name))
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
            except Exception:  # a bug must not end the loop: tags would never be read again
                log.exception("refreshing deployments failed; retrying in %.0f s", self.interval)
            stop.wait(self.interval)
