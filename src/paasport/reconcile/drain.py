"""The Drainer protocol: how the reconciler takes a task out of rotation before stopping it.

``reconcile.reconciler`` calls ``start`` once per DrainTask, then polls ``status`` each step and
stops the task when it is done (or drain_timeout_seconds passed), then ``forget``s it; after a
restart it asks ``marked`` which live tasks a drain had begun on, and finishes those drains.
``NoopDrainer`` serves ``drain_method: noop``; discovery provides the registry-backed drainer.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence, Set
from dataclasses import dataclass
from typing import Protocol

from paasport.types import InstanceConfig, Task


class DrainProgress(Protocol):
    """What a drainer reports (structural, so discovery can return its own dataclass)."""

    @property
    def done(self) -> bool: ...

    @property
    def waiting_on(self) -> str: ...


@dataclass(frozen=True)
class DrainStatus:
    """``done``: safe to stop the task now; ``waiting_on``: what the drain still waits for."""

    done: bool
    waiting_on: str = ""


class Drainer(Protocol):
    """Drains tasks; every method is idempotent and raises paasport errors only."""

    def start(self, task: Task, config: InstanceConfig | None) -> None:
        """Begin draining ``task`` (no new requests reach it). Calling it twice is harmless."""
        ...

    def status(self, task: Task, config: InstanceConfig | None, now: float) -> DrainProgress:
        """Whether ``task`` has drained (every proxy acknowledged, sessions at zero)."""
        ...

    def forget(self, task: Task) -> None:
        """Drop any drain state kept for ``task`` (called once it has been stopped or is gone)."""
        ...

    def marked(self, tasks: Sequence[Task]) -> Mapping[str, float]:
        """task id -> when its drain began, for those of ``tasks`` already being drained (a
        drain begun before a restart: the reconciler finishes it instead of leaving the task
        out of rotation for good)."""
        ...

    def fence(self, task: Task, config: InstanceConfig | None) -> None:
        """``task`` was lost with its host and removed: stop routing to it now, and keep it out
        of rotation if that host comes back and its agent registers it again before the engine
        has stopped it there (a drain mark that outlives the task, swept by ``sweep``)."""
        ...

    def sweep(self, live: Set[str], now: float) -> int:
        """Drop the fences (drain marks) of tasks not in ``live`` once they are old; how many."""
        ...


class NoopDrainer:
    """``drain_method: noop``: never waits; a task is safe to stop at once."""

    def start(self, task: Task, config: InstanceConfig | None) -> None:
        return None

    def status(self, task: Task, config: InstanceConfig | None, now: float) -> DrainStatus:
        return DrainStatus(done=True)

    def forget(self, task: Task) -> None:
        return None

    def marked(self, tasks: Sequence[Task]) -> Mapping[str, float]:
        return {}

    def fence(self, task: Task, config: InstanceConfig | None) -> None:
        return None

    def sweep(self, live: Set[str], now: float) -> int:
        return 0
