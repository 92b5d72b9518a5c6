"""Pure translation between paasport values and Docker's container payloads.

``engine.docker`` calls it to turn an AppSpec into create/host-config arguments and to turn the
``GET /containers/json`` list payload back into AppVersion/Task values. No I/O, no clock.
"""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from paasport.engine.base import (
    LABEL_APP_ID,
    LABEL_CLUSTER,
    LABEL_CONFIG_HASH,
    LABEL_DEPLOY_GROUP,
    LABEL_DESIRED_REPLICAS,
    LABEL_GIT_SHA,
    LABEL_HEALTHCHECK,
    LABEL_IMAGE,
    LABEL_INSTANCE,
    LABEL_SERVICE,
)
from paasport.types import AppSpec, AppVersion, HealthCheck, Task, TaskState

# Engine-private labels: what the list payload lacks but status/capacity need without an inspect.
LABEL_CPUS = "paasport.cpus"
LABEL_MEM = "paasport.mem"
LABEL_CONTAINER_PORT = "paasport.container_port"
LABEL_NET = "paasport.net"
LABEL_CREATED = "paasport.created"  # Docker's "Created" has whole seconds only
LABEL_LOCAL_RUN = "paasport.local_run"  # a local-run task: never part of a cluster

CPU_PERIOD_US = 100_000
MIN_NANO_CPUS = 10_000_000  # Docker refuses less than 0.01 CPU
LIVE_STATES: frozenset[TaskState] = frozenset({"starting", "running"})

_DOCKER_STATES: Mapping[str, TaskState] = {
    "created": "starting",
    "restarting": "starting",
    "running": "running",
    "paused": "running",
    "exited": "exited",
    "dead": "dead",
    "removing": "dead",
}
_EXIT_STATUS = re.compile(r"^(?:Exited|Restarting) \((-?\d+)\)")
_NAME_UNSAFE = re.compile(r"[^a-z0-9.-]+")
_TIMESTAMP = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:\d\d)$")


@dataclass(frozen=True)
class ContainerSpec:
    """Everything Docker needs to create one task: create_container + create_host_config args."""

    name: str
    image: str
    command: tuple[str, ...] | None
    environment: Mapping[str, str]
    labels: Mapping[str, str]
    exposed_ports: tuple[int, ...]
    port_bindings: Mapping[int, tuple[str, int | None]]  # None: any free port
    binds: Mapping[str, Mapping[str, str]]
    network_mode: str
    nano_cpus: int
    mem_limit: int
    memswap_limit: int
    tty: bool = False  # an interactive one-off (``paasport run -t``): a terminal and stdin

    def create_args(self) -> dict[str, Any]:
        """Keyword arguments of ``APIClient.create_container`` (without ``host_config``)."""
        return {
            "image": self.image,
            "command": list(self.command) if self.command is not None else None,
            "environment": dict(self.environment),
            "labels": dict(self.labels),
            "name": self.name,
            "ports": list(self.exposed_ports) or None,
            "detach": True,
            **({"tty": True, "stdin_open": True} if self.tty else {}),
        }

    def host_config_args(self) -> dict[str, Any]:
        """Keyword arguments of ``APIClient.create_host_config``."""
        args: dict[str, Any] = {
            "network_mode": self.network_mode,
            "restart_policy": {"Name": "no"},  # the reconciler replaces dead tasks, with backoff
            # An init (Docker's tini) as PID 1 forwards SIGTERM: a service that runs as PID 1
            # without its own handler (busybox httpd) would ignore it and wait out the grace.
            "init": True,
            "mem_limit": self.mem_limit,
            "memswap_limit": self.memswap_limit,
        }
        if self.nano_cpus:
            args["nano_cpus"] = self.nano_cpus
        if self.port_bindings:
            args["port_bindings"] = dict(self.port_bindings)
        if self.binds:
            args["binds"] = {k: dict(v) for k, v in self.binds.items()}
        return args


@dataclass(frozen=True)
class ExitDetails:
    """What only an inspect tells about a finished container (cached: it never changes)."""

    exit_code: int | None
    oom_killed: bool
    restarts: int = 0
    finished_at: float | None = None  # State.FinishedAt as a Unix time (None: unknown)


def docker_name_part(value: str) -> str:
    """A service/instance name as a Docker-name fragment (``_`` -> ``--``, like DNS labels)."""
    return _NAME_UNSAFE.sub("-", value.lower().replace("_", "--")).strip("-.") or "x"


def container_name(spec: AppSpec, suffix: str) -> str:
    """``paasport-<service>-<instance>-<confighash8>-<suffix>``."""
    return "-".join(
        (
            "paasport",
            docker_name_part(spec.service),
            docker_name_part(spec.instance),
            docker_name_part(spec.config_hash[:8]),
            suffix,
        )
    )


