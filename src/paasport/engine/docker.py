"""The ``docker`` engine: paasport tasks as labelled containers on one Docker engine.

Built by ``engine.factory.engine_for``; the reconciler, discovery, status and logs call it through
the ``Engine`` protocol. Translation to/from Docker payloads is in ``engine.container_spec``; this
module only performs calls and maps every Docker SDK failure to a paasport error.
"""

from __future__ import annotations

import dataclasses
import logging
import math
import os
import queue
import secrets
import string
import threading
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from contextlib import contextmanager, suppress
from typing import Any, TypeVar

from paasport.engine import container_spec as cs
from paasport.engine import one_off_spec as oo
from paasport.engine.base import ExecResult, LogLine, NodeCapacity, NodeInfo, OneOff
from paasport.engine.daemon_exits import DAEMON_SHUTDOWN_SECONDS, Verdict, verdict
from paasport.errors import (
    EngineError,
    EngineUnavailable,
    ImageError,
    NotFoundError,
    PaasportError,
    os_reason,
)
from paasport.types import AppSpec, AppVersion

T = TypeVar("T")
log = logging.getLogger("paasport.engine")
MAX_PARALLEL = 8  # threads per create/delete call
POOL_SIZE = 32  # deployd's workers each run up to MAX_PARALLEL calls at once
EXEC_TIMED_OUT = 124  # like coreutils' timeout(1)
FOLLOW_REFRESH_SECONDS = 1.0
MAX_OUTAGES = 8  # engine outage windows remembered
PROBE_SECONDS = 2.0  # a new connection to the daemon: accepted or not
_SUFFIX_ALPHABET = string.ascii_lowercase + string.digits


def _explanation(err: Any) -> str:
    text = getattr(err, "explanation", None) or str(err)
    return str(text.decode() if isinstance(text, bytes) else text).strip()


@contextmanager
def translated(what: str, where: str = "local Docker engine") -> Iterator[None]:
    """Run a Docker SDK call; its failures leave as paasport errors naming ``what`` failed."""
    import docker.errors
    import requests.exceptions

    try:
        yield
    except PaasportError:
        raise
    except docker.errors.ImageNotFound as err:
        raise ImageError(f"{what}: {_explanation(err)}") from err
    except docker.errors.NotFound as err:
        raise NotFoundError(f"{what}: {_explanation(err)}") from err
    except docker.errors.APIError as err:
        raise EngineError(f"{what}: the Docker engine refused: {_explanation(err)}") from err
    except (docker.errors.DockerException, requests.exceptions.RequestException, OSError) as err:
        raise EngineUnavailable(
            f"{what}: the {where} did not answer ({os_reason(err)}); is dockerd running?",
            delay=2.0,
        ) from err


def _unix_socket_path(base_url: str | None) -> str | None:
    """The socket file a Docker URL points at (the default one for None); None for TCP."""
    url = base_url or "unix:///var/run/docker.sock"
    for scheme in ("unix://", "http+unix://"):
        if url.startswith(scheme):
            return url[len(scheme) :]
    return None


def _close_failed_unix_connects() -> None:
    """Make the SDK close a unix socket whose connect() failed (it leaks it otherwise).

    While dockerd is down every call fails there; deployd lists the engine twice a second, so
    a restart of the daemon would otherwise leak descriptors for as long as it is away.
    """
    from docker.transport import unixconn

    if getattr(unixconn.UnixHTTPConnection.connect, "_paasport", False):
        return

    def connect(self: Any) -> None:
        import socket

        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.settimeout(self.timeout)
            sock.connect(self.unix_socket)
        except BaseException:
            sock.close()
            raise
        self.sock = sock

    connect._paasport = True  # type: ignore[attr-defined]
    unixconn.UnixHTTPConnection.connect = connect


def _random_suffix() -> str:
    return "".join(secrets.choice(_SUFFIX_ALPHABET) for _ in range(6))


