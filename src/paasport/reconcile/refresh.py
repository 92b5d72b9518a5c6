"""Regenerates every service's deployments.json from its git tags, so tags pushed by any tool count.

``paasport up`` runs ``DeploymentsRefresher.run_forever`` in a thread, reading the services from
the shared desired-state store (last good targets: no tree load per round); it hands each one to
``deploy.workflow.generate`` (which writes only on change, atomically), and deployd's watcher
sees the rename and reconciles that service at once.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from pathlib import Path

from paasport.config.system import SystemConfig
from paasport.deploy.git import GitRepo
from paasport.deploy.workflow import ServiceTarget, generate
from paasport.errors import PaasportError

log = logging.getLogger("paasport.refresh")


TargetsFn = Callable[[], list[ServiceTarget]]


def refresh_once(targets_fn: TargetsFn) -> list[str]:
    """Regenerate every service's deployments.json; returns the services whose file changed.
    ``targets_fn``: the desired-state store's last good targets (``DesiredStore.targets``)."""
    changed: list[str] = []
    for target in targets_fn():
        try:
            with GitRepo(target.require_git_url()) as repo:
                if generate(target, repo).changed:
                    changed.append(target.service)
        except PaasportError as err:
            log.warning("%s: cannot regenerate deployments.json: %s", target.service, err)
        except Exception:  # one service's failure (a bug, an OSError) never skips the others
            log.exception("%s: regenerating deployments.json failed", target.service)
    return changed


class DeploymentsRefresher:
    """Calls ``refresh_once`` every ``interval`` seconds until stopped."""

    def __init__(
        self,
        soa_dir: Path,
        system: SystemConfig | None = None,
        interval: float = 10.0,
        *,
        targets_fn: TargetsFn,
    ) -> None:
        self.soa_dir = soa_dir
        self.system = system
        self.interval = interval
        self.targets_fn = targets_fn

    def run_forever(self, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                changed = refresh_once(self.targets_fn)
                for service in changed:
                    log.info("%s: deployments.json regenerated from new git tags", service)
            except PaasportError as err:
                log.warning("refreshing deployments: %s", err)
            except Exception:  # a bug must not end the loop: tags would never be read again
                log.exception("refreshing deployments failed; retrying in %.0f s", self.interval)
            stop.wait(self.interval)
