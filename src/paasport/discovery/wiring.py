"""Builds discovery's parts from the SystemConfig: the registry, this host's HAProxy, the agent.

Called by ``paasport agent``, ``paasport mesh-status`` and ``paasport up`` (which passes its own
engine and shares nothing else); hands back ready objects, files under ``state_dir``.
"""

from __future__ import annotations

import time
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from paasport.config.system import SystemConfig
from paasport.discovery.agent import Agent, ConfigSource, default_agent_id
from paasport.discovery.drain import RegistryDrainer
from paasport.discovery.haproxy import HAProxyProcess, read_stats
from paasport.discovery.haproxy_stats import ServerStat
from paasport.discovery.mesh import backends_up, proxy_state_by_task
from paasport.discovery.registry import Backend, Registry
from paasport.engine.base import Engine
from paasport.errors import PaasportError
from paasport.types import AppVersion, InstanceConfig


def haproxy_dir(system: SystemConfig) -> Path:
    return Path(system.state_dir).resolve() / "haproxy"  # HAProxy wants absolute socket paths


def registry_file(system: SystemConfig) -> Path:
    """The one-host registry's SQLite file."""
    return Path(system.state_dir) / "registry.sqlite"


def open_registry(system: SystemConfig) -> Registry:
    """The configured registry: SQLite under state_dir (default) or ZooKeeper."""
    d = system.discovery
    if d.registry == "zookeeper":
        from paasport.discovery.zk_registry import ZookeeperRegistry

        return ZookeeperRegistry(d.zookeeper_hosts, d.zookeeper_path)
    from paasport.discovery.sqlite_registry import SqliteRegistry

    return SqliteRegistry(registry_file(system))


def proxy_for(system: SystemConfig) -> HAProxyProcess:
    d = system.discovery
    return HAProxyProcess(haproxy_dir(system), binary=d.haproxy_bin, binds=d.proxy_bind)


@dataclass(frozen=True)
class ProxyReading:
    """This host's proxy stats and the registry's backends; ``error`` says what did not answer."""

    stats: tuple[ServerStat, ...]
    backends: tuple[Backend, ...]
    error: str = ""


def read_proxy(system: SystemConfig) -> ProxyReading:
    """Read HAProxy's ``show stat`` and the registry once (for mesh-status and status -v)."""
    sock = haproxy_dir(system) / "admin.sock"
    error = ""
    try:
        stats = read_stats(sock)
    except PaasportError as err:
        error = f"no proxy answer on {sock} (is `paasport up` or `agent` running?): {err}"
        stats = ()
    sqlite_file = registry_file(system)
    if system.discovery.registry == "sqlite" and not sqlite_file.exists():
        # a read must not create the registry (nor its folder): nothing registered here yet
        return ProxyReading(tuple(stats), (), error or f"no registry at {sqlite_file} yet")
    try:
        registry = open_registry(system)
        try:
            backends = tuple(registry.backends())
        finally:
            registry.close()
    except PaasportError as err:
        backends, error = (), error or f"registry: {err}"
    return ProxyReading(tuple(stats), backends, error)


class BackendsUp:
    """``backends_up(config, app_versions)`` for the monitor that ``paasport up`` runs: the
    instance's tasks up in this host's proxy, from one proxy and registry reading per pass
    (re-read after ``max_age`` seconds); None when it is not in discovery or nothing answered."""

    def __init__(self, system: SystemConfig, max_age: float = 1.0) -> None:
        self.system = system
        self.max_age = max_age
        self._read_at = float("-inf")
        self._states: Mapping[str, Mapping[str, str]] | None = None

    def __call__(self, config: InstanceConfig, versions: Sequence[AppVersion]) -> int | None:
        if not config.registrations:
            return None
        now = time.monotonic()
        if now - self._read_at >= self.max_age:
            reading = read_proxy(self.system)
            self._read_at = now
            self._states = (
                None if reading.error else proxy_state_by_task(reading.stats, reading.backends)
            )
        if self._states is None:
            return None
        task_ids = [t.task_id for v in versions for t in v.tasks]
        return backends_up(config.registrations, task_ids, self._states)


def build_agent(
    system: SystemConfig,
    engine: Engine,
    interval: float = 0.3,
    agent_id: str | None = None,
    *,
    source: ConfigSource,
) -> Agent:
    """The agent for this host (own mesh HealthMonitor: namespace checks differ from the
    reconciler's task checks, and sharing one monitor would reset both trackers). ``source``:
    the desired-state store's ``agent_view`` (its one last-good policy; the platform passes it)."""
    return Agent(
        engine,
        open_registry(system),
        proxy_for(system),
        source,
        agent_id=agent_id or default_agent_id(system.local_cluster),
        interval=interval,
    )


def build_drainer(system: SystemConfig) -> RegistryDrainer:
    """The Drainer for ``drain_method: proxy`` (give it to deployd instead of NoopDrainer)."""
    return RegistryDrainer(open_registry(system))