def healthcheck_label(check: HealthCheck) -> str:
    return json.dumps(dataclasses.asdict(check), sort_keys=True, separators=(",", ":"))


def healthcheck_from_label(text: str | None) -> HealthCheck | None:
    """Parse the ``paasport.healthcheck`` label; None when absent or unreadable."""
    if not text:
        return None
    try:
        data = json.loads(text)
    except ValueError:
        return None
    if not isinstance(data, dict):
        return None
    known = {f.name for f in dataclasses.fields(HealthCheck)}
    try:
        return HealthCheck(**{k: v for k, v in data.items() if k in known})
    except TypeError:
        return None


def labels_for(spec: AppSpec, now: float) -> dict[str, str]:
    """The labels every task of ``spec`` carries: the engine's state is recovered from them."""
    return {
        LABEL_SERVICE: spec.service,
        LABEL_INSTANCE: spec.instance,
        LABEL_CLUSTER: spec.cluster,
        LABEL_GIT_SHA: spec.git_sha,
        LABEL_CONFIG_HASH: spec.config_hash,
        LABEL_APP_ID: spec.app_id,
        LABEL_DESIRED_REPLICAS: str(spec.replicas),
        LABEL_HEALTHCHECK: healthcheck_label(spec.healthcheck),
        LABEL_DEPLOY_GROUP: spec.deploy_group,
        LABEL_IMAGE: spec.image,
        LABEL_CPUS: repr(float(spec.cpus)),
        LABEL_MEM: repr(float(spec.mem)),
        LABEL_CONTAINER_PORT: str(spec.container_port),
        LABEL_NET: spec.net,
        LABEL_CREATED: f"{now:.6f}",
    }


def nano_cpus_for(cpus: float) -> int:
    """CPU limit as Docker nano-CPUs (quota/period); 0 (no limit) when ``cpus`` is 0."""
    if cpus <= 0:
        return 0
    return max(MIN_NANO_CPUS, round(cpus * 1_000_000_000))


def container_spec(spec: AppSpec, suffix: str, now: float) -> ContainerSpec:
    """The Docker create arguments of one task of ``spec`` created at ``now``.

    ``suffix`` makes the container name unique. ``spec.placement`` is ignored: the docker
    engine runs one host, so every task lands here whatever its pool or constraints
    (docs/placement.md); a change of placement still bounces, as the config hash covers it.
    """
    if spec.cmd is not None:
        command: tuple[str, ...] | None = ("/bin/sh", "-c", spec.cmd)
    elif spec.args is not None:
        command = tuple(spec.args)
    else:
        command = None
    mem_bytes = round(spec.mem * 1024 * 1024)
    host_net = spec.net == "host"
    return ContainerSpec(
        name=container_name(spec, suffix),
        image=spec.image,
        command=command,
        environment=dict(spec.env),
        labels=labels_for(spec, now),
        exposed_ports=() if host_net else (spec.container_port,),
        port_bindings={} if host_net else {spec.container_port: ("127.0.0.1", None)},
        binds={
            v.host_path: {"bind": v.container_path, "mode": "rw" if v.mode == "RW" else "ro"}
            for v in spec.volumes
        },
        network_mode="host" if host_net else "bridge",
        nano_cpus=nano_cpus_for(spec.cpus),
        mem_limit=mem_bytes,
        memswap_limit=mem_bytes,  # no swap: a task over its memory is OOM-killed, visibly
    )


def label_filters(
    cluster: str | None,
    service: str | None = None,
    instance: str | None = None,
    config_hash: str | None = None,
) -> dict[str, list[str]]:
    """``filters`` for ``GET /containers/json`` selecting paasport tasks (all clusters: None)."""
    labels = [LABEL_SERVICE] if cluster is None else [f"{LABEL_CLUSTER}={cluster}"]
    if service is not None:
        labels.append(f"{LABEL_SERVICE}={service}")
    if instance is not None:
        labels.append(f"{LABEL_INSTANCE}={instance}")
    if config_hash is not None:
        labels.append(f"{LABEL_CONFIG_HASH}={config_hash}")
    return {"label": labels}


def task_state(docker_state: str) -> TaskState:
    return _DOCKER_STATES.get(docker_state.lower(), "dead")


def exit_code_from_status(status: str) -> int | None:
    """``Exited (137) 5 seconds ago`` -> 137; None when the status carries no exit code."""
    match = _EXIT_STATUS.match(status)
    return int(match.group(1)) if match else None


def needs_inspect(summary: Mapping[str, Any]) -> bool:
    """Finished containers: only an inspect says whether the kernel OOM-killed them."""
    return task_state(str(summary.get("State", ""))) in ("exited", "dead")


