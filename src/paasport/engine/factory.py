"""Build the engine a cluster names in the system config (``paasport.yaml``).

The reconciler, ``paasport up``, status and logs call ``engine_for(cluster)`` and get an
``Engine``; back-end modules (and their SDKs) are imported only here, only when asked for.
"""

from __future__ import annotations

from typing import Protocol

from paasport.engine.base import Engine
from paasport.errors import EngineError


class ClusterLike(Protocol):
    """What the factory reads of ``paasport.config.system.ClusterConfig``."""

    @property
    def name(self) -> str: ...

    @property
    def engine(self) -> str: ...

    @property
    def docker_host(self) -> str | None: ...


def engine_for(cluster: ClusterLike) -> Engine:
    """The engine of ``cluster``; an EngineError names an engine paasport cannot run."""
    if cluster.engine == "docker":
        from paasport.engine.docker import DockerEngine

        return DockerEngine(cluster.name, base_url=cluster.docker_host)
    if cluster.engine == "swarm":
        from paasport.engine.swarm import SwarmEngine

        return SwarmEngine(cluster.name, base_url=cluster.docker_host)
    raise EngineError(
        f"cluster {cluster.name}: unknown engine {cluster.engine!r} (expected 'docker' or 'swarm')"
    )


def node_engine_for(cluster: ClusterLike) -> Engine:
    """The view of THIS host only (the discovery agent's engine): on plain docker the cluster's
    engine itself; on swarm the local daemon (``$DOCKER_HOST`` or its default socket), whose
    containers are this node's tasks (a worker cannot list the cluster's services)."""
    if cluster.engine == "swarm":
        from paasport.engine.swarm import SwarmNodeEngine

        return SwarmNodeEngine(cluster.name)  # the local daemon: DOCKER_HOST or its socket
    return engine_for(cluster)
