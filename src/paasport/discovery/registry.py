"""The discovery registry seam: the Registry protocol, its value types and an in-memory fake.

Agents register healthy tasks as Backends and acknowledge the registry version their proxy
applied; the drainer marks tasks draining. Backends: ``sqlite_registry`` (one host, default)
and ``zk_registry`` (ZooKeeper, many hosts); ``MemoryRegistry`` is the fake for unit tests.
"""

from __future__ import annotations

import threading
from collections.abc import Mapping
from dataclasses import dataclass, field, replace
from typing import Literal, Protocol

BackendState = Literal["up", "drain"]


@dataclass(frozen=True, order=True)
class Backend:
    """One routable copy of a task in one namespace, as an agent registered it."""

    namespace: str
    task_id: str
    host: str
    port: int
    agent_id: str
    state: BackendState = "up"
    weight: int = 1
    registered_at: float = 0.0  # when the agent first registered it (metrics only)
    # its instance's canary_weight_percent: the instance's tasks together take this share of
    # the namespace's traffic (0: an even share of the rest); the proxy turns it into weights
    share: float = 0.0

    @property
    def key(self) -> tuple[str, str]:
        return (self.namespace, self.task_id)

    def same_route(self, other: Backend) -> bool:
        """True when both route identically (``registered_at`` is not part of the route)."""
        return replace(self, registered_at=0.0) == replace(other, registered_at=0.0)


@dataclass(frozen=True)
class DrainMark:
    """A task marked draining in one namespace: at registry ``version``, at time ``since``."""

    namespace: str
    task_id: str
    version: int
    since: float


@dataclass(frozen=True)
class AgentReport:
    """What one live agent last acknowledged: the applied version and per-server sessions."""

    agent_id: str
    version: int
    time: float
    sessions: Mapping[str, int] = field(default_factory=dict)  # "namespace/task_id" -> scur
    # task id -> what its host saw of it for the autoscaler: "scur" (requests in flight through
    # this host's proxy), "cpu_at"/"cpu_total"/"cpu_system"/"cpu_online" (a docker stats
    # reading); only tasks of autoscaled instances on this agent's host
    loads: Mapping[str, Mapping[str, float]] = field(default_factory=dict)


@dataclass(frozen=True)
class Snapshot:
    """A consistent read of the registry: every backend (drain marks applied) at ``version``."""

    version: int
    backends: tuple[Backend, ...]
    drains: tuple[DrainMark, ...] = ()


def plain_loads(loads: object) -> dict[str, dict[str, float]]:
    """``AgentReport.loads`` from what a registry stored (bad entries dropped). Pure."""
    out: dict[str, dict[str, float]] = {}
    if not isinstance(loads, Mapping):
        return out
    for task, values in loads.items():
        if isinstance(values, Mapping):
            out[str(task)] = {
                str(k): float(v)
                for k, v in values.items()
                if isinstance(v, int | float) and not isinstance(v, bool)
            }
    return out


def session_key(namespace: str, task_id: str) -> str:
    return f"{namespace}/{task_id}"


def apply_drains(
    backends: tuple[Backend, ...], drains: tuple[DrainMark, ...]
) -> tuple[Backend, ...]:
    """Backends with the state ``drain`` wherever a drain mark names them (pure)."""
    marked = {(d.namespace, d.task_id) for d in drains}
    return tuple(sorted(replace(b, state="drain") if b.key in marked else b for b in backends))


class Registry(Protocol):
    """Where agents publish backends and acks; raises RegistryUnavailable when unreachable.

    Every method returns or raises within the backend's deadline (ZooKeeper: ``call_timeout``,
    SQLite: its busy timeout), so no agent, deployd or monitor pass waits on it forever."""

    def register(self, backend: Backend) -> None:
        """Add or update one backend; the version only moves when the route changed."""
        ...

    def deregister(self, namespace: str, task_id: str) -> None: ...

    def set_draining(self, namespace: str, task_id: str, draining: bool, now: float) -> int:
        """Mark or unmark a task draining in one namespace; returns the version after it."""
        ...

    def drain_marks(self) -> tuple[DrainMark, ...]: ...

    def backends(self, namespace: str | None = None) -> tuple[Backend, ...]:
        """Registered backends (state ``drain`` where a drain mark applies), sorted."""
        ...

    def snapshot(self) -> Snapshot: ...

    def version(self) -> int: ...

    def ack(
        self, agent_id: str, version: int, now: float, sessions: Mapping[str, int] | None = None,
        loads: Mapping[str, Mapping[str, float]] | None = None,
    ) -> None:  # fmt: skip
        """Record that ``agent_id``'s proxy applied ``version`` (and its drain sessions, and the
        loads of its host's autoscaled tasks)."""
        ...

    def acks(self) -> Mapping[str, int]:
        """agent id -> last applied version, live agents only."""
        ...

    def reports(self) -> Mapping[str, AgentReport]:
        """agent id -> last report, live agents only."""
        ...

    def close(self) -> None: ...


class MemoryRegistry:
    """In-process Registry for unit tests and single-process use; same semantics as sqlite."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._backends: dict[tuple[str, str], Backend] = {}
        self._drains: dict[tuple[str, str], DrainMark] = {}
        self._reports: dict[str, AgentReport] = {}
        self._version = 0

    def register(self, backend: Backend) -> None:
        with self._lock:
            old = self._backends.get(backend.key)
            if old is not None and old.same_route(backend):
                return
            self._backends[backend.key] = backend
            self._version += 1

    def deregister(self, namespace: str, task_id: str) -> None:
        with self._lock:
            if self._backends.pop((namespace, task_id), None) is not None:
                self._version += 1

    def set_draining(self, namespace: str, task_id: str, draining: bool, now: float) -> int:
        with self._lock:
            key = (namespace, task_id)
            if draining and key not in self._drains:
                self._version += 1
                self._drains[key] = DrainMark(namespace, task_id, self._version, now)
            elif not draining and self._drains.pop(key, None) is not None:
                self._version += 1
            return self._version

    def drain_marks(self) -> tuple[DrainMark, ...]:
        with self._lock:
            return tuple(self._drains[k] for k in sorted(self._drains))

    def backends(self, namespace: str | None = None) -> tuple[Backend, ...]:
        snap = self.snapshot()
        return tuple(b for b in snap.backends if namespace is None or b.namespace == namespace)

    def snapshot(self) -> Snapshot:
        with self._lock:
            drains = tuple(self._drains[k] for k in sorted(self._drains))
            return Snapshot(
                self._version, apply_drains(tuple(self._backends.values()), drains), drains
            )

    def version(self) -> int:
        with self._lock:
            return self._version

    def ack(
        self, agent_id: str, version: int, now: float, sessions: Mapping[str, int] | None = None,
        loads: Mapping[str, Mapping[str, float]] | None = None,
    ) -> None:  # fmt: skip
        with self._lock:
            self._reports[agent_id] = AgentReport(agent_id, version, now, dict(sessions or {}),
                                                  plain_loads(loads))  # fmt: skip

    def acks(self) -> Mapping[str, int]:
        return {a: r.version for a, r in self.reports().items()}

    def reports(self) -> Mapping[str, AgentReport]:
        with self._lock:
            return dict(self._reports)

    def forget_agent(self, agent_id: str) -> None:
        """Drop an agent's report (what a ZooKeeper session expiry does)."""
        with self._lock:
            self._reports.pop(agent_id, None)

    def close(self) -> None:
        return None
