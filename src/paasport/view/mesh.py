"""The mesh view: this host's proxy view of a service's namespaces, for ``paasport mesh-status``.

Loads the service's namespaces, reads HAProxy and the registry once (``view.proxy``) and hands
a frozen MeshView on (rows from ``discovery.mesh.mesh_view``); the API serves its ``to_json``.
"""

from __future__ import annotations

from dataclasses import dataclass

from paasport.config import tree as tree_module
from paasport.config.system import SystemConfig
from paasport.discovery.mesh import NamespaceView, mesh_view
from paasport.errors import NotFoundError
from paasport.view.proxy import DiscoveryReading, read_discovery


@dataclass(frozen=True)
class MeshView:
    service: str
    namespaces: tuple[NamespaceView, ...]
    reading: DiscoveryReading

    @property
    def error(self) -> str:
        """What did not answer (or the note that nothing is registered yet), "" when all did."""
        return self.reading.message

    @property
    def ok(self) -> bool:
        """HAProxy and the registry both answered (mesh-status exits 1 otherwise)."""
        return self.reading.answered

    def to_json(self) -> dict[str, object]:
        """``paasport mesh-status --json`` (docs/views.md)."""
        return {
            "service": self.service,
            "error": self.error or None,
            "proxy_error": self.reading.proxy_error or None,
            "registry_error": self.reading.registry_error or None,
            "namespaces": [v.to_json() for v in self.namespaces],
        }


def load_mesh(system: SystemConfig, service: str) -> MeshView:
    """The mesh view of ``service``: NotFoundError when it or its namespaces do not exist."""
    tree = tree_module.load_tree(system.soa_dir, services=[service])
    if service not in tree.services:
        raise NotFoundError(f"service {service!r} not found in {system.soa_dir}")
    namespaces = [ns for ns in tree.namespaces.values() if ns.service == service]
    if not namespaces:
        raise NotFoundError(f"service {service} has no namespaces (no smartstack.yaml)")
    reading = read_discovery(system)
    return MeshView(service, mesh_view(namespaces, reading.stats, reading.backends), reading)
