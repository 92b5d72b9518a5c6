"""The hosts view: the cluster's nodes, their state, capacity, reservations and paasport tasks.

``load_hosts`` asks the cluster's engine (``engine_for``: on swarm every node, on docker this
host) for ``node_capacity`` once and hands a frozen HostsView on; ``paasport hosts`` (alias
``list-hosts``) renders it, the API serves its ``to_json`` (docs/views.md).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from paasport.config.system import SystemConfig
from paasport.engine.base import Engine, NodeCapacity

READY = "ready"


def _free(total: float | None, reserved: float | None) -> float | None:
    if total is None or reserved is None:
        return None
    return round(total - reserved, 3)


@dataclass(frozen=True)
class HostView:
    node: str  # hostname
    cpus: float | None  # None: the engine does not report capacity
    mem_mb: float | None
    cpus_reserved: float | None
    mem_reserved_mb: float | None
    address: str = ""
    state: str = READY  # ready | down | unknown | disconnected
    availability: str = "active"  # active | pause | drain
    role: str = ""  # manager | worker ("" plain docker)
    labels: Mapping[str, str] = field(default_factory=dict)
    tasks: int | None = None  # paasport tasks running on it (None: unknown)
    node_id: str = ""

    @property
    def down(self) -> bool:
        """Not ready: its tasks are lost and nothing is placed on it."""
        return self.state != READY

    @property
    def cpus_free(self) -> float | None:
        return _free(self.cpus, self.cpus_reserved)

    @property
    def mem_free_mb(self) -> float | None:
        return _free(self.mem_mb, self.mem_reserved_mb)

    def to_json(self) -> dict[str, object]:
        return {
            "node": self.node,
            "node_id": self.node_id,
            "address": self.address,
            "state": self.state,
            "down": self.down,
            "availability": self.availability,
            "role": self.role,
            "cpus": self.cpus,
            "mem_mb": self.mem_mb,
            "cpus_reserved": _rounded(self.cpus_reserved),
            "mem_reserved_mb": _rounded(self.mem_reserved_mb),
            "cpus_free": _rounded(self.cpus_free),
            "mem_free_mb": _rounded(self.mem_free_mb),
            "tasks": self.tasks,
            "labels": dict(sorted(self.labels.items())),
        }


def _rounded(amount: float | None) -> float | None:
    """A sum of reservations without float noise (0.15, not 0.15000000000000002)."""
    return None if amount is None else round(amount, 6)


@dataclass(frozen=True)
class HostsView:
    cluster: str
    hosts: tuple[HostView, ...]

    @property
    def down(self) -> tuple[HostView, ...]:
        return tuple(h for h in self.hosts if h.down)

    def to_json(self) -> dict[str, object]:
        """The cluster and its hosts (docs/views.md)."""
        return {
            "cluster": self.cluster,
            "down": len(self.down),
            "hosts": [h.to_json() for h in self.hosts],
        }


def host_view(n: NodeCapacity) -> HostView:
    return HostView(
        node=n.node,
        cpus=n.cpus,
        mem_mb=n.mem_mb,
        cpus_reserved=n.cpus_reserved,
        mem_reserved_mb=n.mem_reserved_mb,
        address=n.address,
        state=n.state or "unknown",
        availability=n.availability,
        role=n.role,
        labels=dict(n.labels),
        tasks=n.tasks,
        node_id=n.node_id,
    )


def hosts_from(cluster: str, nodes: tuple[NodeCapacity, ...], this_host: str) -> HostsView:
    """The view of ``nodes`` (pure), sorted by hostname (then id: two nodes may share a
    name); an engine that reports none still has this host, with nothing known about it."""
    if not nodes:
        return HostsView(cluster, (HostView(this_host, None, None, None, None),))
    ordered = sorted(nodes, key=lambda n: (n.node, n.node_id))
    return HostsView(cluster, tuple(host_view(n) for n in ordered))


def load_hosts(system: SystemConfig, engine: Engine | None = None) -> HostsView:
    """The local cluster's hosts, from ``engine`` (default: the cluster's, closed after)."""
    import socket

    from paasport.engine.factory import engine_for

    own = engine is None
    engine = engine_for(system.local) if engine is None else engine
    try:
        nodes = tuple(engine.node_capacity())
    finally:
        if own:
            engine.close()
    return hosts_from(system.local_cluster, nodes, socket.gethostname())
