"""The gate deployd checks before each mutation: open only while it holds the cluster lock.

``platform.lock`` provides the gate (the ZooKeeper lock, or always open on one host);
``reconcile.deployd`` skips steps while it is closed and wraps the engine and the drainer it
hands to ``reconcile_instance`` so a lock lost mid-step stops the next mutation at once.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence, Set
from typing import Protocol

from paasport.engine.base import Engine, ExecResult, LogLine, NodeCapacity, NodeInfo, OneOff
from paasport.errors import TemporaryError
from paasport.reconcile.drain import Drainer, DrainProgress
from paasport.types import AppSpec, AppVersion, InstanceConfig, Task


class Gate(Protocol):
    def is_open(self) -> bool:
        """Whether this process may act now (a memory read: called before every mutation)."""
        ...

    def why_closed(self) -> str:
        """What it waits for, in words ("deployd lab1/42 holds the cluster lock")."""
        ...


class OpenGate:
    """One host (the flock already keeps a second deployd out): always open."""

    def is_open(self) -> bool:
        return True

    def why_closed(self) -> str:
        return ""


class GateClosed(TemporaryError):
    """This deployd does not hold the cluster lock (any more): nothing is done until it does."""

    backoff = False


def _check(gate: Gate, what: str) -> None:
    if not gate.is_open():
        why = gate.why_closed() or "not holding the cluster lock"
        raise GateClosed(f"not {what}: {why}")


class GatedEngine:
    """``engine`` whose mutations pass only while ``gate`` is open; reads always pass."""

    def __init__(self, engine: Engine, gate: Gate) -> None:
        self.engine = engine
        self.gate = gate
        self.cluster = engine.cluster

    def list_app_versions(
        self, service: str | None = None, instance: str | None = None
    ) -> Sequence[AppVersion]:
        return self.engine.list_app_versions(service, instance)

    def create_app_version(self, spec: AppSpec, count: int) -> AppVersion:
        _check(self.gate, f"creating {spec.service}.{spec.instance}")
        return self.engine.create_app_version(spec, count)

    def scale_app_version(self, spec: AppSpec, count: int) -> None:
        _check(self.gate, f"scaling {spec.service}.{spec.instance}")
        self.engine.scale_app_version(spec, count)

    def stop_task(self, task_id: str, grace_seconds: float) -> None:
        _check(self.gate, f"stopping task {task_id[:12]}")
        self.engine.stop_task(task_id, grace_seconds)

    def delete_app_version(self, service: str, instance: str, config_hash: str) -> None:
        _check(self.gate, f"removing an app version of {service}.{instance}")
        self.engine.delete_app_version(service, instance, config_hash)

    def exec_in_task(self, task_id: str, cmd: str, timeout: float) -> ExecResult:
        return self.engine.exec_in_task(task_id, cmd, timeout)

    def logs(
        self,
        service: str,
        instance: str | None = None,
        follow: bool = False,
        since: float | None = None,
        tail: int | None = None,
        stop: threading.Event | None = None,
    ) -> Iterator[LogLine]:
        return self.engine.logs(service, instance, follow, since, tail, stop)

    def node_capacity(self) -> Sequence[NodeCapacity]:
        return self.engine.node_capacity()

    def local_node(self) -> NodeInfo:
        return self.engine.local_node()

    def image_exists(self, image: str) -> bool:
        return self.engine.image_exists(image)

    def task_stats(self, task_id: str) -> Mapping[str, object] | None:
        return self.engine.task_stats(task_id)

    def start_one_off(self, spec: AppSpec, run_id: str, kind: str, labels: Mapping[str, str],
                      by: str = "") -> OneOff:  # fmt: skip
        _check(self.gate, f"starting one-off task {run_id} of {spec.service}")
        return self.engine.start_one_off(spec, run_id, kind, labels, by)

    def list_one_offs(self, service: str | None = None, kind: str | None = None
                      ) -> Sequence[OneOff]:  # fmt: skip
        return self.engine.list_one_offs(service, kind)

    def one_off_output(
        self, task_id: str, follow: bool = False, stop: threading.Event | None = None
    ) -> Iterator[str]:
        return self.engine.one_off_output(task_id, follow, stop)

    def remove_one_off(self, task_id: str) -> None:
        _check(self.gate, f"removing one-off task {task_id[:12]}")
        self.engine.remove_one_off(task_id)

    def close(self) -> None:
        self.engine.close()


class GatedDrainer:
    """``drainer`` whose drain marks are set and removed only while ``gate`` is open."""

    def __init__(self, drainer: Drainer, gate: Gate) -> None:
        self.drainer = drainer
        self.gate = gate

    def start(self, task: Task, config: InstanceConfig | None) -> None:
        _check(self.gate, f"draining task {task.name or task.task_id[:12]}")
        self.drainer.start(task, config)

    def status(self, task: Task, config: InstanceConfig | None, now: float) -> DrainProgress:
        return self.drainer.status(task, config, now)

    def forget(self, task: Task) -> None:
        _check(self.gate, f"clearing the drain of {task.name or task.task_id[:12]}")
        self.drainer.forget(task)

    def marked(self, tasks: Sequence[Task]) -> Mapping[str, float]:
        return self.drainer.marked(tasks)

    def fence(self, task: Task, config: InstanceConfig | None) -> None:
        _check(self.gate, f"fencing task {task.name or task.task_id[:12]}")
        self.drainer.fence(task, config)

    def sweep(self, live: Set[str], now: float) -> int:
        _check(self.gate, "sweeping old fences")
        return self.drainer.sweep(live, now)