def _labels(summary: Mapping[str, Any]) -> Mapping[str, str]:
    labels = summary.get("Labels") or {}
    return labels if isinstance(labels, Mapping) else {}


def _int_label(labels: Mapping[str, str], key: str, default: int) -> int:
    try:
        return int(labels.get(key, default))
    except (TypeError, ValueError):
        return default


def _float_label(labels: Mapping[str, str], key: str, default: float = 0.0) -> float:
    try:
        return float(labels.get(key, default))
    except (TypeError, ValueError):
        return default


def published_port(summary: Mapping[str, Any], container_port: int) -> int | None:
    """The host port Docker chose for ``container_port`` (prefer the 127.0.0.1 binding)."""
    best: int | None = None
    for entry in summary.get("Ports") or ():
        if entry.get("PrivatePort") != container_port or entry.get("Type", "tcp") != "tcp":
            continue
        public = entry.get("PublicPort")
        if not public:
            continue
        if entry.get("IP") == "127.0.0.1":
            return int(public)
        best = best or int(public)
    return best


def network_address(summary: Mapping[str, Any]) -> str | None:
    """The container's IPv4 address on its network (the one HostConfig names first), if any."""
    networks = (summary.get("NetworkSettings") or {}).get("Networks") or {}
    if not isinstance(networks, Mapping):
        return None
    mode = (summary.get("HostConfig") or {}).get("NetworkMode")
    ordered = sorted(networks.items(), key=lambda item: item[0] != mode)
    for _, settings in ordered:
        address = (settings or {}).get("IPAddress") if isinstance(settings, Mapping) else None
        if address:
            return str(address)
    return None


def task_address(
    summary: Mapping[str, Any], net: str | None, state: TaskState, container_port: int
) -> tuple[str, int | None]:
    """Where the host reaches a task: what survives a dockerd restart (live-restore) first.

    ``net: host``: 127.0.0.1:container_port. Bridge: the container's own address and
    container_port (no docker-proxy, a child of dockerd, in the path); the published
    127.0.0.1 port only when the container has no address (yet).
    """
    live = state in LIVE_STATES
    if net == "host":
        return "127.0.0.1", container_port if live else None
    address = network_address(summary) if live else None
    if address is not None:
        return address, container_port
    return "127.0.0.1", published_port(summary, container_port)


def is_paasport_container(summary: Mapping[str, Any]) -> bool:
    labels = _labels(summary)
    return all(labels.get(k) for k in (LABEL_SERVICE, LABEL_INSTANCE, LABEL_CONFIG_HASH))


def task_from_container(
    summary: Mapping[str, Any], node: str = "", details: ExitDetails | None = None
) -> Task:
    """One ``GET /containers/json`` entry (+ inspect details when finished) as a Task."""
    labels = _labels(summary)
    state = task_state(str(summary.get("State", "")))
    container_port = _int_label(labels, LABEL_CONTAINER_PORT, 8888)
    host, port = task_address(summary, labels.get(LABEL_NET), state, container_port)
    exit_code = exit_code_from_status(str(summary.get("Status", "")))
    if details is not None and details.exit_code is not None:
        exit_code = details.exit_code
    names = summary.get("Names") or ()
    return Task(
        task_id=str(summary["Id"]),
        service=labels[LABEL_SERVICE],
        instance=labels[LABEL_INSTANCE],
        cluster=labels.get(LABEL_CLUSTER, ""),
        config_hash=labels[LABEL_CONFIG_HASH],
        git_sha=labels.get(LABEL_GIT_SHA, ""),
        state=state,
        host=host,
        port=port,
        node=node,
        started_at=_float_label(labels, LABEL_CREATED, float(summary.get("Created") or 0)),
        restarts=details.restarts if details else 0,
        exit_code=exit_code if state not in LIVE_STATES else None,
        oom_killed=details.oom_killed if details else False,
        name=str(names[0]).lstrip("/") if names else "",
        healthcheck=healthcheck_from_label(labels.get(LABEL_HEALTHCHECK)),
        container_port=container_port,
    )


