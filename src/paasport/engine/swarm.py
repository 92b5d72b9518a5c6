"""The ``swarm`` engine: paasport tasks as one-replica Swarm services across many hosts.

``SwarmEngine`` is the cluster view (deployd, status, logs) through a manager's socket (the
cluster's ``docker_host``); ``SwarmNodeEngine`` is one host's view (the discovery agent) through
the local daemon. The mapping and its reasons are in ``engine.swarm_spec`` and docs/swarm.md;
this module performs the calls and maps SDK failures to paasport errors like engine.docker.
"""

from __future__ import annotations

import logging
import secrets
import string
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

from paasport.engine import container_spec as cs
from paasport.engine import one_off_spec as oo
from paasport.engine import swarm_spec as ss
from paasport.engine.base import (
    LABEL_CLUSTER,
    LABEL_CONFIG_HASH,
    LABEL_INSTANCE,
    LABEL_RUN_CLUSTER,
    LABEL_SERVICE,
    ExecResult,
    LogLine,
    NodeCapacity,
    NodeInfo,
    OneOff,
)
from paasport.engine.docker import DockerEngine, _in_parallel, translated
from paasport.errors import EngineError, NotFoundError
from paasport.types import AppSpec, AppVersion

log = logging.getLogger("paasport.engine")
_ALPHABET = string.ascii_lowercase + string.digits
STOP_WAIT_SECONDS = ss.STOP_GRACE_SECONDS + 15.0  # a removed service's task is gone by then
LOGS_DEADLINE_SECONDS = 15.0  # one task's logs through the manager; a stuck node never hangs


def _suffix() -> str:
    return "".join(secrets.choice(_ALPHABET) for _ in range(6))


def _label_filter(cluster: str, *pairs: tuple[str, str | None]) -> dict[str, list[str]]:
    labels = [f"{LABEL_CLUSTER}={cluster}", f"{ss.LABEL_TASK}=1"]
    labels += [f"{k}={v}" for k, v in pairs if v is not None]
    return {"label": labels}


