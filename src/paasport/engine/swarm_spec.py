"""Pure translation between paasport and Docker Swarm: one Swarm service per paasport task.

``engine.swarm`` performs the calls. Why one service per task (docs/swarm.md): Swarm cannot
remove a chosen replica of a service, but paasport's bounces drain exactly the task they chose
in every proxy and only then stop it; with a service per task, stopping a task is removing its
service. Restart condition ``none``: the reconciler, not Swarm, replaces dead tasks (with its
crash backoff), as on the docker engine.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from paasport.engine import container_spec as cs
from paasport.engine.base import (
    LABEL_CLUSTER,
    LABEL_CONFIG_HASH,
    LABEL_DESIRED_REPLICAS,
    LABEL_GIT_SHA,
    LABEL_HEALTHCHECK,
    LABEL_IMAGE,
    LABEL_INSTANCE,
    LABEL_SERVICE,
    NodeCapacity,
)
from paasport.types import AppSpec, AppVersion, Task, TaskState

LABEL_TASK = "paasport.task"  # every Swarm service paasport creates is one task
SWARM_SERVICE_ID = "com.docker.swarm.service.id"  # on the task's container
STOP_GRACE_SECONDS = 10.0  # Swarm's SIGTERM -> SIGKILL when a task's service is removed
PULL_DEADLINE_SECONDS = 120.0  # a task still preparing (pulling) after this is dead
_UNSAFE = re.compile(r"[^a-zA-Z0-9]+")
NAME_MAX = 63

# Swarm task states (swarmkit api/types.proto) as paasport's
_STARTING = {
    "new",
    "allocated",
    "pending",
    "assigned",
    "accepted",
    "preparing",
    "ready",
    "starting",
}
_FINISHED = {"complete", "shutdown", "failed"}
_DEAD = {"rejected", "orphaned", "remove"}


_RULE = re.compile(r"([^=!]+)(==|!=)(.*)")
_HOSTNAME = "node.hostname"
_LABELS = "node.labels."


def swarm_constraint(rule: str) -> str:
    """An AppSpec placement rule in Swarm syntax: ``hostname!=lab2`` -> ``node.hostname!=lab2``,
    any other attribute a node label (``pool==batch`` -> ``node.labels.pool==batch``)."""
    match = _RULE.fullmatch(rule)
    if match is None:
        raise ValueError(f"not a placement rule: {rule!r}")  # config.placement writes them
    attr, op, value = match.groups()
    key = _HOSTNAME if attr == "hostname" else f"{_LABELS}{attr}"
    return f"{key}{op}{value}"


def human_rule(constraint: str) -> str:
    """A Swarm constraint as the user wrote it: ``node.labels.pool==batch`` -> ``pool=batch``,
    ``node.hostname!=lab2`` -> ``hostname!=lab2`` (others only lose their ``node.``)."""
    match = _RULE.fullmatch(constraint.replace(" ", ""))
    if match is None:
        return constraint
    key, op, value = match.groups()
    if key.startswith(_LABELS):
        key = key[len(_LABELS) :]
    elif key.startswith("node."):
        key = key[len("node.") :]
    return f"{key}{'=' if op == '==' else op}{value}"


def satisfies(node: NodeCapacity, constraint: str) -> bool:
    """Whether ``node`` meets one Swarm constraint paasport writes (label or hostname);
    True for any other kind, which paasport cannot judge. Pure."""
    match = _RULE.fullmatch(constraint.replace(" ", ""))
    if match is None:
        return True
    key, op, value = match.groups()
    if key == _HOSTNAME:
        actual: str | None = node.node
    elif key.startswith(_LABELS):
        actual = node.labels.get(key[len(_LABELS) :])
    else:
        return True
    return (actual == value) == (op == "==")


def name_part(value: str) -> str:
    """``value`` with what Swarm names refuse turned into ``-``."""
    return _UNSAFE.sub("-", value).strip("-")


def service_name(spec: AppSpec, suffix: str) -> str:
    """``pp-<service>-<instance>-<config8>-<suffix>``: Swarm names allow [a-zA-Z0-9-_], 63 chars."""
    head = _UNSAFE.sub("-", f"pp-{spec.service}-{spec.instance}").strip("-")
    tail = f"-{spec.config_hash[:8]}-{suffix}"
    return head[: NAME_MAX - len(tail)].rstrip("-") + tail


@dataclass(frozen=True)
class ServiceSpec:
    """The arguments of one ``create_service`` (docker-py low level), as plain values."""

    name: str
    image: str
    args: tuple[str, ...] | None
    env: tuple[str, ...]
    labels: Mapping[str, str]
    mounts: tuple[tuple[str, str, bool], ...]  # (target, source, read_only)
    nano_cpus: int
    mem_bytes: int
    constraints: tuple[str, ...]
    container_port: int | None  # None: host network, nothing published
    host_network: bool
    stop_grace_ns: int
    healthcheck_cmd: str | None = None  # healthcheck_mode cmd: Docker's own HEALTHCHECK
    healthcheck_interval_ns: int = 0
    healthcheck_timeout_ns: int = 0
    healthcheck_start_ns: int = 0


def service_spec(spec: AppSpec, suffix: str, now: float) -> ServiceSpec:
    """One task of ``spec`` as a Swarm service: labels like the docker engine's (plus
    ``paasport.task``), cpus/mem as limits AND reservations (so the scheduler places by them),
    env, cmd (as the image's CMD, keeping its entrypoint, like the docker engine), binds, and
    ``spec.placement`` as Swarm constraints."""
    if spec.cmd is not None:
        args: tuple[str, ...] | None = ("/bin/sh", "-c", spec.cmd)
    elif spec.args is not None:
        args = tuple(spec.args)
    else:
        args = None
    check = spec.healthcheck
    cmd_check = check.cmd if check.mode == "cmd" and check.cmd else None
    return ServiceSpec(
        name=service_name(spec, suffix),
        image=spec.image,
        args=args,
        env=tuple(f"{k}={v}" for k, v in sorted(spec.env.items())),
        labels={**cs.labels_for(spec, now), LABEL_TASK: "1"},
        mounts=tuple((v.container_path, v.host_path, v.mode != "RW") for v in spec.volumes),
        nano_cpus=cs.nano_cpus_for(spec.cpus),
        mem_bytes=round(spec.mem * 1024 * 1024),
        constraints=tuple(swarm_constraint(r) for r in spec.placement),
        container_port=None if spec.net == "host" else spec.container_port,
        host_network=spec.net == "host",
        stop_grace_ns=int(STOP_GRACE_SECONDS * 1e9),
        healthcheck_cmd=cmd_check,
        healthcheck_interval_ns=int(max(1.0, check.interval_seconds) * 1e9),
        healthcheck_timeout_ns=int(max(1.0, check.timeout_seconds) * 1e9),
        healthcheck_start_ns=int(check.grace_period_seconds * 1e9),
    )


# -- reading -------------------------------------------------------------------------------
@dataclass(frozen=True)
class Node:
    node_id: str
    hostname: str
    address: str
    state: str  # ready | down | unknown | disconnected
    availability: str
    role: str
    labels: Mapping[str, str]
    nano_cpus: int
    mem_bytes: int


def node_from(payload: Mapping[str, Any]) -> Node:
    desc = payload.get("Description") or {}
    res = desc.get("Resources") or {}
    spec = payload.get("Spec") or {}
    status = payload.get("Status") or {}
    return Node(
        node_id=str(payload.get("ID", "")),
        hostname=str(desc.get("Hostname", "")),
        address=str(status.get("Addr", "")),
        state=str(status.get("State", "unknown")),
        availability=str(spec.get("Availability", "active")),
        role=str(spec.get("Role", "")),
        labels=dict(spec.get("Labels") or {}),
        nano_cpus=int(res.get("NanoCPUs") or 0),
        mem_bytes=int(res.get("MemoryBytes") or 0),
    )


def _labels(service: Mapping[str, Any]) -> Mapping[str, str]:
    return dict((service.get("Spec") or {}).get("Labels") or {})


def is_paasport_service(service: Mapping[str, Any]) -> bool:
    labels = _labels(service)
    return labels.get(LABEL_TASK) == "1" and all(
        labels.get(k) for k in (LABEL_SERVICE, LABEL_INSTANCE, LABEL_CONFIG_HASH)
    )


def latest_task(tasks: Iterable[Mapping[str, Any]]) -> Mapping[str, Any] | None:
    """The service's newest task (one per service; Swarm keeps finished ones as history)."""
    best: Mapping[str, Any] | None = None
    for t in tasks:
        if best is None or str(t.get("CreatedAt", "")) > str(best.get("CreatedAt", "")):
            best = t
    return best


def published_port(task: Mapping[str, Any], container_port: int) -> int | None:
    ports = ((task.get("Status") or {}).get("PortStatus") or {}).get("Ports") or ()
    for p in ports:
        if int(p.get("TargetPort") or 0) == container_port and p.get("PublishedPort"):
            return int(p["PublishedPort"])
    return None


def _reservation(service: Mapping[str, Any]) -> tuple[float, float]:
    labels = _labels(service)
    try:
        return float(labels.get(cs.LABEL_CPUS, 0)), float(labels.get(cs.LABEL_MEM, 0))
    except ValueError:
        return 0.0, 0.0


def pending_reason(
    error: str, cpus: float, mem: float, constraints: Sequence[str], nodes: Sequence[NodeCapacity]
) -> str:
    """Why Swarm does not place a task, in words a service owner acts on. Pure.

    ``error`` is the task's ``Status.Err`` ("no suitable node (insufficient resources on 3
    nodes)"); ``nodes`` the nodes with what paasport's tasks reserve on them."""
    ready = [n for n in nodes if n.state == "ready" and n.availability == "active"]
    rules = " and ".join(human_rule(c) for c in constraints)
    eligible = [n for n in ready if all(satisfies(n, c) for c in constraints)]
    if "insufficient resources" in error and (eligible or not constraints):
        free = ", ".join(
            f"{n.node} {max(0.0, n.cpus - n.cpus_reserved):g} cpus/"
            f"{max(0.0, n.mem_mb - n.mem_reserved_mb):.0f} MB free"
            for n in sorted(eligible, key=lambda n: n.node)
        )
        among = f" matching {rules}" if rules else ""
        return f"no node{among} with {cpus:g} cpus and {mem:g} MB free ({free or 'no ready node'})"
    if "constraint" in error or "insufficient resources" in error:
        if rules:
            return f"constraint {rules} matches no node"
        return "the placement constraints match no node"
    if not ready:
        return "no ready node in the cluster"
    return error or "waiting for the scheduler"


@dataclass(frozen=True)
class SwarmState:
    """One reading of the cluster: paasport's services, their tasks, the nodes."""

    services: Sequence[Mapping[str, Any]]
    tasks: Sequence[Mapping[str, Any]]
    nodes: Sequence[Mapping[str, Any]]

    def node_map(self) -> dict[str, Node]:
        return {n.node_id: n for n in (node_from(p) for p in self.nodes)}


def capacities(state: SwarmState) -> tuple[NodeCapacity, ...]:
    """Every node with what paasport's live tasks reserve on it. Pure."""
    nodes = state.node_map()
    reserved: dict[str, tuple[float, float, int]] = {}
    by_service = {str(s.get("ID")): s for s in state.services if is_paasport_service(s)}
    for t in state.tasks:
        service = by_service.get(str(t.get("ServiceID")))
        status = (t.get("Status") or {}).get("State", "")
        if service is None or t.get("DesiredState") != "running" or status in _FINISHED | _DEAD:
            continue
        node_id = str(t.get("NodeID") or "")
        cpus, mem = _reservation(service)
        c, m, n = reserved.get(node_id, (0.0, 0.0, 0))
        reserved[node_id] = (c + cpus, m + mem, n + 1)
    out = []
    for node in nodes.values():
        c, m, n = reserved.get(node.node_id, (0.0, 0.0, 0))
        out.append(
            NodeCapacity(
                node=node.hostname,
                cpus=node.nano_cpus / 1e9,
                mem_mb=node.mem_bytes / (1024 * 1024),
                cpus_reserved=c,
                mem_reserved_mb=m,
                address=node.address,
                state=node.state,
                availability=node.availability,
                role=node.role,
                labels=node.labels,
                tasks=n,
                node_id=node.node_id,
            )
        )
    return tuple(sorted(out, key=lambda n: (n.node, n.node_id)))


def services_on_lost_nodes(state: SwarmState) -> dict[str, str]:
    """Pure: service id -> the hostname of the non-ready node its newest task was placed on
    (its logs cannot be read: the manager would wait for that node forever)."""
    nodes = state.node_map()
    tasks_of: dict[str, list[Mapping[str, Any]]] = {}
    for t in state.tasks:
        tasks_of.setdefault(str(t.get("ServiceID")), []).append(t)
    out = {}
    for sid, tasks in tasks_of.items():
        latest = latest_task(tasks)
        node = nodes.get(str(latest.get("NodeID") or "")) if latest else None
        if _on_lost_node(latest, node) and node is not None:
            out[sid] = node.hostname or node.node_id
    return out


def _on_lost_node(task: Mapping[str, Any] | None, node: Node | None) -> bool:
    """Whether ``task`` was placed on a node the manager no longer sees ready."""
    return (
        task is not None and node is not None and node.state != "ready" and bool(task.get("NodeID"))
    )


def _task_state(
    task: Mapping[str, Any] | None, node: Node | None, now: float, created: float
) -> tuple[TaskState, int | None, str]:
    """(state, exit code, status message) of one service's newest task. Pure."""
    if task is None:
        return "starting", None, "waiting for the scheduler"
    status = task.get("Status") or {}
    state = str(status.get("State", ""))
    err = str(status.get("Err") or "")
    code = (status.get("ContainerStatus") or {}).get("ExitCode")
    if _on_lost_node(task, node) and node is not None and state in {"running", *_STARTING}:
        return "dead", None, f"host {node.hostname or node.node_id} is {node.state}"
    if state == "running":
        return "running", None, ""
    if state in _STARTING:
        if state == "preparing" and now - created > PULL_DEADLINE_SECONDS:
            host = node.hostname if node else "its node"
            return (
                "dead",
                None,
                (
                    f"image not pulled on {host} within {PULL_DEADLINE_SECONDS:g}s"
                    + (f": {err}" if err else "")
                ),
            )
        return "starting", None, err
    if state in _FINISHED:
        exit_code = int(code) if code is not None else (0 if state == "complete" else None)
        return "exited", exit_code, err if state == "failed" else ""
    host = node.hostname if node else "its node"
    if state == "rejected" and ("image" in err.lower() or "pull" in err.lower()):
        return "dead", None, f"image cannot be pulled on {host}: {err}"
    return "dead", None, err or f"task {state} on {host}"


def app_versions(
    state: SwarmState,
    cluster: str,
    now: float,
    constraints_of: Mapping[str, Sequence[str]],
    caps: Sequence[NodeCapacity] | None = None,
) -> tuple[AppVersion, ...]:
    """paasport's services grouped into AppVersions (by service, instance, config hash), each
    service one Task (task id = the Swarm service id), oldest first. Pure.

    ``constraints_of``: service id -> its placement constraints (for pending reasons); ``caps``
    what every node has free (default: from ``state``, whose services may be a filtered few)."""
    nodes = state.node_map()
    caps = capacities(state) if caps is None else caps
    tasks_of: dict[str, list[Mapping[str, Any]]] = {}
    for t in state.tasks:
        tasks_of.setdefault(str(t.get("ServiceID")), []).append(t)
    groups: dict[tuple[str, str, str], list[tuple[Mapping[str, str], Task]]] = {}
    for service in state.services:
        if not is_paasport_service(service):
            continue
        labels = _labels(service)
        if labels.get(LABEL_CLUSTER, "") != cluster:
            continue
        sid = str(service.get("ID"))
        latest = latest_task(tasks_of.get(sid, ()))
        node = nodes.get(str(latest.get("NodeID") or "")) if latest else None
        created = cs._float_label(labels, cs.LABEL_CREATED, 0.0)
        task_state, exit_code, message = _task_state(latest, node, now, created)
        container_port = cs._int_label(labels, cs.LABEL_CONTAINER_PORT, 8888)
        if task_state == "starting" and message and "no suitable node" in message:
            cpus, mem = _reservation(service)
            message = pending_reason(message, cpus, mem, constraints_of.get(sid, ()), caps)
        groups.setdefault(
            (labels[LABEL_SERVICE], labels[LABEL_INSTANCE], labels[LABEL_CONFIG_HASH]), []
        ).append(
            (
                labels,
                Task(
                    task_id=sid,
                    service=labels[LABEL_SERVICE],
                    instance=labels[LABEL_INSTANCE],
                    cluster=labels.get(LABEL_CLUSTER, ""),
                    config_hash=labels[LABEL_CONFIG_HASH],
                    git_sha=labels.get(LABEL_GIT_SHA, ""),
                    state=task_state,
                    host=node.address if node else "",
                    port=published_port(latest, container_port) if latest else None,
                    node=node.hostname if node else "",
                    started_at=created,
                    exit_code=exit_code if task_state in ("exited", "dead") else None,
                    name=str((service.get("Spec") or {}).get("Name", "")),
                    healthcheck=cs.healthcheck_from_label(labels.get(LABEL_HEALTHCHECK)),
                    container_port=container_port,
                    status_message=message,
                    host_lost=task_state == "dead" and _on_lost_node(latest, node),
                ),
            )
        )
    versions = []
    for (svc, inst, config_hash), members in groups.items():
        members.sort(key=lambda m: (m[1].started_at, m[1].name))
        newest = members[-1][0]
        versions.append(
            AppVersion(
                service=svc,
                instance=inst,
                cluster=newest.get(LABEL_CLUSTER, ""),
                config_hash=config_hash,
                git_sha=newest.get(LABEL_GIT_SHA, ""),
                image=newest.get(LABEL_IMAGE, ""),
                tasks=tuple(t for _, t in members),
                desired_replicas=cs._int_label(newest, LABEL_DESIRED_REPLICAS, 0),
                created_at=members[0][1].started_at,
            )
        )
    versions.sort(key=lambda v: (v.service, v.instance, v.created_at, v.config_hash))
    return tuple(versions)


def constraints_of(service: Mapping[str, Any]) -> tuple[str, ...]:
    placement = ((service.get("Spec") or {}).get("TaskTemplate") or {}).get("Placement") or {}
    return tuple(placement.get("Constraints") or ())


def node_tasks(
    containers: Iterable[Mapping[str, Any]], node_name: str, address: str
) -> tuple[AppVersion, ...]:
    """This node's paasport tasks from its own daemon's containers (the agent's view): the
    task id is the Swarm service id, the address this node's and the port the published one,
    as the cluster view reports them. Pure."""
    mine = [c for c in containers if (c.get("Labels") or {}).get(SWARM_SERVICE_ID)]
    service_of = {str(c["Id"]): str(c["Labels"][SWARM_SERVICE_ID]) for c in mine}
    port_of = {}
    for c in mine:
        labels = c.get("Labels") or {}
        target = cs._int_label(labels, cs.LABEL_CONTAINER_PORT, 8888)
        port_of[str(c["Id"])] = next(
            (
                int(p["PublicPort"])
                for p in c.get("Ports") or ()
                if p.get("PrivatePort") == target and p.get("PublicPort")
            ),
            None,
        )
    out = []
    for version in cs.app_versions_from_containers(mine, node_name):
        tasks = tuple(
            _replace_task(t, service_of[t.task_id], address, port_of.get(t.task_id))
            for t in version.tasks
        )
        out.append(_replace_version(version, tasks))
    return tuple(out)


def _replace_task(task: Task, task_id: str, address: str, port: int | None) -> Task:
    from dataclasses import replace

    return replace(task, task_id=task_id, host=address, port=port)


def _replace_version(version: AppVersion, tasks: tuple[Task, ...]) -> AppVersion:
    from dataclasses import replace

    return replace(version, tasks=tasks)
