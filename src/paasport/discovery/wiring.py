"""Builds discovery's parts from the SystemConfig: the registry, this host's HAProxy, the agent.

Called by ``paasport agent``, ``paasport mesh-status`` and ``paasport up`` (which passes its own
engine and shares nothing else); hands back ready objects, files under ``state_dir``.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

from paasport.config.system import SystemConfig
from paasport.discovery.agent import (
    Agent,
    ConfigSource,
    DesiredHash,
    EventHook,
    default_agent_id,
)
from paasport.discovery.drain import RegistryDrainer
from paasport.discovery.haproxy import HAProxyProcess, read_stats
from paasport.discovery.haproxy_stats import ServerStat
from paasport.discovery.mesh import backends_up, proxy_state_by_task
from paasport.discovery.registry import Backend, Registry
from paasport.engine.base import Engine
from paasport.errors import PaasportError
from paasport.types import AppVersion, InstanceConfig

log = logging.getLogger(__name__)


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

        return ZookeeperRegistry(
            d.zookeeper_hosts, d.zookeeper_path, timeout=d.zookeeper_session_timeout_seconds
        )
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


def _read_stats(system: SystemConfig) -> tuple[tuple[ServerStat, ...], str]:
    """``show stat`` of this host's HAProxy, or () and why it did not answer."""
    sock = haproxy_dir(system) / "admin.sock"
    try:
        return tuple(read_stats(sock)), ""
    except PaasportError as err:
        return (), f"no proxy answer on {sock} (is `paasport up` or `agent` running?): {err}"


def read_proxy(system: SystemConfig, registry: Registry | None = None) -> ProxyReading:
    """Read HAProxy's ``show stat`` and the registry once (for mesh-status and status -v);
    with ``registry`` that client is used (and left open), else one is opened and closed."""
    stats, error = _read_stats(system)
    sqlite_file = registry_file(system)
    if registry is None and system.discovery.registry == "sqlite" and not sqlite_file.exists():
        # a read must not create the registry (nor its folder): nothing registered here yet
        return ProxyReading(stats, (), error or f"no registry at {sqlite_file} yet")
    try:
        if registry is not None:
            backends = tuple(registry.backends())
        else:
            opened = open_registry(system)
            try:
                backends = tuple(opened.backends())
            finally:
                opened.close()
    except PaasportError as err:
        backends, error = (), error or f"registry: {err}"
    return ProxyReading(stats, backends, error)


class BackendsUp:
    """``backends_up(config, app_versions)`` for the monitor: the instance's tasks up in this
    host's proxy, from one proxy and registry reading per pass (re-read after ``max_age``
    seconds). None when the instance is not in discovery or the registry cannot be read (not
    this host's fault); a str saying why when this host's proxy does not answer (the
    replication check makes that CRIT). Keeps one registry client open until ``close``."""

    def __init__(
        self,
        system: SystemConfig,
        max_age: float = 1.0,
        open_registry: Callable[[SystemConfig], Registry] = open_registry,
    ) -> None:
        self.system = system
        self.max_age = max_age
        self._open_registry = open_registry
        self._registry: Registry | None = None
        self._read_at = float("-inf")
        self._states: Mapping[str, Mapping[str, str]] | None = None
        self._proxy_error = ""

    def _registry_client(self) -> Registry | None:
        if self._registry is None:
            sqlite_file = registry_file(self.system)
            if self.system.discovery.registry == "sqlite" and not sqlite_file.exists():
                return None  # nothing registered on this host yet; never create it here
            self._registry = self._open_registry(self.system)
        return self._registry

    def _read(self) -> None:
        stats, self._proxy_error = _read_stats(self.system)
        self._states = None
        if self._proxy_error:
            return
        try:
            registry = self._registry_client()
            if registry is None:
                return
            backends = tuple(registry.backends())
        except PaasportError as err:
            log.info("replication cannot count proxy backends: registry: %s", err)
            return
        self._states = proxy_state_by_task(stats, backends)

    def __call__(self, config: InstanceConfig, versions: Sequence[AppVersion]) -> int | str | None:
        if not config.registrations:
            return None
        now = time.monotonic()
        if now - self._read_at >= self.max_age:
            self._read()
            self._read_at = now
        if self._proxy_error:
            return f"this host's HAProxy does not answer: {self._proxy_error}"
        if self._states is None:
            return None
        task_ids = [t.task_id for v in versions for t in v.tasks]
        return backends_up(config.registrations, task_ids, self._states)

    def close(self) -> None:
        if self._registry is not None:
            self._registry.close()
            self._registry = None


def host_agent_id(engine: Engine, cluster: str) -> str:
    """``<host>/<cluster>``: the host as its engine names it (a Swarm node's hostname; the lab's
    hosts share one kernel but not one UTS name), else this machine's hostname."""
    try:
        name = engine.local_node().name
    except PaasportError as err:
        log.info("agent id from the hostname: the engine did not name this node (%s)", err)
        name = ""
    return f"{name}/{cluster}" if name else default_agent_id(cluster)


def build_agent(
    system: SystemConfig,
    engine: Engine,
    interval: float = 0.3,
    agent_id: str | None = None,
    *,
    source: ConfigSource,
    on_event: EventHook | None = None,
    desired_hash: DesiredHash | None = None,
) -> Agent:
    """The agent for this host (own mesh HealthMonitor: namespace checks differ from the
    reconciler's task checks, and sharing one monitor would reset both trackers). ``source``:
    the desired-state store's ``agent_view`` (its one last-good policy; the platform passes
    it); ``on_event`` gets what people should see (HAProxy restarted), e.g. into the event log."""
    return Agent(
        engine,
        open_registry(system),
        proxy_for(system),
        source,
        agent_id=agent_id or host_agent_id(engine, system.local_cluster),
        interval=interval,
        on_event=on_event,
        desired_hash=desired_hash,
        # many hosts: a host whose engine is gone longer than a registry session leaves the
        # proxies, as a host that died would; one host: its live-restored tasks keep serving
        withdraw_after=system.discovery.zookeeper_session_timeout_seconds
        if system.local.engine != "docker"
        else None,
    )


def build_drainer(system: SystemConfig) -> RegistryDrainer:
    """The Drainer for ``drain_method: proxy`` (give it to deployd instead of NoopDrainer)."""
    return RegistryDrainer(open_registry(system))
