"""The proxy's view of namespaces, pure: HAProxy server stats + registry backends -> rows.

``paasport mesh-status`` renders ``mesh_view``; ``paasport status -v`` calls
``proxy_state_by_task`` to show each task's state in the proxy (up, drain, down, maint).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass

from paasport.discovery.haproxy_config import FREE_PORT
from paasport.discovery.haproxy_stats import ServerStat
from paasport.discovery.registry import Backend
from paasport.types import Namespace


@dataclass(frozen=True)
class BackendView:
    """One backend of a namespace as the proxy sees it (``task_id`` None: unknown address)."""

    namespace: str
    addr: str
    task_id: str | None
    state: str  # up | down | drain | maint | not in proxy
    status: str  # HAProxy's words: "UP", "DOWN 1/2", "DRAIN", ...
    check: str  # "L7OK/200 in 1ms"
    sessions: int
    total_sessions: int
    weight: int
    agent_id: str | None

    def to_json(self) -> dict[str, object]:
        return asdict(self)


@dataclass(frozen=True)
class NamespaceView:
    namespace: str
    proxy_port: int | None
    backends: tuple[BackendView, ...]

    @property
    def up(self) -> int:
        return sum(1 for b in self.backends if b.state == "up")

    def to_json(self) -> dict[str, object]:
        return {
            "namespace": self.namespace,
            "proxy_port": self.proxy_port,
            "up": self.up,
            "total": len(self.backends),
            "backends": [b.to_json() for b in self.backends],
        }


def _check(s: ServerStat) -> str:
    if not s.check_status:
        return ""
    text = s.check_status + (f"/{s.check_code}" if s.check_code else "")
    return text + (f" in {s.check_duration_ms}ms" if s.check_duration_ms is not None else "")


def _is_free(s: ServerStat) -> bool:
    hp = s.host_port
    return s.state == "maint" and (hp is None or hp[1] == FREE_PORT)


def mesh_view(
    namespaces: Sequence[Namespace], stats: Sequence[ServerStat], backends: Sequence[Backend]
) -> tuple[NamespaceView, ...]:
    """Per namespace: every server the proxy holds for it, plus registered ones it lacks."""
    views = []
    for ns in sorted(namespaces, key=lambda n: n.full_name):
        name = ns.full_name
        registered = {(b.host, b.port): b for b in backends if b.namespace == name}
        rows: list[BackendView] = []
        seen: set[tuple[str, int]] = set()
        for s in stats:
            if s.proxy != name or _is_free(s):
                continue
            hp = s.host_port
            b = registered.get(hp) if hp else None
            if s.state == "maint" and b is None:
                continue  # a slot that held a task that is gone
            if hp:
                seen.add(hp)
            rows.append(
                BackendView(
                    name,
                    s.addr,
                    b.task_id if b else None,
                    s.state,
                    s.status,
                    _check(s),
                    s.scur,
                    s.stot,
                    s.weight,
                    b.agent_id if b else None,
                )
            )
        for hp, b in sorted(registered.items()):
            if hp not in seen:
                rows.append(
                    BackendView(
                        name,
                        f"{b.host}:{b.port}",
                        b.task_id,
                        "not in proxy",
                        "",
                        "",
                        0,
                        0,
                        b.weight,
                        b.agent_id,
                    )
                )
        views.append(NamespaceView(name, ns.proxy_port, tuple(rows)))
    return tuple(views)


def proxy_state_by_task(
    stats: Sequence[ServerStat], backends: Sequence[Backend]
) -> Mapping[str, Mapping[str, str]]:
    """task_id -> namespace -> proxy state ("up", "drain", "down", "maint"), for ``status -v``.

    A task registered but absent from the proxy reads "not in proxy"."""
    by_addr = {(s.proxy, s.host_port): s for s in stats if s.host_port and not _is_free(s)}
    out: dict[str, dict[str, str]] = {}
    for b in backends:
        s = by_addr.get((b.namespace, (b.host, b.port)))
        out.setdefault(b.task_id, {})[b.namespace] = s.state if s else "not in proxy"
    return out


def backends_up(
    registrations: Sequence[str],
    task_ids: Sequence[str],
    states: Mapping[str, Mapping[str, str]],
) -> int | None:
    """How many of an instance's tasks are "up" in the proxy under every one of its
    registrations (for the replication check); None when the instance is not in discovery."""
    if not registrations:
        return None
    return sum(
        1
        for task_id in task_ids
        if all(states.get(task_id, {}).get(ns) == "up" for ns in registrations)
    )
