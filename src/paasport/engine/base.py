"""The Engine protocol: the one seam between paasport and a scheduler (Docker, Swarm).

The reconciler, status, logs and discovery call it; ``engine.docker`` and ``engine.swarm``
implement it. Every container/service an engine creates carries the LABEL_* labels so the
whole state is recovered from the engine itself after a restart.
"""

from __future__ import annotations

import threading
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Protocol

from paasport.types import AppSpec, AppVersion

LABEL_PREFIX = "paasport."
LABEL_SERVICE = "paasport.service"
LABEL_INSTANCE = "paasport.instance"
LABEL_CLUSTER = "paasport.cluster"
LABEL_GIT_SHA = "paasport.git_sha"
LABEL_CONFIG_HASH = "paasport.config_hash"
LABEL_APP_ID = "paasport.app_id"
LABEL_DESIRED_REPLICAS = "paasport.desired_replicas"
LABEL_HEALTHCHECK = "paasport.healthcheck"  # JSON of types.HealthCheck, read back into Task
LABEL_DEPLOY_GROUP = "paasport.deploy_group"
LABEL_IMAGE = "paasport.image"
# one-off tasks (``paasport run`` and the actions of scheduled jobs) carry these labels and
# never LABEL_SERVICE/LABEL_INSTANCE/LABEL_CLUSTER: no list of app versions ever sees them, so
# they are never counted in replication, drained, bounced or registered
LABEL_RUN = "paasport.run"  # the run id
LABEL_RUN_KIND = "paasport.run.kind"  # "adhoc" | "job"
LABEL_RUN_SERVICE = "paasport.run.service"
LABEL_RUN_INSTANCE = "paasport.run.instance"  # the adhoc instance, or job.action
LABEL_RUN_CLUSTER = "paasport.run.cluster"
LABEL_RUN_GIT_SHA = "paasport.run.git_sha"
LABEL_RUN_COMMAND = "paasport.run.command"
LABEL_RUN_STARTED = "paasport.run.started"  # epoch seconds
LABEL_RUN_BY = "paasport.run.by"  # who asked (user@host)
RUN_EXTRA_PREFIX = "paasport.run.x."  # the caller's own labels (a job's run number, action...)


@dataclass(frozen=True)
class NodeCapacity:
    """One node of the cluster as the engine sees it (plain docker: this host)."""

    node: str  # hostname
    cpus: float
    mem_mb: float
    cpus_reserved: float
    mem_reserved_mb: float
    address: str = ""  # where other hosts reach this node's tasks ("" unknown)
    state: str = "ready"  # swarm: ready | down | unknown | disconnected
    availability: str = "active"  # swarm: active | pause | drain
    role: str = ""  # swarm: manager | worker ("" plain docker)
    labels: Mapping[str, str] = field(default_factory=dict)  # node labels (placement)
    tasks: int = 0  # paasport tasks running on it
    node_id: str = ""


@dataclass(frozen=True)
class NodeInfo:
    """The host this process runs on, as its engine names it (for the discovery agent)."""

    node_id: str  # the engine's node id ("" on plain docker)
    name: str  # hostname
    address: str  # where other hosts reach tasks of this node ("127.0.0.1" on plain docker)


@dataclass(frozen=True)
class ExecResult:
    exit_code: int
    output: str


@dataclass(frozen=True)
class LogLine:
    task_id: str
    task_name: str
    timestamp: str
    stream: str  # "stdout" | "stderr"
    message: str


@dataclass(frozen=True)
class OneOff:
    """One one-off task as the engine reports it (``engine.start_one_off``)."""

    run_id: str
    task_id: str  # container id (docker) or Swarm service id
    kind: str  # "adhoc" | "job"
    service: str
    instance: str
    cluster: str
    git_sha: str
    command: str
    started: float
    state: str  # "pending" | "running" | "exited"
    exit_code: int | None = None
    node: str = ""
    by: str = ""
    finished: float | None = None
    extra: Mapping[str, str] = field(default_factory=dict)  # the caller's labels

    @property
    def done(self) -> bool:
        return self.state == "exited"


class Engine(Protocol):
    """What the reconciler needs from a scheduler; all methods raise paasport errors only."""

    cluster: str

    def list_app_versions(
        self, service: str | None = None, instance: str | None = None
    ) -> Sequence[AppVersion]:
        """Every app version (with its tasks) this engine runs for paasport on this cluster.

        With no filter this is ONE list call to the engine (the reconciler relies on it).
        """
        ...

    def create_app_version(self, spec: AppSpec, count: int) -> AppVersion:
        """Start ``count`` tasks of ``spec`` (labelled, resources applied, port published)."""
        ...

    def scale_app_version(self, spec: AppSpec, count: int) -> None:
        """Add tasks of an existing app version until it has ``count`` live tasks."""
        ...

    def stop_task(self, task_id: str, grace_seconds: float) -> None:
        """SIGTERM, wait up to ``grace_seconds``, then SIGKILL; removes the task."""
        ...

    def delete_app_version(self, service: str, instance: str, config_hash: str) -> None:
        """Remove every task of one app version at once (no grace)."""
        ...

    def exec_in_task(self, task_id: str, cmd: str, timeout: float) -> ExecResult:
        """Run ``/bin/sh -c cmd`` inside a task (``healthcheck_mode: cmd``)."""
        ...

    def logs(
        self,
        service: str,
        instance: str | None = None,
        follow: bool = False,
        since: float | None = None,
        tail: int | None = None,
        stop: threading.Event | None = None,
    ) -> Iterator[LogLine]:
        """Merged task logs, oldest first; with ``follow`` keeps yielding new lines until
        ``stop`` is set (then it returns within about a second, quiet tasks or not)."""
        ...

    def node_capacity(self) -> Sequence[NodeCapacity]:
        """Every node of the cluster (plain docker: this host), with capacity and state."""
        ...

    def local_node(self) -> NodeInfo:
        """The node this engine's daemon runs on (the agent registers tasks under its address)."""
        ...

    def image_exists(self, image: str) -> bool: ...

    def task_stats(self, task_id: str) -> Mapping[str, object] | None:
        """Docker's stats JSON of one running task, read at once (no two-sample wait), or None
        when this engine cannot see it (a Swarm task on another node)."""
        ...

    # -- one-off tasks (``paasport run``, job actions) ---------------------------------------
    def start_one_off(
        self, spec: AppSpec, run_id: str, kind: str, labels: Mapping[str, str], by: str = ""
    ) -> OneOff:
        """Start one task of ``spec`` that runs its command once (no restart, no port, no
        health check), labelled LABEL_RUN*; ``labels`` are kept as ``OneOff.extra``."""
        ...

    def list_one_offs(self, service: str | None = None, kind: str | None = None
                      ) -> Sequence[OneOff]:  # fmt: skip
        """Every one-off task of this cluster, running or exited (ONE list call)."""
        ...

    def one_off_output(
        self, task_id: str, follow: bool = False, stop: threading.Event | None = None
    ) -> Iterator[str]:
        """Its output lines (stdout and stderr); ``follow`` until it exits or ``stop``."""
        ...

    def remove_one_off(self, task_id: str) -> None:
        """Remove it, running or not (already gone is success)."""
        ...

    def close(self) -> None:
        """Release the engine's connections (the platform calls it at exit)."""
        ...