class SwarmEngine:
    """``Engine`` on a Docker Swarm, through a manager (``base_url`` None: DOCKER_HOST)."""

    def __init__(self, cluster: str, base_url: str | None = None) -> None:
        self.cluster = cluster
        self.base_url = base_url
        # the manager's own daemon: the connection, error translation and exec on its node
        self._daemon = DockerEngine(cluster, base_url=base_url)
        self._checked = False
        self._lock = threading.Lock()

    @property
    def where(self) -> str:
        return f"Swarm manager at {self.base_url}" if self.base_url else "Swarm manager"

    @property
    def api(self) -> Any:
        api = self._daemon.api
        if not self._checked:
            with translated(f"cluster {self.cluster}", self.where):
                swarm = (api.info() or {}).get("Swarm") or {}
            if swarm.get("LocalNodeState") != "active":
                raise EngineError(
                    f"cluster {self.cluster}: the Docker engine at {self.base_url or 'DOCKER_HOST'}"
                    " is not in a swarm (engine: swarm needs `docker swarm init` there)"
                )
            if not swarm.get("ControlAvailable"):
                raise EngineError(
                    f"cluster {self.cluster}: the Docker engine at {self.base_url or 'DOCKER_HOST'}"
                    " is a swarm worker; point the cluster's docker_host at a manager"
                )
            self._checked = True
        return api

    def close(self) -> None:
        self._daemon.close()

    @property
    def daemon(self) -> DockerEngine:
        """The manager's own Docker engine (an interactive ``run -t`` runs there)."""
        return self._daemon

    # -- reading ------------------------------------------------------------------------------
    def _state(self, *pairs: tuple[str, str | None]) -> ss.SwarmState:
        api = self.api
        with translated(f"listing the services of cluster {self.cluster}", self.where):
            services = api.services(filters=_label_filter(self.cluster, *pairs))
            tasks = api.tasks() if services else []
            nodes = api.nodes()
        ids = {str(s.get("ID")) for s in services}
        return ss.SwarmState(services, [t for t in tasks if str(t.get("ServiceID")) in ids], nodes)

    def list_app_versions(
        self, service: str | None = None, instance: str | None = None
    ) -> Sequence[AppVersion]:
        state = self._state((LABEL_SERVICE, service), (LABEL_INSTANCE, instance))
        placement = {str(s.get("ID")): ss.constraints_of(s) for s in state.services}
        versions = ss.app_versions(state, self.cluster, time.time(), placement)
        # "no node [matching ...] with N cpus ... free": free room counts every task of the cluster
        unplaced = any(t.status_message.startswith("no node ") for v in versions for t in v.tasks)
        if unplaced and (service or instance):
            caps = ss.capacities(self._state())
            versions = ss.app_versions(state, self.cluster, time.time(), placement, caps)
        return versions

    def node_capacity(self) -> Sequence[NodeCapacity]:
        return ss.capacities(self._state())

    def local_node(self) -> NodeInfo:
        with translated("reading the engine's info", self.where):
            info = self.api.info()
        swarm = info.get("Swarm") or {}
        return NodeInfo(
            node_id=str(swarm.get("NodeID", "")),
            name=str(info.get("Name", "")),
            address=str(swarm.get("NodeAddr", "")),
        )

    def image_exists(self, image: str) -> bool:
        """The image's manifest answers through the manager (it resolves it in the registry)."""
        try:
            with translated(f"inspecting image {image} in its registry", self.where):
                self.api.inspect_distribution(image)
        except (EngineError, NotFoundError):
            return False
        return True

    # -- writing ------------------------------------------------------------------------------
    def _create_one(self, spec: AppSpec) -> None:
        import docker.types as dt

        s = ss.service_spec(spec, _suffix(), time.time())  # spec.placement -> s.constraints
        healthcheck = None
        if s.healthcheck_cmd:
            healthcheck = dt.Healthcheck(
                test=["CMD-SHELL", s.healthcheck_cmd],
                interval=s.healthcheck_interval_ns,
                timeout=s.healthcheck_timeout_ns,
                start_period=s.healthcheck_start_ns,
                retries=3,
            )
        template = _task_template(s, dict(s.labels), healthcheck)
        ports = (
            [{"Protocol": "tcp", "TargetPort": s.container_port, "PublishMode": "host"}]
            if s.container_port is not None
            else None
        )
        with translated(f"creating a task of {spec.app_id}", self.where):
            self.api.create_service(
                template,
                name=s.name,
                labels=dict(s.labels),
                mode=dt.ServiceMode("replicated", replicas=1),
                endpoint_spec=dt.EndpointSpec(mode="dnsrr", ports=ports),
            )

    def create_app_version(self, spec: AppSpec, count: int) -> AppVersion:
        _in_parallel(lambda _: self._create_one(spec), list(range(count)))
        for version in self.list_app_versions(spec.service, spec.instance):
            if version.config_hash == spec.config_hash:
                return version
        return AppVersion(
            spec.service, spec.instance, self.cluster, spec.config_hash, spec.git_sha, spec.image
        )

    def scale_app_version(self, spec: AppSpec, count: int) -> None:
        live = [
            t
            for v in self.list_app_versions(spec.service, spec.instance)
            if v.config_hash == spec.config_hash
            for t in v.tasks
            if t.state in ("starting", "running")
        ]
        missing = count - len(live)
        if missing > 0:
            _in_parallel(lambda _: self._create_one(spec), list(range(missing)))

    def _remove(self, service_id: str) -> None:
        try:
            with translated(f"removing task {service_id[:12]}", self.where):
                self.api.remove_service(service_id)
        except NotFoundError:
            return

    def stop_task(self, task_id: str, grace_seconds: float) -> None:
        """Remove the task's service (Swarm: SIGTERM, its stop grace, SIGKILL) and wait, bounded,
        until its container is gone (a task on a node that is down is gone at once)."""
        self._remove(task_id)
        deadline = time.monotonic() + max(grace_seconds, ss.STOP_GRACE_SECONDS) + 15.0
        while time.monotonic() < deadline:
            with translated(f"waiting for task {task_id[:12]} to stop", self.where):
                # the service is gone: its task stays listed until its container stopped
                left = [t for t in self.api.tasks() if t.get("ServiceID") == task_id]
            running = [
                t
                for t in left
                if (t.get("Status") or {}).get("State") in ("running", "starting", "preparing")
            ]
            if running:
                # asked again each round: a node may go down while we wait (Swarm notices
                # after a few missed heartbeats), and its tasks never report stopping
                with translated("listing the nodes", self.where):
                    down = {
                        str(n.get("ID"))
                        for n in self.api.nodes()
                        if (n.get("Status") or {}).get("State") != "ready"
                    }
                running = [t for t in running if str(t.get("NodeID") or "") not in down]
            if not running:
                return
            time.sleep(0.2)
        log.warning("cluster %s: task %s still stopping after removal", self.cluster, task_id[:12])

    def delete_app_version(self, service: str, instance: str, config_hash: str) -> None:
        state = self._state(
            (LABEL_SERVICE, service), (LABEL_INSTANCE, instance), (LABEL_CONFIG_HASH, config_hash)
        )
        _in_parallel(self._remove, [str(s.get("ID")) for s in state.services])

    # -- one-off tasks: replicated jobs of one completion, never restarted ---------------------
    def start_one_off(self, spec: AppSpec, run_id: str, kind: str, labels: Mapping[str, str],
                      by: str = "") -> OneOff:  # fmt: skip
        import docker.types as dt

        s = ss.service_spec(spec, _suffix(), time.time())
        marks = oo.one_off_labels(spec, run_id, kind, labels, by, time.time())
        name = f"paasport-run-{ss.name_part(spec.service)}"[:50].rstrip("-_") + f"-{run_id}"
        template = _task_template(s, marks, None)
        with translated(f"creating one-off task {run_id} of {spec.service}", self.where):
            created = self.api.create_service(
                template, name=name, labels=marks,
                mode=dt.ServiceMode("replicated-job", concurrency=1, replicas=1),
            )  # fmt: skip
        sid = str(created.get("ID", ""))
        found = self._one_offs([oo.one_off_filters(self.cluster, run_id=run_id)[-1]])
        if found:
            return found[0]
        result = oo.one_off_from_labels(marks, sid, "pending", None)
        assert result is not None
        return result

    def _one_offs(self, label_filters: list[str]) -> list[OneOff]:
        api = self.api
        labels = [f"{LABEL_RUN_CLUSTER}={self.cluster}", *label_filters]
        with translated(f"listing the one-off tasks of cluster {self.cluster}", self.where):
            services = api.services(filters={"label": labels})
            # a replicated job's task: desired "complete" while it runs and after it succeeds
            wanted = {"desired-state": ["running", "shutdown", "accepted", "complete"]}
            tasks = api.tasks(filters=wanted) if services else []
            nodes = {str(n.get("ID")): ss.node_from(n).hostname for n in api.nodes()
                     } if services else {}  # fmt: skip
        by_service: dict[str, list[dict[str, Any]]] = {}
        for t in tasks:
            by_service.setdefault(str(t.get("ServiceID")), []).append(t)
        out: list[OneOff] = []
        for svc in services:
            sid = str(svc.get("ID"))
            latest = ss.latest_task(by_service.get(sid, []))
            status = (latest or {}).get("Status") or {}
            state = oo.swarm_one_off_state(str(status.get("State", "pending")))
            code = (status.get("ContainerStatus") or {}).get("ExitCode")
            if state == "exited" and code is None:
                code = -1  # rejected or lost with its node: it never ran to an end
            finished = cs.docker_time(status.get("Timestamp")) if state == "exited" else None
            found = oo.one_off_from_labels(
                (svc.get("Spec") or {}).get("Labels") or {}, sid, state,
                int(code) if code is not None else None,
                nodes.get(str((latest or {}).get("NodeID") or ""), ""), finished,
            )  # fmt: skip
            if found is not None:
                out.append(found)
        return sorted(out, key=lambda o: o.started)

    def list_one_offs(self, service: str | None = None, kind: str | None = None
                      ) -> Sequence[OneOff]:  # fmt: skip
        return self._one_offs(oo.one_off_filters(self.cluster, service, kind)[1:])

    def one_off(self, task_id: str) -> OneOff | None:
        return next((o for o in self._one_offs([]) if o.task_id == task_id), None)

    def one_off_output(
        self, task_id: str, follow: bool = False, stop: threading.Event | None = None
    ) -> Iterator[str]:
        """Its output through the manager; ``follow`` polls each second until it exited (then
        reads what is left) or ``stop``."""
        seen: float | None = None
        while True:
            found = self.one_off(task_id)
            kwargs: dict[str, Any] = {"stdout": True, "stderr": True, "timestamps": True}
            if seen is not None:
                kwargs["since"] = seen
            if found is None:
                return
            for stamp, message in cs.log_lines(self._read_logs(task_id, kwargs)):
                at = _ts(stamp)
                if seen is None or at > seen:
                    seen = at
                    yield message
            if not follow or found.done:
                return
            if stop is None:
                time.sleep(1.0)
            elif stop.wait(1.0):
                return

    def remove_one_off(self, task_id: str) -> None:
        self._remove(task_id)

    # -- tasks' insides ------------------------------------------------------------------------
    def task_stats(self, task_id: str) -> Mapping[str, object] | None:
        """Only a task on the manager's own node: the manager's API has no stats of others."""
        with translated(f"finding task {task_id[:12]}", self.where):
            local = self.api.containers(filters={"label": f"{ss.SWARM_SERVICE_ID}={task_id}"})
        return self._daemon.task_stats(str(local[0]["Id"])) if local else None

    def exec_in_task(self, task_id: str, cmd: str, timeout: float) -> ExecResult:
        """A task on the manager's node: the command inside it. Elsewhere the task's own Docker
        HEALTHCHECK (the same command, run by its node's daemon) decides: a task whose check
        has not passed yet stays "starting" in Swarm."""
        with translated(f"finding task {task_id[:12]}", self.where):
            local = self.api.containers(filters={"label": f"{ss.SWARM_SERVICE_ID}={task_id}"})
        if local:
            return self._daemon.exec_in_task(str(local[0]["Id"]), cmd, timeout)
        with translated(f"reading task {task_id[:12]}", self.where):
            tasks = [t for t in self.api.tasks() if t.get("ServiceID") == task_id]
        latest = ss.latest_task(tasks)
        state = ((latest or {}).get("Status") or {}).get("State", "")
        if state == "running":
            return ExecResult(0, "the task's Docker health check passes on its node")
        return ExecResult(1, f"the task is {state or 'not scheduled'} on its node")

    def logs(
        self,
        service: str,
        instance: str | None = None,
        follow: bool = False,
        since: float | None = None,
        tail: int | None = None,
        stop: threading.Event | None = None,
    ) -> Iterator[LogLine]:
        """Every task's logs through the manager, merged by time; ``follow`` polls each second
        until ``stop``."""
        seen = since
        while True:
            lines = self._log_lines(service, instance, seen, None if follow and seen else tail)
            yield from lines
            if not follow:
                return
            if lines:
                seen = _ts(lines[-1].timestamp) + 1e-6
            elif seen is None:
                seen = time.time()
            if stop is None:
                time.sleep(1.0)
            elif stop.wait(1.0):
                return

    def _log_lines(
        self, service: str, instance: str | None, since: float | None, tail: int | None
    ) -> list[LogLine]:
        state = self._state((LABEL_SERVICE, service), (LABEL_INSTANCE, instance))
        lost = ss.services_on_lost_nodes(state)
        out: list[LogLine] = []
        for s in state.services:
            sid = str(s.get("ID"))
            name = str((s.get("Spec") or {}).get("Name", ""))
            if sid in lost:
                log.info("logs of %s skipped: its host %s is down", name or sid, lost[sid])
                continue
            for stream in ("stdout", "stderr"):
                kwargs: dict[str, Any] = {"timestamps": True, "tail": tail if tail else "all"}
                kwargs[stream] = True
                kwargs["stderr" if stream == "stdout" else "stdout"] = False
                if since is not None:
                    kwargs["since"] = since
                text = self._read_logs(sid, kwargs)
                for stamp, message in cs.log_lines(text):
                    out.append(LogLine(sid, name, stamp, stream, message))
        out.sort(key=lambda line: line.timestamp)
        return out[-tail:] if tail else out

    def _read_logs(self, sid: str, kwargs: dict[str, Any]) -> str:
        """One service's logs, within LOGS_DEADLINE_SECONDS: docker-py reads log streams with
        the socket timeout off, and the manager waits on a node that stopped answering."""
        result: list[str] = []
        failure: list[BaseException] = []

        def read() -> None:
            try:
                with translated(f"reading the logs of task {sid[:12]}", self.where):
                    raw = self.api.service_logs(sid, **kwargs)
                    result.append(b"".join(raw).decode("utf-8", "replace"))
            except BaseException as err:  # handed to the caller's thread
                failure.append(err)

        reader = threading.Thread(target=read, name=f"swarm-logs-{sid[:12]}", daemon=True)
        reader.start()
        reader.join(LOGS_DEADLINE_SECONDS)
        if failure:
            raise failure[0]
        if not result:
            raise EngineError(
                f"{self.where}: the logs of task {sid[:12]} did not arrive within "
                f"{LOGS_DEADLINE_SECONDS:g}s (is its node down?)"
            )
        return result[0]


