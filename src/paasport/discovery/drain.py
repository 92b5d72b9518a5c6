"""Draining by acknowledgement: the registry-backed Drainer the reconciler calls before a stop.

``start`` marks the task draining in every namespace it is in (the registry version moves);
``status`` is done once every live agent acked a version at or past the mark and reported zero
sessions on that server there (bounded by ``drain_timeout_seconds``); ``forget`` clears it all;
``marked`` names the tasks whose drain already began (a reconciler restarted mid-drain).
Structurally a ``paasport.reconcile.drain.Drainer`` (discovery never imports reconcile).
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable, Mapping, Sequence, Set
from dataclasses import dataclass

from paasport.discovery.registry import AgentReport, DrainMark, Registry, session_key
from paasport.types import InstanceConfig, Task

# How long a lost task's fence (its drain mark) outlives the task: a host that comes back has
# its engine stop the task well within this, and its agent withdraws it.
FENCE_SECONDS = 900.0


@dataclass(frozen=True)
class DrainStatus:
    """Same fields as ``paasport.reconcile.drain.DrainStatus``."""

    done: bool
    waiting_on: str = ""


def drain_status(
    task_id: str,
    namespaces: Iterable[str],
    marks: Iterable[DrainMark],
    reports: Mapping[str, AgentReport],
    now: float,
    timeout: float | None,
) -> DrainStatus:
    """Pure: is ``task_id`` out of every live proxy's rotation with no sessions left?"""
    names = sorted(set(namespaces))
    if not names:
        return DrainStatus(True, "")
    mine = {m.namespace: m for m in marks if m.task_id == task_id and m.namespace in names}
    unmarked = [n for n in names if n not in mine]
    if unmarked:
        return DrainStatus(False, f"drain not marked in {', '.join(unmarked)}")
    need = max(m.version for m in mine.values())
    waiting: list[str] = []
    for agent_id, report in sorted(reports.items()):
        if report.version < need:
            waiting.append(f"proxy {agent_id} (applied version {report.version} < {need})")
            continue
        sessions = sum(report.sessions.get(session_key(n, task_id), 0) for n in names)
        if sessions:
            waiting.append(f"{sessions} open session(s) on proxy {agent_id}")
    if not waiting:
        return DrainStatus(True, "")
    since = min(m.since for m in mine.values())
    if timeout is not None and now - since >= timeout:
        return DrainStatus(True, f"drain timeout ({timeout:g}s) while waiting on {waiting[0]}")
    return DrainStatus(False, "; ".join(waiting))


def drains_begun(task_ids: Iterable[str], marks: Iterable[DrainMark]) -> dict[str, float]:
    """Pure: task id -> its earliest drain mark, for the ``task_ids`` that have one."""
    wanted = set(task_ids)
    out: dict[str, float] = {}
    for m in marks:
        if m.task_id in wanted:
            out[m.task_id] = min(m.since, out.get(m.task_id, m.since))
    return out


def stale_fences(
    marks: Iterable[DrainMark], live: Set[str], now: float, age: float
) -> tuple[DrainMark, ...]:
    """Pure: the drain marks of tasks not in ``live`` set more than ``age`` seconds ago."""
    return tuple(m for m in marks if m.task_id not in live and now - m.since > age)


def task_namespaces(registry: Registry, task: Task, config: InstanceConfig | None) -> set[str]:
    """Where the task may be routed: its registrations plus wherever an agent registered it."""
    names = set(config.registrations) if config is not None else set()
    names.update(b.namespace for b in registry.backends() if b.task_id == task.task_id)
    return names


def start_drain(registry: Registry, task: Task, namespaces: Iterable[str], now: float) -> None:
    for ns in sorted(set(namespaces)):
        registry.set_draining(ns, task.task_id, True, now)


def is_drained(
    registry: Registry,
    task: Task,
    namespaces: Iterable[str],
    now: float,
    timeout: float | None = None,
) -> DrainStatus:
    return drain_status(
        task.task_id, namespaces, registry.drain_marks(), registry.reports(), now, timeout
    )


def finish_drain(registry: Registry, task: Task, namespaces: Iterable[str], now: float) -> None:
    """The task is stopped: drop its marks and its backends (an agent would drop them too)."""
    names = set(namespaces) | {
        m.namespace for m in registry.drain_marks() if m.task_id == task.task_id
    }
    for ns in sorted(names):
        registry.set_draining(ns, task.task_id, False, now)
        registry.deregister(ns, task.task_id)


class RegistryDrainer:
    """The Drainer of ``drain_method: proxy``; state lives in the registry, not in this object."""

    def __init__(self, registry: Registry, clock: Callable[[], float] = time.time) -> None:
        self.registry = registry
        self.clock = clock

    def start(self, task: Task, config: InstanceConfig | None) -> None:
        if config is not None and config.drain_method == "noop":
            return
        start_drain(self.registry, task, task_namespaces(self.registry, task, config), self.clock())

    def status(self, task: Task, config: InstanceConfig | None, now: float) -> DrainStatus:
        if config is not None and config.drain_method == "noop":
            return DrainStatus(True, "")
        names = task_namespaces(self.registry, task, config)
        names |= {m.namespace for m in self.registry.drain_marks() if m.task_id == task.task_id}
        # The reconciler decides the drain timeout (reconcile.step.drain_stops, from one since).
        return is_drained(self.registry, task, names, now, None)

    def forget(self, task: Task) -> None:
        finish_drain(self.registry, task, (), self.clock())

    def marked(self, tasks: Sequence[Task]) -> Mapping[str, float]:
        return drains_begun((t.task_id for t in tasks), self.registry.drain_marks())

    def fence(self, task: Task, config: InstanceConfig | None) -> None:
        names = task_namespaces(self.registry, task, config)
        now = self.clock()
        start_drain(self.registry, task, names, now)  # kept: a re-registration stays drained
        for ns in sorted(names):
            self.registry.deregister(ns, task.task_id)

    def sweep(self, live: Set[str], now: float) -> int:
        old = stale_fences(self.registry.drain_marks(), live, now, FENCE_SECONDS)
        for mark in old:
            self.registry.set_draining(mark.namespace, mark.task_id, False, now)
        return len(old)
