"""The ZooKeeper registry (many hosts): ephemeral backend nodes, so a dead host's entries vanish.

Under ``path``: ``backends/<ns>/<task>`` (ephemeral JSON), ``draining/<ns>/<task>`` (persistent:
drains outlive the reconciler), ``acks/<agent>`` (ephemeral: live agents only), ``version`` (its
data version is the registry version). kazoo loads lazily (extra ``zookeeper``); the agent
re-registers after a session loss because it diffs what it wants against what it reads.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import Mapping
from typing import Any
from urllib.parse import quote, unquote

from paasport.discovery.registry import AgentReport, Backend, DrainMark, Snapshot, apply_drains
from paasport.errors import RegistryUnavailable

log = logging.getLogger(__name__)


def _name(value: str) -> str:
    return quote(value, safe="._-")


class ZookeeperRegistry:
    """Registry on ZooKeeper via kazoo; every kazoo error becomes RegistryUnavailable."""

    def __init__(
        self,
        hosts: str,
        path: str = "/paasport",
        timeout: float = 10.0,
        connect_timeout: float = 5.0,
    ) -> None:
        try:
            from kazoo.client import KazooClient
        except ImportError as err:  # pragma: no cover - depends on the install
            raise RegistryUnavailable(
                "the zookeeper registry needs kazoo: pip install 'paasport[zookeeper]'"
            ) from err
        # kazoo logs every reconnect attempt; a process that set up no logging (status,
        # mesh-status) would print them through logging's last-resort handler before its one
        # line of error: give kazoo a handler of its own (configured root handlers still see it)
        if not logging.getLogger("kazoo").handlers:
            logging.getLogger("kazoo").addHandler(logging.NullHandler())
        self.hosts = hosts
        self.path = path.rstrip("/") or "/paasport"
        self.sessions_lost = 0
        self._lock = threading.Lock()
        # reconnect quickly and forever: a registry outage must end as soon as ZooKeeper is back
        retry = {"max_tries": -1, "delay": 0.1, "backoff": 1.5, "max_delay": 2.0}
        self._client: Any = KazooClient(hosts=hosts, timeout=timeout, connection_retry=retry)
        self._client.add_listener(self._on_state)
        self._guard(lambda: self._client.start(timeout=connect_timeout), "connect", False)
        self._guard(self._ensure_paths, "create paths")

    def _on_state(self, state: str) -> None:
        # runs in kazoo's thread: record only; the agent's next diff re-registers everything
        if state == "LOST":
            self.sessions_lost += 1
            log.warning(
                "zookeeper session lost (%s); backends will be registered again", self.hosts
            )

    def _guard(self, fn: Any, what: str, need_connection: bool = True) -> Any:
        from kazoo.exceptions import KazooException
        from kazoo.handlers.threading import KazooTimeoutError

        if need_connection and not self._client.connected:  # fail fast, never queue and hang
            raise RegistryUnavailable(f"zookeeper {self.hosts}{self.path}: {what}: not connected")
        try:
            return fn()
        except (KazooException, KazooTimeoutError, OSError) as err:
            raise RegistryUnavailable(
                f"zookeeper {self.hosts}{self.path}: {what}: {type(err).__name__} {err}".strip()
            ) from err

    def _ensure_paths(self) -> None:
        for sub in ("backends", "draining", "acks"):
            self._client.ensure_path(f"{self.path}/{sub}")
        if not self._client.exists(f"{self.path}/version"):
            from kazoo.exceptions import NodeExistsError

            with contextlib.suppress(NodeExistsError):
                self._client.create(f"{self.path}/version", b"", makepath=True)

    def _bump(self) -> int:
        stat = self._client.set(f"{self.path}/version", b"")
        return int(stat.version)

    # -- writes ----------------------------------------------------------------------------
    def register(self, backend: Backend) -> None:
        node = f"{self.path}/backends/{_name(backend.namespace)}/{_name(backend.task_id)}"
        data = json.dumps(
            {
                "host": backend.host,
                "port": backend.port,
                "agent_id": backend.agent_id,
                "state": backend.state,
                "weight": backend.weight,
                "registered_at": backend.registered_at,
            },
            sort_keys=True,
        ).encode()

        def write() -> None:
            from kazoo.exceptions import NodeExistsError, NoNodeError

            session = self._client.client_id[0] if self._client.client_id else None
            stat = self._client.exists(node)
            if stat is not None and stat.ephemeralOwner != session:
                with contextlib.suppress(NoNodeError):  # a previous session's: take it over
                    self._client.delete(node)
                stat = None
            if stat is None:
                try:
                    self._client.create(node, data, ephemeral=True, makepath=True)
                except NodeExistsError:
                    self._client.set(node, data)
            else:
                self._client.set(node, data)
            self._bump()

        with self._lock:
            self._guard(write, f"register {backend.namespace}/{backend.task_id}")

    def deregister(self, namespace: str, task_id: str) -> None:
        node = f"{self.path}/backends/{_name(namespace)}/{_name(task_id)}"

        def delete() -> None:
            from kazoo.exceptions import NoNodeError

            try:
                self._client.delete(node)
            except NoNodeError:
                return
            self._bump()

        with self._lock:
            self._guard(delete, f"deregister {namespace}/{task_id}")

    def set_draining(self, namespace: str, task_id: str, draining: bool, now: float) -> int:
        node = f"{self.path}/draining/{_name(namespace)}/{_name(task_id)}"

        def write() -> int:
            from kazoo.exceptions import NodeExistsError, NoNodeError

            exists = self._client.exists(node) is not None
            if draining and not exists:
                version = self._bump()
                data = json.dumps({"version": version, "since": now}).encode()
                with contextlib.suppress(NodeExistsError):
                    self._client.create(node, data, makepath=True)
                return version
            if not draining and exists:
                with contextlib.suppress(NoNodeError):
                    self._client.delete(node)
                return self._bump()
            return int(self._client.exists(f"{self.path}/version").version)

        with self._lock:
            result: int = self._guard(write, f"set draining {namespace}/{task_id}")
            return result

    def ack(
        self, agent_id: str, version: int, now: float, sessions: Mapping[str, int] | None = None
    ) -> None:
        node = f"{self.path}/acks/{_name(agent_id)}"
        data = json.dumps(
            {"version": version, "time": now, "sessions": dict(sessions or {})}, sort_keys=True
        ).encode()

        def write() -> None:
            from kazoo.exceptions import NodeExistsError, NoNodeError

            session = self._client.client_id[0] if self._client.client_id else None
            stat = self._client.exists(node)
            if stat is not None and stat.ephemeralOwner != session:
                with contextlib.suppress(NoNodeError):
                    self._client.delete(node)
                stat = None
            if stat is None:
                try:
                    self._client.create(node, data, ephemeral=True, makepath=True)
                    return
                except NodeExistsError:
                    pass
            self._client.set(node, data)

        with self._lock:
            self._guard(write, f"ack {agent_id}")

    # -- reads -----------------------------------------------------------------------------
    def _children(self, path: str) -> list[str]:
        from kazoo.exceptions import NoNodeError

        try:
            return sorted(self._client.get_children(path))
        except NoNodeError:
            return []

    def _get_json(self, path: str) -> dict[str, Any] | None:
        from kazoo.exceptions import NoNodeError

        try:
            data, _ = self._client.get(path)
        except NoNodeError:
            return None
        try:
            value = json.loads(data.decode() or "{}")
        except ValueError:
            return None
        return value if isinstance(value, dict) else None

    def _read(self) -> Snapshot:
        version = int(self._client.exists(f"{self.path}/version").version)
        backends = []
        for ns in self._children(f"{self.path}/backends"):
            for task in self._children(f"{self.path}/backends/{ns}"):
                d = self._get_json(f"{self.path}/backends/{ns}/{task}")
                if d is None:
                    continue
                backends.append(
                    Backend(
                        unquote(ns),
                        unquote(task),
                        str(d["host"]),
                        int(d["port"]),
                        str(d["agent_id"]),
                        "drain" if d.get("state") == "drain" else "up",
                        int(d.get("weight", 1)),
                        float(d.get("registered_at", 0.0)),
                    )
                )
        drains = []
        for ns in self._children(f"{self.path}/draining"):
            for task in self._children(f"{self.path}/draining/{ns}"):
                d = self._get_json(f"{self.path}/draining/{ns}/{task}")
                if d is not None:
                    drains.append(
                        DrainMark(unquote(ns), unquote(task), int(d["version"]), float(d["since"]))
                    )
        marks = tuple(sorted(drains, key=lambda m: (m.namespace, m.task_id)))
        return Snapshot(version, apply_drains(tuple(backends), marks), marks)

    def snapshot(self) -> Snapshot:
        with self._lock:
            result: Snapshot = self._guard(self._read, "read")
            return result

    def drain_marks(self) -> tuple[DrainMark, ...]:
        return self.snapshot().drains

    def backends(self, namespace: str | None = None) -> tuple[Backend, ...]:
        return tuple(
            b for b in self.snapshot().backends if namespace is None or b.namespace == namespace
        )

    def version(self) -> int:
        with self._lock:
            stat = self._guard(lambda: self._client.exists(f"{self.path}/version"), "version")
            return int(stat.version)

    def reports(self) -> Mapping[str, AgentReport]:
        def read() -> dict[str, AgentReport]:
            out = {}
            for name in self._children(f"{self.path}/acks"):
                d = self._get_json(f"{self.path}/acks/{name}")
                if d is not None:
                    agent = unquote(name)
                    sessions = {str(k): int(v) for k, v in dict(d.get("sessions", {})).items()}
                    out[agent] = AgentReport(agent, int(d["version"]), float(d["time"]), sessions)
            return out

        with self._lock:
            result: dict[str, AgentReport] = self._guard(read, "read acks")
            return result

    def acks(self) -> Mapping[str, int]:
        return {a: r.version for a, r in self.reports().items()}

    def close(self) -> None:
        try:
            self._client.stop()
            self._client.close()
        except Exception:  # closing is best effort
            log.debug("closing the zookeeper client failed", exc_info=True)