def app_versions_from_containers(
    summaries: Iterable[Mapping[str, Any]],
    node: str = "",
    details: Mapping[str, ExitDetails] | None = None,
) -> tuple[AppVersion, ...]:
    """Group the list payload into AppVersions (by service, instance, config hash), oldest first.

    git sha, image and desired replicas come from the newest task's labels.
    """
    details = details or {}
    groups: dict[tuple[str, str, str], list[tuple[Mapping[str, Any], Task]]] = {}
    for summary in summaries:
        if not is_paasport_container(summary):
            continue
        task = task_from_container(summary, node, details.get(str(summary["Id"])))
        groups.setdefault((task.service, task.instance, task.config_hash), []).append(
            (summary, task)
        )
    versions = []
    for (service, instance, config_hash), members in groups.items():
        members.sort(key=lambda m: (m[1].started_at, m[1].name))
        newest = _labels(members[-1][0])
        versions.append(
            AppVersion(
                service=service,
                instance=instance,
                cluster=newest.get(LABEL_CLUSTER, ""),
                config_hash=config_hash,
                git_sha=newest.get(LABEL_GIT_SHA, ""),
                image=newest.get(LABEL_IMAGE, ""),
                tasks=tuple(t for _, t in members),
                desired_replicas=_int_label(newest, LABEL_DESIRED_REPLICAS, 0),
                created_at=members[0][1].started_at,
            )
        )
    versions.sort(key=lambda v: (v.service, v.instance, v.created_at, v.config_hash))
    return tuple(versions)


def reservations(summaries: Iterable[Mapping[str, Any]]) -> tuple[float, float]:
    """(cpus, mem MB) reserved by the live paasport tasks in a list payload."""
    cpus = mem = 0.0
    for summary in summaries:
        if not is_paasport_container(summary):
            continue
        if task_state(str(summary.get("State", ""))) not in LIVE_STATES:
            continue
        labels = _labels(summary)
        cpus += _float_label(labels, LABEL_CPUS)
        mem += _float_label(labels, LABEL_MEM)
    return cpus, mem


def normalize_timestamp(text: str) -> str:
    """Docker's RFC3339Nano (trailing zeros trimmed) as a fixed-width UTC string that sorts."""
    match = _TIMESTAMP.match(text)
    if not match:
        return text
    base, fraction, zone = match.groups()
    fraction = (fraction or "").ljust(9, "0")[:9]
    if zone != "Z":
        moment = datetime.fromisoformat(f"{base}{zone}").astimezone(UTC)
        base = moment.strftime("%Y-%m-%dT%H:%M:%S")
    return f"{base}.{fraction}Z"


def docker_time(text: object) -> float | None:
    """Docker's RFC3339Nano time (``State.FinishedAt``) as a Unix time; None for its zero time."""
    if not isinstance(text, str) or text.startswith("0001-"):
        return None
    stamp = normalize_timestamp(text)
    if not stamp.endswith("Z") or len(stamp) != 30:
        return None
    whole = datetime.fromisoformat(stamp[:19]).replace(tzinfo=UTC).timestamp()
    return whole + int(stamp[20:29]) / 1e9


def exited_during_outage(
    finished_at: float | None, outages: Sequence[tuple[float, float]], margin: float = 1.0
) -> bool:
    """Whether a task finished while the engine was away (last answer before .. first after).

    Such exits are the daemon's doing (a dockerd without live-restore stops every container
    when it stops, or when it starts again after a SIGKILL), not the service's crashes.
    """
    if finished_at is None:
        return False
    return any(start <= finished_at <= end + margin for start, end in outages)


def lines_of_chunks(chunks: Iterable[bytes]) -> Iterator[str]:
    """The text lines of a stream of output chunks (a line may span chunks)."""
    pending = ""
    for chunk in chunks:
        pending += chunk.decode("utf-8", "replace")
        *lines, pending = pending.split("\n")
        yield from lines
    if pending:
        yield pending


def split_log_line(line: str) -> tuple[str, str]:
    """``<timestamp> <message>`` as Docker writes with ``timestamps=1`` -> (timestamp, message)."""
    stamp, sep, message = line.partition(" ")
    if not sep or not _TIMESTAMP.match(stamp):
        return "", line
    return normalize_timestamp(stamp), message


def log_lines(text: str) -> Sequence[tuple[str, str]]:
    """Every complete line of a timestamped log chunk as (timestamp, message)."""
    return [split_log_line(line.rstrip("\r")) for line in text.split("\n") if line]


NEVER_STARTED = "created but never started (whoever created it stopped before starting it)"


def never_started(
    versions: Sequence[AppVersion], created_ids: Iterable[str], now: float, after: float
) -> tuple[AppVersion, ...]:
    """Containers still in Docker's ``created`` state ``after`` seconds past their creation
    (a deployd killed between create and start) as dead tasks, so the reconciler replaces
    them instead of waiting for ever on a task that never starts (pure)."""
    stale = {
        cid
        for cid in created_ids
        for av in versions
        for t in av.tasks
        if t.task_id == cid and t.started_at and now - t.started_at > after
    }
    if not stale:
        return tuple(versions)
    return tuple(
        dataclasses.replace(
            av,
            tasks=tuple(
                dataclasses.replace(t, state="dead", status_message=NEVER_STARTED)
                if t.task_id in stale
                else t
                for t in av.tasks
            ),
        )
        for av in versions
    )
