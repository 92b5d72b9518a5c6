"""The hosts view: the engine's nodes and their capacity (on one host: this host).

``load_hosts`` asks the cluster's engine for ``node_capacity`` and hands a frozen HostsView on;
the API and the coming ``paasport hosts`` render it.
"""

from __future__ import annotations

from dataclasses import dataclass

from paasport.config.system import SystemConfig
from paasport.engine.base import Engine, NodeCapacity


@dataclass(frozen=True)
class HostView:
    node: str
    cpus: float | None  # None: the engine does not report capacity
    mem_mb: float | None
    cpus_reserved: float | None
    mem_reserved_mb: float | None

    def to_json(self) -> dict[str, object]:
        return {
            "node": self.node,
            "cpus": self.cpus,
            "mem_mb": self.mem_mb,
            "cpus_reserved": self.cpus_reserved,
            "mem_reserved_mb": self.mem_reserved_mb,
        }


@dataclass(frozen=True)
class HostsView:
    cluster: str
    hosts: tuple[HostView, ...]

    def to_json(self) -> dict[str, object]:
        """The cluster and its hosts (docs/views.md)."""
        return {"cluster": self.cluster, "hosts": [h.to_json() for h in self.hosts]}


def hosts_from(cluster: str, nodes: tuple[NodeCapacity, ...], this_host: str) -> HostsView:
    """The view of ``nodes`` (pure); an engine that reports none still has this host."""
    if not nodes:
        return HostsView(cluster, (HostView(this_host, None, None, None, None),))
    return HostsView(
        cluster,
        tuple(
            HostView(n.node, n.cpus, n.mem_mb, n.cpus_reserved, n.mem_reserved_mb)
            for n in sorted(nodes, key=lambda n: n.node)
        ),
    )


def load_hosts(system: SystemConfig, engine: Engine | None = None) -> HostsView:
    """The local cluster's hosts, from ``engine`` (default: the configured one)."""
    import socket

    from paasport.engine.factory import engine_for

    engine = engine if engine is not None else engine_for(system.local)
    return hosts_from(system.local_cluster, tuple(engine.node_capacity()), socket.gethostname())
