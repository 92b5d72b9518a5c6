"""This host's proxy and registry, read once for ``view.status`` and ``view.mesh``.

Reads HAProxy's ``show stat`` over its admin socket and the registry's backends, keeping apart
which of the two did not answer (a dead proxy and an unreachable registry mean different
things to a person); hands a DiscoveryReading on.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

from paasport.config.system import SystemConfig
from paasport.discovery.haproxy import read_stats
from paasport.discovery.haproxy_stats import ServerStat
from paasport.discovery.mesh import proxy_state_by_task
from paasport.discovery.registry import Backend
from paasport.discovery.wiring import haproxy_dir, open_registry, registry_file
from paasport.errors import PaasportError


@dataclass(frozen=True)
class DiscoveryReading:
    """What this host's HAProxy and the registry answered; the errors say who did not."""

    stats: tuple[ServerStat, ...]
    backends: tuple[Backend, ...]
    socket: str  # HAProxy's admin socket
    proxy_error: str = ""  # why HAProxy did not answer
    registry_error: str = ""  # why the registry did not answer
    note: str = ""  # nothing broken, worth a line: no registry written here yet

    @property
    def answered(self) -> bool:
        return not self.proxy_error and not self.registry_error

    @property
    def message(self) -> str:
        """One line for people: what did not answer (or the note), "" when all is well."""
        if self.proxy_error:
            return (
                f"no proxy answer on {self.socket} (is `paasport up` or `agent` running?): "
                f"{self.proxy_error}"
            )
        if self.registry_error:
            return f"registry unreachable: {self.registry_error}"
        return self.note

    def states(self) -> Mapping[str, Mapping[str, str]]:
        """task_id -> namespace -> state in this host's proxy (up, drain, down, maint, ...)."""
        return proxy_state_by_task(self.stats, self.backends)


def read_discovery(system: SystemConfig) -> DiscoveryReading:
    """Read HAProxy's stats and the registry once; neither is created by reading it."""
    sock = haproxy_dir(system) / "admin.sock"
    proxy_error = ""
    stats: tuple[ServerStat, ...] = ()
    try:
        stats = tuple(read_stats(sock))
    except PaasportError as err:
        proxy_error = str(err).removeprefix(f"haproxy socket {sock}: ")
    sqlite_file = registry_file(system)
    if system.discovery.registry == "sqlite" and not sqlite_file.exists():
        # a read must not create the registry (nor its folder): nothing registered here yet
        return DiscoveryReading(
            stats, (), str(sock), proxy_error, note=f"no registry at {sqlite_file} yet"
        )
    try:
        registry = open_registry(system)
        try:
            backends = tuple(registry.backends())
        finally:
            registry.close()
    except PaasportError as err:
        return DiscoveryReading(stats, (), str(sock), proxy_error, registry_error=str(err))
    return DiscoveryReading(stats, backends, str(sock), proxy_error)
