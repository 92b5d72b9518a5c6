"""One-off tasks (``paasport run``, the actions of scheduled jobs) as labels, both ways. Pure.

Both engines label a one-off with LABEL_RUN* only (never LABEL_SERVICE and co.), so no list of
app versions, replication count, drain or registration ever sees it, and read it back from the
labels alone: the platform recovers every run after a restart from the engine.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping

from paasport.engine.base import (
    LABEL_RUN,
    LABEL_RUN_BY,
    LABEL_RUN_CLUSTER,
    LABEL_RUN_COMMAND,
    LABEL_RUN_GIT_SHA,
    LABEL_RUN_INSTANCE,
    LABEL_RUN_KIND,
    LABEL_RUN_SERVICE,
    LABEL_RUN_STARTED,
    RUN_EXTRA_PREFIX,
    OneOff,
)
from paasport.types import AppSpec

KINDS = ("adhoc", "job")


def command_of(spec: AppSpec) -> str:
    """What the task runs, as a person would type it ("" for the image's own command)."""
    if spec.cmd is not None:
        return spec.cmd
    if spec.args is not None:
        return shlex.join(spec.args)
    return ""


def one_off_labels(
    spec: AppSpec, run_id: str, kind: str, labels: Mapping[str, str], by: str, now: float
) -> dict[str, str]:
    if kind not in KINDS:
        raise ValueError(f"one-off kind {kind!r}: expected one of {', '.join(KINDS)}")
    out = {
        LABEL_RUN: run_id,
        LABEL_RUN_KIND: kind,
        LABEL_RUN_SERVICE: spec.service,
        LABEL_RUN_INSTANCE: spec.instance,
        LABEL_RUN_CLUSTER: spec.cluster,
        LABEL_RUN_GIT_SHA: spec.git_sha,
        LABEL_RUN_COMMAND: command_of(spec)[:4000],
        LABEL_RUN_STARTED: f"{now:.6f}",
        LABEL_RUN_BY: by,
    }
    out.update({RUN_EXTRA_PREFIX + k: str(v) for k, v in labels.items()})
    return out


def one_off_filters(
    cluster: str, service: str | None = None, kind: str | None = None, run_id: str | None = None
) -> list[str]:
    """The ``label`` filters selecting one-off tasks of ``cluster``."""
    labels = [f"{LABEL_RUN_CLUSTER}={cluster}"]
    for key, value in ((LABEL_RUN_SERVICE, service), (LABEL_RUN_KIND, kind), (LABEL_RUN, run_id)):
        if value is not None:
            labels.append(f"{key}={value}")
    return labels


def _float(text: str | None) -> float:
    try:
        return float(text or 0.0)
    except ValueError:
        return 0.0


def one_off_from_labels(
    labels: Mapping[str, str],
    task_id: str,
    state: str,
    exit_code: int | None,
    node: str = "",
    finished: float | None = None,
) -> OneOff | None:
    """The OneOff a task with these labels is; None when they are not a one-off's."""
    run_id = labels.get(LABEL_RUN)
    service = labels.get(LABEL_RUN_SERVICE)
    if not run_id or not service:
        return None
    return OneOff(
        run_id=run_id,
        task_id=task_id,
        kind=labels.get(LABEL_RUN_KIND, "adhoc"),
        service=service,
        instance=labels.get(LABEL_RUN_INSTANCE, ""),
        cluster=labels.get(LABEL_RUN_CLUSTER, ""),
        git_sha=labels.get(LABEL_RUN_GIT_SHA, ""),
        command=labels.get(LABEL_RUN_COMMAND, ""),
        started=_float(labels.get(LABEL_RUN_STARTED)),
        state=state,
        exit_code=exit_code if state == "exited" else None,
        node=node,
        by=labels.get(LABEL_RUN_BY, ""),
        finished=finished,
        extra={
            k.removeprefix(RUN_EXTRA_PREFIX): v
            for k, v in labels.items()
            if k.startswith(RUN_EXTRA_PREFIX)
        },
    )


def docker_one_off_state(docker_state: str) -> str:
    """A container's state as a one-off's: created -> pending; running/paused/restarting ->
    running; exited/dead/removing -> exited."""
    state = docker_state.lower()
    if state == "created":
        return "pending"
    if state in ("running", "paused", "restarting"):
        return "running"
    return "exited"


def swarm_one_off_state(task_state: str) -> str:
    """A Swarm task's state as a one-off's (moby's TaskState names)."""
    state = task_state.lower()
    if state in ("complete", "failed", "shutdown", "rejected", "orphaned", "remove"):
        return "exited"
    if state == "running":
        return "running"
    return "pending"
