"""Bounce actions: plans are data; ``bounce.plan`` returns them, the reconciler performs them."""

from __future__ import annotations

from dataclasses import dataclass

from paasport.types import AppSpec, Task


@dataclass(frozen=True)
class CreateAppVersion:
    """Start a new app version with ``count`` tasks."""

    spec: AppSpec
    count: int


@dataclass(frozen=True)
class ScaleAppVersion:
    """Bring the (already existing) desired app version up to ``count`` live tasks."""

    spec: AppSpec
    count: int


@dataclass(frozen=True)
class DrainTask:
    """Take a task out of rotation gracefully: drain (per drain_method), then stop it."""

    task: Task


@dataclass(frozen=True)
class KillTask:
    """Stop a task now, without draining (brutal bounces, dead or surplus-unhealthy tasks)."""

    task: Task
    reason: str = ""


@dataclass(frozen=True)
class DeleteAppVersion:
    """Remove an app version that has no live task left (or whose instance is gone)."""

    service: str
    instance: str
    config_hash: str


Action = CreateAppVersion | ScaleAppVersion | DrainTask | KillTask | DeleteAppVersion