def _task_template(s: ss.ServiceSpec, labels: dict[str, str], healthcheck: Any) -> Any:
    """The TaskTemplate of one task: its container, resources (limits and reservations, so
    Swarm places by them), no restarts (the reconciler replaces tasks), placement, network."""
    import docker.types as dt

    container = dt.ContainerSpec(
        image=s.image,
        args=list(s.args) if s.args is not None else None,
        env=list(s.env),
        labels=labels,
        mounts=[dt.Mount(t, src, type="bind", read_only=ro) for t, src, ro in s.mounts],
        stop_grace_period=s.stop_grace_ns,
        healthcheck=healthcheck,
    )
    return dt.TaskTemplate(
        container_spec=container,
        resources=dt.Resources(
            cpu_limit=s.nano_cpus or None,
            mem_limit=s.mem_bytes or None,
            cpu_reservation=s.nano_cpus or None,
            mem_reservation=s.mem_bytes or None,
        ),
        restart_policy=dt.RestartPolicy(condition="none"),
        placement=dt.Placement(constraints=list(s.constraints)) if s.constraints else None,
        networks=["host"] if s.host_network else None,
    )


def _ts(stamp: str) -> float:
    from paasport.engine import container_spec as cs

    return cs.docker_time(stamp) or time.time()


class SwarmNodeEngine:
    """One Swarm node's view for its discovery agent: the local daemon's paasport containers,
    with the cluster view's task ids (Swarm service ids), this node's address and the published
    ports. Creating and stopping tasks is deployd's, through a manager."""

    def __init__(self, cluster: str, base_url: str | None = None) -> None:
        self.cluster = cluster
        self._daemon = DockerEngine(cluster, base_url=base_url)
        self._node: NodeInfo | None = None

    def local_node(self) -> NodeInfo:
        if self._node is None:
            with translated("reading the engine's info", self._daemon.where):
                info = self._daemon.api.info()
            swarm = info.get("Swarm") or {}
            if swarm.get("LocalNodeState") != "active":
                raise EngineError(
                    f"cluster {self.cluster}: this host's Docker engine is not in a swarm"
                    " (`docker swarm join` it to the cluster)"
                )
            self._node = NodeInfo(
                node_id=str(swarm.get("NodeID", "")),
                name=str(info.get("Name", "")),
                address=str(swarm.get("NodeAddr", "")),
            )
        return self._node

    def list_app_versions(
        self, service: str | None = None, instance: str | None = None
    ) -> Sequence[AppVersion]:
        node = self.local_node()
        labels = [f"{LABEL_CLUSTER}={self.cluster}", ss.SWARM_SERVICE_ID]
        labels += [
            f"{k}={v}" for k, v in ((LABEL_SERVICE, service), (LABEL_INSTANCE, instance)) if v
        ]
        with translated(f"listing this host's tasks of cluster {self.cluster}", self._daemon.where):
            containers = self._daemon.api.containers(all=True, filters={"label": labels})
        return ss.node_tasks(containers, node.name, node.address)

    def exec_in_task(self, task_id: str, cmd: str, timeout: float) -> ExecResult:
        with translated(f"finding task {task_id[:12]}", self._daemon.where):
            found = self._daemon.api.containers(
                filters={"label": f"{ss.SWARM_SERVICE_ID}={task_id}"}
            )
        if not found:
            raise NotFoundError(f"task {task_id[:12]} does not run on this host")
        return self._daemon.exec_in_task(str(found[0]["Id"]), cmd, timeout)

    def node_capacity(self) -> Sequence[NodeCapacity]:
        node = self.local_node()
        caps = self._daemon.node_capacity()
        return tuple(
            NodeCapacity(
                c.node, c.cpus, c.mem_mb, c.cpus_reserved, c.mem_reserved_mb,
                address=node.address, node_id=node.node_id, tasks=c.tasks,
            )
            for c in caps
        )  # fmt: skip

    def image_exists(self, image: str) -> bool:
        return self._daemon.image_exists(image)

    def logs(
        self,
        service: str,
        instance: str | None = None,
        follow: bool = False,
        since: float | None = None,
        tail: int | None = None,
        stop: threading.Event | None = None,
    ) -> Iterator[LogLine]:
        return self._daemon.logs(
            service, instance, follow=follow, since=since, tail=tail, stop=stop
        )

    def _refuse(self, what: str) -> EngineError:
        return EngineError(
            f"cluster {self.cluster}: this host's view cannot {what}: deployd does that through"
            " a Swarm manager"
        )

    def task_stats(self, task_id: str) -> Mapping[str, object] | None:
        """A task of this node by its Swarm service id (what this view calls its id)."""
        with translated(f"finding task {task_id[:12]}", self._daemon.where):
            local = self._daemon.api.containers(
                filters={"label": f"{ss.SWARM_SERVICE_ID}={task_id}"}
            )
        return self._daemon.task_stats(str(local[0]["Id"])) if local else None

    def start_one_off(self, spec: AppSpec, run_id: str, kind: str, labels: Mapping[str, str],
                      by: str = "") -> OneOff:  # fmt: skip
        raise self._refuse("starting one-off tasks")

    def list_one_offs(self, service: str | None = None, kind: str | None = None
                      ) -> Sequence[OneOff]:  # fmt: skip
        """This node's one-off containers (their ids are container ids, not Swarm's)."""
        return self._daemon.list_one_offs(service, kind)

    def one_off_output(
        self, task_id: str, follow: bool = False, stop: threading.Event | None = None
    ) -> Iterator[str]:
        return self._daemon.one_off_output(task_id, follow, stop)

    def remove_one_off(self, task_id: str) -> None:
        raise self._refuse("removing one-off tasks")

    def create_app_version(self, spec: AppSpec, count: int) -> AppVersion:
        raise self._refuse("create tasks")

    def scale_app_version(self, spec: AppSpec, count: int) -> None:
        raise self._refuse("scale tasks")

    def stop_task(self, task_id: str, grace_seconds: float) -> None:
        raise self._refuse("stop tasks")

    def delete_app_version(self, service: str, instance: str, config_hash: str) -> None:
        raise self._refuse("delete tasks")

    def close(self) -> None:
        self._daemon.close()