def _in_parallel(fn: Callable[[T], object], items: Sequence[T]) -> None:
    """Call ``fn`` on every item (threads when more than one); raise the first failure."""
    if len(items) <= 1:
        for item in items:
            fn(item)
        return
    with ThreadPoolExecutor(max_workers=min(MAX_PARALLEL, len(items))) as pool:
        futures = [pool.submit(fn, item) for item in items]
    first = next((err for f in futures if (err := f.exception()) is not None), None)
    if first is not None:
        raise first


class DockerEngine:
    """``Engine`` on one Docker engine (``base_url`` None: DOCKER_HOST or the local socket).

    Tasks of every cluster may share the engine: each call filters on ``paasport.cluster``.
    """

    def __init__(self, cluster: str, base_url: str | None = None) -> None:
        self.cluster = cluster
        self.base_url = base_url
        self._lock = threading.Lock()
        self._api_client: Any = None
        self._node = ""
        self._exit_details: dict[str, cs.ExitDetails] = {}
        self._one_off_ends: dict[str, OneOff] = {}  # exited one-offs as inspected
        self._details_lock = threading.Lock()  # deployd's workers and observer share the engine
        # Since when lists fail (None: the engine answers) and the recent windows it was away:
        # tasks that exited inside one were stopped by the daemon, not crashed.
        self._unanswered_since: float | None = None
        self._outages: list[tuple[float, float]] = []
        self._answered_at: float | None = None  # the last new connection the daemon accepted
        # a container left "created" this long (its creator died before starting it) is dead
        self.never_started_seconds = 30.0

    # -- connection ---------------------------------------------------------------------------

    @property
    def where(self) -> str:
        if self.base_url:
            return f"Docker engine at {self.base_url}"
        env = os.environ.get("DOCKER_HOST")
        return f"Docker engine at {env} (DOCKER_HOST)" if env else "local Docker engine"

    @property
    def api(self) -> Any:
        """The low-level ``docker.APIClient`` (a requests Session: tests hook its responses)."""
        with self._lock:
            if self._api_client is None:
                import docker

                _close_failed_unix_connects()
                socket_path = _unix_socket_path(self.base_url or os.environ.get("DOCKER_HOST"))
                if socket_path is not None:
                    self._check_socket(socket_path)
                with translated(f"cluster {self.cluster}", self.where):
                    if self.base_url:
                        client = docker.APIClient(
                            base_url=self.base_url, version="auto", max_pool_size=POOL_SIZE
                        )
                    else:
                        client = docker.from_env(version="auto", max_pool_size=POOL_SIZE).api
                    self._node = str(client.info().get("Name", ""))
                self._api_client = client
                self._answered_at = time.time()
            return self._api_client

    def _check_socket(self, path: str) -> None:
        """Connect once ourselves: the SDK leaks its socket when the first connect() fails."""
        import socket

        probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            probe.settimeout(5.0)
            probe.connect(path)
        except OSError as err:
            raise EngineUnavailable(
                f"cluster {self.cluster}: the {self.where} did not answer "
                f"({path}: {err.strerror or err}); "
                "is dockerd running?",
                delay=2.0,
            ) from err
        finally:
            probe.close()

    def _accepts_connections(self) -> bool:
        """Whether the daemon accepts a NEW connection (a shutting-down dockerd has closed its
        listener but still answers on kept-alive ones); unknown transports count as yes."""
        import socket

        url = self.base_url or os.environ.get("DOCKER_HOST") or "unix:///var/run/docker.sock"
        path = _unix_socket_path(url)
        try:
            if path is not None:
                with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
                    probe.settimeout(PROBE_SECONDS)
                    probe.connect(path)
            elif url.startswith("tcp://"):
                host, _, port = url[len("tcp://") :].partition("/")[0].rpartition(":")
                socket.create_connection((host, int(port)), timeout=PROBE_SECONDS).close()
        except (OSError, ValueError):
            return False
        with self._details_lock:
            self._answered_at = time.time()
        return True

    def close(self) -> None:
        with self._lock:
            if self._api_client is not None:
                self._api_client.close()
                self._api_client = None

    # -- reading ------------------------------------------------------------------------------

    def _containers(
        self,
        service: str | None = None,
        instance: str | None = None,
        config_hash: str | None = None,
        *,
        every_cluster: bool = False,
    ) -> list[dict[str, Any]]:
        """ONE ``GET /containers/json`` (stopped ones included) for paasport's tasks."""
        api = self.api
        filters = cs.label_filters(
            None if every_cluster else self.cluster, service, instance, config_hash
        )
        try:
            with translated(f"listing containers of cluster {self.cluster}", self.where):
                result: list[dict[str, Any]] = api.containers(all=True, filters=filters)
        except EngineUnavailable:
            self._mark_unanswered()
            raise
        if self._unanswered_since is not None and not self._accepts_connections():
            return result  # a kept-alive connection of a daemon still going away
        with self._details_lock:
            if self._unanswered_since is not None:
                # dockerd still answers while its shutdown stops the containers
                away = (self._unanswered_since - DAEMON_SHUTDOWN_SECONDS, time.time())
                self._outages = [*self._outages[-(MAX_OUTAGES - 1) :], away]
                self._unanswered_since = None
        return result

    def _mark_unanswered(self) -> None:
        with self._details_lock:
            self._unanswered_since = self._unanswered_since or time.time()

    def _details_for(self, summaries: Sequence[Mapping[str, Any]]) -> dict[str, cs.ExitDetails]:
        """Inspect finished containers not seen before (finished state never changes)."""
        wanted = [str(s["Id"]) for s in summaries if cs.needs_inspect(s)]
        with self._details_lock:
            missing = [cid for cid in wanted if cid not in self._exit_details]
        for cid in missing:
            try:
                with translated(f"inspecting task {cid[:12]}", self.where):
                    info = self.api.inspect_container(cid)
            except NotFoundError:
                continue  # removed between the list and the inspect
            except EngineUnavailable:  # listed by a daemon going away: it stops them
                self._mark_unanswered()
                raise
            state = info.get("State") or {}
            with self._details_lock:
                self._exit_details[cid] = cs.ExitDetails(
                    exit_code=state.get("ExitCode"),
                    oom_killed=bool(state.get("OOMKilled")),
                    restarts=int(info.get("RestartCount") or 0),
                    finished_at=cs.docker_time(state.get("FinishedAt")),
                )
        with self._details_lock:
            return {cid: self._exit_details[cid] for cid in wanted if cid in self._exit_details}

    def list_app_versions(
        self, service: str | None = None, instance: str | None = None
    ) -> Sequence[AppVersion]:
        return self._app_versions(service, instance)

    def _app_versions(
        self, service: str | None, instance: str | None, config_hash: str | None = None
    ) -> tuple[AppVersion, ...]:
        summaries = self._containers(service, instance, config_hash)
        details = self._details_for(summaries)
        summaries = self._without_outage_exits(summaries, details)
        if service is None and instance is None:
            listed = {str(s["Id"]) for s in summaries}
            with self._details_lock:
                for cid in [c for c in self._exit_details if c not in listed]:
                    del self._exit_details[cid]
        versions = cs.app_versions_from_containers(summaries, self._node, details)
        created = [str(s["Id"]) for s in summaries if s.get("State") == "created"]
        if not created:
            return versions
        return cs.never_started(versions, created, time.time(), self.never_started_seconds)

    def _without_outage_exits(
        self, summaries: list[dict[str, Any]], details: Mapping[str, cs.ExitDetails]
    ) -> list[dict[str, Any]]:
        """Remove the tasks the daemon stopped while it was away (not the service's crashes):
        the reconciler replaces them without counting a crash or backing off. While it is
        going away they are only hidden; they are removed once it is back."""
        verdicts = self._verdicts(details)
        if Verdict.ASK in verdicts.values():
            answering = self._accepts_connections()
            if not answering:
                self._mark_unanswered()
                log.warning(
                    "cluster %s: the %s refuses new connections: it is going away",
                    self.cluster,
                    self.where,
                )
            verdicts = self._verdicts(details)
        stopped = {cid for cid, v in verdicts.items() if v is Verdict.DAEMON}
        if not stopped:
            return summaries
        with self._details_lock:
            going_away = self._unanswered_since is not None
        if not going_away:
            log.warning(
                "cluster %s: %d task(s) stopped while the %s was away; replacing them",
                self.cluster,
                len(stopped),
                self.where,
            )
            try:
                _in_parallel(self._remove, sorted(stopped))
            except PaasportError as err:  # listed again next pass, and removed then
                log.warning("cluster %s: %s", self.cluster, err)
        return [s for s in summaries if str(s["Id"]) not in stopped]

    def _verdicts(self, details: Mapping[str, cs.ExitDetails]) -> dict[str, Verdict]:
        now = time.time()
        with self._details_lock:
            outages, since, answered = (
                list(self._outages),
                self._unanswered_since,
                self._answered_at,
            )
        return {
            cid: verdict(d.finished_at, d.oom_killed, outages, since, answered, now)
            for cid, d in details.items()
        }

    # -- writing ------------------------------------------------------------------------------

    def _start_task(self, spec: AppSpec) -> str:
        args = cs.container_spec(spec, _random_suffix(), time.time())
        api = self.api
        subject = f"{spec.service}.{spec.instance}"
        try:
            with translated(f"creating a task of {subject}", self.where):
                host_config = api.create_host_config(**args.host_config_args())
                created = api.create_container(host_config=host_config, **args.create_args())
        except (ImageError, NotFoundError) as err:
            if self.image_exists(spec.image):
                raise
            raise ImageError(
                f"{subject}: image {spec.image} does not exist on this host "
                "(run cook-image / push-to-registry?)"
            ) from err
        cid = str(created["Id"])
        try:
            with translated(f"starting task {args.name} of {subject}", self.where):
                api.start(cid)
        except PaasportError:
            self._remove(cid)
            raise
        return cid

    # -- one task outside the cluster (local-run) --------------------------------------------

    def start_standalone(
        self, spec: AppSpec, host_port: int | None, name: str
    ) -> tuple[str, int | None]:
        """Start one task of ``spec`` as the cluster would (same image, command, env,
        resources, volumes), but labelled ``paasport.local_run`` only, so no deployd or agent
        ever takes it for a cluster task; its port on 127.0.0.1 (``host_port``, else any).
        Returns (container id, published port)."""
        args = cs.container_spec(spec, _random_suffix(), time.time())
        labels = {cs.LABEL_LOCAL_RUN: f"{spec.service}.{spec.instance}"}
        bindings = {} if spec.net == "host" else {spec.container_port: ("127.0.0.1", host_port)}
        args = dataclasses.replace(args, name=name, labels=labels, port_bindings=bindings)
        api = self.api
        try:
            with translated(f"creating {name}", self.where):
                host_config = api.create_host_config(**args.host_config_args())
                created = api.create_container(host_config=host_config, **args.create_args())
        except (ImageError, NotFoundError) as err:
            if self.image_exists(spec.image):
                raise
            raise ImageError(f"image {spec.image} does not exist on this host "
                             "(--build, or cook-image first)") from err  # fmt: skip
        cid = str(created["Id"])
        try:
            with translated(f"starting {name}", self.where):
                api.start(cid)
                info = api.inspect_container(cid)
        except PaasportError:
            self._remove(cid)
            raise
        ports = ((info.get("NetworkSettings") or {}).get("Ports") or {}).get(
            f"{spec.container_port}/tcp"
        ) or []
        host = next((int(p["HostPort"]) for p in ports if str(p.get("HostPort", "")).isdigit()),
                    None)  # fmt: skip
        return cid, host

    def standalone_state(self, cid: str) -> tuple[str, int | None]:
        """(Docker's state of the container, its exit code once it exited)."""
        with translated(f"inspecting {cid[:12]}", self.where):
            state = self.api.inspect_container(cid).get("State") or {}
        code = state.get("ExitCode")
        status = str(state.get("Status", "unknown"))
        return status, int(code) if status in ("exited", "dead") and code is not None else None

    def standalone_logs(self, cid: str, follow: bool) -> Iterator[str]:
        """The container's output lines (stdout and stderr), following with ``follow``."""
        with translated(f"reading the logs of {cid[:12]}", self.where):
            stream = self.api.logs(cid, stream=True, follow=follow, stdout=True, stderr=True)
        yield from cs.lines_of_chunks(stream)

    def remove_standalone(self, cid: str) -> None:
        self._remove(cid)

    # -- one-off tasks ------------------------------------------------------------------------

    def _one_off_spec(self, spec: AppSpec, run_id: str, kind: str, labels: Mapping[str, str],
                      by: str, tty: bool) -> cs.ContainerSpec:  # fmt: skip
        args = cs.container_spec(spec, _random_suffix(), time.time())
        name = f"paasport-run-{cs.docker_name_part(spec.service)}-{run_id}"
        return dataclasses.replace(
            args, name=name, labels=oo.one_off_labels(spec, run_id, kind, labels, by, time.time()),
            exposed_ports=(), port_bindings={}, tty=tty,
        )  # fmt: skip

    def create_one_off(self, spec: AppSpec, run_id: str, kind: str, labels: Mapping[str, str],
                       by: str = "", tty: bool = False) -> str:  # fmt: skip
        """Create (not start) a one-off container; with ``tty`` a terminal and open stdin, for
        ``docker start -ai`` to attach to. Returns its id."""
        args = self._one_off_spec(spec, run_id, kind, labels, by, tty)
        api = self.api
        subject = f"a one-off task of {spec.service}.{spec.instance}"
        try:
            with translated(f"creating {subject}", self.where):
                host_config = api.create_host_config(**args.host_config_args())
                created = api.create_container(host_config=host_config, **args.create_args())
        except (ImageError, NotFoundError) as err:
            if self.image_exists(spec.image):
                raise
            raise ImageError(f"{spec.service}: image {spec.image} does not exist on this host "
                             "(run cook-image / push-to-registry?)") from err  # fmt: skip
        return str(created["Id"])

    def start_one_off(self, spec: AppSpec, run_id: str, kind: str, labels: Mapping[str, str],
                      by: str = "") -> OneOff:  # fmt: skip
        cid = self.create_one_off(spec, run_id, kind, labels, by)
        try:
            with translated(f"starting one-off task {run_id}", self.where):
                self.api.start(cid)
        except PaasportError:
            self._remove(cid)
            raise
        found = self.one_off(cid)
        if found is None:  # removed already (by whoever reaps finished runs)
            labels_ = oo.one_off_labels(spec, run_id, kind, labels, by, time.time())
            found = oo.one_off_from_labels(labels_, cid, "exited", None)
            assert found is not None
        return found

    def one_off(self, task_id: str) -> OneOff | None:
        """One one-off by container id (inspect: its exit code and end time); None if gone."""
        try:
            with translated(f"inspecting one-off task {task_id[:12]}", self.where):
                info = self.api.inspect_container(task_id)
        except NotFoundError:
            return None
        state = info.get("State") or {}
        status = oo.docker_one_off_state(str(state.get("Status", "")))
        code = state.get("ExitCode")
        labels = (info.get("Config") or {}).get("Labels") or {}
        finished = cs.docker_time(state.get("FinishedAt")) if status == "exited" else None
        return oo.one_off_from_labels(labels, str(info.get("Id", task_id)), status,
                                      int(code) if code is not None else None,
                                      finished=finished)  # fmt: skip

    def list_one_offs(self, service: str | None = None, kind: str | None = None
                      ) -> Sequence[OneOff]:  # fmt: skip
        filters = {"label": oo.one_off_filters(self.cluster, service, kind)}
        with translated(f"listing one-off tasks of cluster {self.cluster}", self.where):
            summaries = self.api.containers(all=True, filters=filters)
        out: list[OneOff] = []
        for summary in summaries:
            cid = str(summary["Id"])
            state = oo.docker_one_off_state(str(summary.get("State", "")))
            if state == "exited":  # its exit code and end time: inspected once, they never change
                with self._details_lock:
                    ended = self._one_off_ends.get(cid)
                if ended is None:
                    ended = self.one_off(cid)
                    if ended is None:
                        continue  # removed between the list and the inspect
                    with self._details_lock:
                        self._one_off_ends[cid] = ended
                out.append(ended)
                continue
            found = oo.one_off_from_labels(summary.get("Labels") or {}, cid, state, None)
            if found is not None:
                out.append(found)
        return sorted(out, key=lambda o: o.started)

    def one_off_output(
        self, task_id: str, follow: bool = False, stop: threading.Event | None = None
    ) -> Iterator[str]:
        """Its output lines; ``follow`` ends when it exits, or within a second of ``stop``."""
        with translated(f"reading the output of {task_id[:12]}", self.where):
            stream = self.api.logs(task_id, stream=True, follow=follow, stdout=True, stderr=True)
        done = threading.Event()
        if follow and stop is not None:

            def closer() -> None:
                while not done.wait(0.5):
                    if stop.is_set():
                        with suppress(Exception):  # a closed socket: nothing left to do
                            stream.close()
                        return

            threading.Thread(target=closer, name="one-off-output", daemon=True).start()
        try:
            yield from cs.lines_of_chunks(stream)
        except Exception:
            if stop is not None and stop.is_set():
                return  # we closed the socket under the reader
            raise
        finally:
            done.set()

    def remove_one_off(self, task_id: str) -> None:
        self._remove(task_id)
        with self._details_lock:
            self._one_off_ends.pop(task_id, None)

    def create_app_version(self, spec: AppSpec, count: int) -> AppVersion:
        _in_parallel(lambda _: self._start_task(spec), range(count))
        for version in self._app_versions(spec.service, spec.instance, spec.config_hash):
            return version
        return AppVersion(
            service=spec.service,
            instance=spec.instance,
            cluster=spec.cluster,
            config_hash=spec.config_hash,
            git_sha=spec.git_sha,
            image=spec.image,
            desired_replicas=spec.replicas,
        )

    def scale_app_version(self, spec: AppSpec, count: int) -> None:
        """Start tasks until ``count`` are live; surplus tasks are the reconciler's to drain."""
        live = sum(
            1
            for version in self._app_versions(spec.service, spec.instance, spec.config_hash)
            for task in version.tasks
            if task.state in cs.LIVE_STATES
        )
        _in_parallel(lambda _: self._start_task(spec), range(max(0, count - live)))

    def _remove(self, cid: str) -> None:
        """Force-remove a container; already gone (or being removed) is success."""
        try:
            with translated(f"removing task {cid[:12]}", self.where):
                self.api.remove_container(cid, force=True)
        except NotFoundError:
            pass
        except EngineError as err:
            if "already in progress" not in str(err):
                raise
        self._forget(cid)

    def _forget(self, cid: str) -> None:
        with self._details_lock:
            self._exit_details.pop(cid, None)

    def stop_task(self, task_id: str, grace_seconds: float) -> None:
        """SIGTERM, up to ``grace_seconds`` (whole seconds, rounded up), SIGKILL, remove.

        A task that is already gone counts as stopped: the reconciler may retry after a crash.
        """
        try:
            with translated(f"stopping task {task_id[:12]}", self.where):
                self.api.stop(task_id, timeout=max(0, math.ceil(grace_seconds)))
        except NotFoundError:
            self._forget(task_id)
            return
        self._remove(task_id)

    def delete_app_version(self, service: str, instance: str, config_hash: str) -> None:
        ids = [str(s["Id"]) for s in self._containers(service, instance, config_hash)]
        _in_parallel(self._remove, ids)

    def exec_in_task(self, task_id: str, cmd: str, timeout: float) -> ExecResult:
        """``/bin/sh -c cmd`` in the task; after ``timeout`` exit code 124 (left running)."""
        api = self.api
        what = f"running a command in task {task_id[:12]}"
        with translated(what, self.where):
            exec_id = api.exec_create(task_id, ["/bin/sh", "-c", cmd])["Id"]
        box: dict[str, Any] = {}

        def run() -> None:
            try:
                with translated(what, self.where):
                    box["output"] = api.exec_start(exec_id)
            except PaasportError as err:
                box["error"] = err

        worker = threading.Thread(target=run, name=f"exec-{task_id[:12]}", daemon=True)
        worker.start()
        worker.join(timeout)
        if worker.is_alive():
            return ExecResult(EXEC_TIMED_OUT, f"command timed out after {timeout:g}s: {cmd}")
        if "error" in box:
            raise box["error"]
        exit_code: int | None = None
        deadline = time.monotonic() + 2.0
        while exit_code is None:
            with translated(what, self.where):
                info = api.exec_inspect(exec_id)
            exit_code = info.get("ExitCode")
            if exit_code is None and (not info.get("Running") or time.monotonic() > deadline):
                exit_code = -1
            elif exit_code is None:
                time.sleep(0.01)
        raw = box.get("output") or b""
        return ExecResult(int(exit_code), raw.decode("utf-8", "replace"))

    # -- logs ---------------------------------------------------------------------------------

    def _read_logs(
        self, summary: Mapping[str, Any], since: float | None, tail: int | None
    ) -> list[LogLine]:
        cid = str(summary["Id"])
        name = str((summary.get("Names") or [cid[:12]])[0]).lstrip("/")
        lines: list[LogLine] = []
        for stream in ("stdout", "stderr"):
            try:
                with translated(f"reading logs of task {name}", self.where):
                    raw = self.api.logs(
                        cid,
                        stdout=stream == "stdout",
                        stderr=stream == "stderr",
                        timestamps=True,
                        tail=tail if tail is not None else "all",
                        since=since if since and since > 0 else None,
                    )
            except NotFoundError:
                return lines
            for stamp, message in cs.log_lines(raw.decode("utf-8", "replace")):
                lines.append(LogLine(cid, name, stamp, stream, message))
        return lines

    def logs(
        self,
        service: str,
        instance: str | None = None,
        follow: bool = False,
        since: float | None = None,
        tail: int | None = None,
        stop: threading.Event | None = None,
    ) -> Iterator[LogLine]:
        """Merged logs of every task of ``service`` (``instance``), oldest first.

        ``follow`` reads each task in its own thread and looks for new tasks every second;
        closing the iterator or setting ``stop`` stops the readers.
        """
        summaries = self._containers(service, instance)
        if not follow:
            lines = [line for s in summaries for line in self._read_logs(s, since, tail)]
            lines.sort(key=lambda line: line.timestamp)
            yield from lines
            return
        yield from _Follower(self, service, instance, since, tail, stop).run(summaries)

    # -- node -------------------------------------------------------------------------------

    def node_capacity(self) -> Sequence[NodeCapacity]:
        api = self.api
        with translated("reading the engine's capacity", self.where):
            info = api.info()
        cpus, mem = cs.reservations(self._containers(every_cluster=True))
        return (
            NodeCapacity(
                node=str(info.get("Name", "")),
                cpus=float(info.get("NCPU") or 0),
                mem_mb=float(info.get("MemTotal") or 0) / (1024 * 1024),
                cpus_reserved=cpus,
                mem_reserved_mb=mem,
                address="127.0.0.1",
                tasks=sum(
                    1 for v in self.list_app_versions() for t in v.tasks if t.state == "running"
                ),
            ),
        )

    def local_node(self) -> NodeInfo:
        """One host: tasks are reached from here (their bridge address or 127.0.0.1)."""
        with translated("reading the engine's info", self.where):
            info = self.api.info()
        return NodeInfo(node_id="", name=str(info.get("Name", "")), address="127.0.0.1")

    def task_stats(self, task_id: str) -> Mapping[str, object] | None:
        try:
            with translated(f"reading the stats of task {task_id[:12]}", self.where):
                stats = self.api.stats(task_id, stream=False, one_shot=True)
        except NotFoundError:
            return None
        return stats if isinstance(stats, dict) else None

    def image_exists(self, image: str) -> bool:
        try:
            with translated(f"inspecting image {image}", self.where):
                self.api.inspect_image(image)
        except (ImageError, NotFoundError):
            return False
        return True


class _Follower:
    """``logs --follow``: one reader thread per task stream feeding one queue."""

    def __init__(
        self,
        engine: DockerEngine,
        service: str,
        instance: str | None,
        since: float | None,
        tail: int | None,
        stop: threading.Event | None = None,
    ) -> None:
        self.engine = engine
        self.wanted_stop = stop or threading.Event()
        self.service = service
        self.instance = instance
        self.since = since if since and since > 0 else None
        self.tail: int | str = tail if tail is not None else "all"
        self.lines: queue.Queue[LogLine] = queue.Queue()
        self.stop = threading.Event()
        self.streams: list[Any] = []
        self.seen: set[str] = set()
        self.guard = threading.Lock()

    def run(self, summaries: Sequence[Mapping[str, Any]]) -> Iterator[LogLine]:
        self._watch(summaries, self.tail)
        next_refresh = time.monotonic() + FOLLOW_REFRESH_SECONDS
        try:
            while not self.wanted_stop.is_set():
                try:
                    line: LogLine | None = self.lines.get(
                        timeout=max(0.05, next_refresh - time.monotonic())
                    )
                except queue.Empty:
                    line = None
                if line is not None:
                    yield line
                if time.monotonic() >= next_refresh:
                    # new tasks started after we began: read them from their first line
                    self._watch(self.engine._containers(self.service, self.instance), "all")
                    next_refresh = time.monotonic() + FOLLOW_REFRESH_SECONDS
        finally:
            self.stop.set()
            with self.guard:
                streams = list(self.streams)
            for stream in streams:
                with suppress(Exception):  # closing a dead socket: nothing left to do
                    stream.close()

    def _watch(self, summaries: Sequence[Mapping[str, Any]], tail: int | str) -> None:
        for summary in summaries:
            cid = str(summary["Id"])
            if cid in self.seen:
                continue
            self.seen.add(cid)
            name = str((summary.get("Names") or [cid[:12]])[0]).lstrip("/")
            for stream in ("stdout", "stderr"):
                threading.Thread(
                    target=self._read,
                    args=(cid, name, stream, tail),
                    name=f"logs-{name}-{stream}",
                    daemon=True,
                ).start()

    def _read(self, cid: str, name: str, stream: str, tail: int | str) -> None:
        try:
            with translated(f"following logs of task {name}", self.engine.where):
                reader = self.engine.api.logs(
                    cid,
                    stdout=stream == "stdout",
                    stderr=stream == "stderr",
                    stream=True,
                    follow=True,
                    timestamps=True,
                    tail=tail,
                    since=self.since,
                )
                with self.guard:
                    self.streams.append(reader)
                if self.stop.is_set():
                    reader.close()
                    return
                pending = ""
                for chunk in reader:
                    pending += chunk.decode("utf-8", "replace")
                    complete, _, pending = pending.rpartition("\n")
                    for stamp, message in cs.log_lines(complete):
                        self.lines.put(LogLine(cid, name, stamp, stream, message))
                for stamp, message in cs.log_lines(pending):
                    self.lines.put(LogLine(cid, name, stamp, stream, message))
        except PaasportError:
            return  # the task went away: its stream simply ends
        except Exception:
            if self.stop.is_set():
                return  # we closed the socket under the reader
            raise
