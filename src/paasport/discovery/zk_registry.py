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
import time
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar
from urllib.parse import quote, unquote

from paasport.discovery.registry import (
    AgentReport,
    Backend,
    DrainMark,
    Snapshot,
    apply_drains,
    plain_loads,
)
from paasport.errors import RegistryUnavailable

log = logging.getLogger(__name__)

T = TypeVar("T")


def _name(value: str) -> str:
    return quote(value, safe="._-")


class _Missed(Exception):
    """A kazoo call did not answer within the operation's deadline."""


class _Calls:
    """The kazoo calls of one registry operation, each waited on within the operation's one
    deadline (kazoo's synchronous calls wait forever on a request a dropped connection lost)."""

    def __init__(self, client: Any, deadline: float) -> None:
        self.client = client
        self.deadline = deadline

    def wait(self, result: Any) -> Any:
        from kazoo.handlers.threading import KazooTimeoutError

        try:
            return result.get(timeout=max(0.0, self.deadline - time.monotonic()))
        except KazooTimeoutError:
            if result.ready():  # the call itself failed with a timeout: an ordinary error
                raise
            raise _Missed from None

    def exists(self, path: str) -> Any:
        return self.wait(self.client.exists_async(path))

    def get(self, path: str) -> bytes | None:
        from kazoo.exceptions import NoNodeError

        try:
            data, _ = self.wait(self.client.get_async(path))
        except NoNodeError:
            return None
        return bytes(data)

    def children(self, path: str) -> list[str]:
        return self.children_of([path])[0]

    def children_of(self, paths: Sequence[str]) -> list[list[str]]:
        """Children of every path, asked all at once ([] for a path that is gone)."""
        from kazoo.exceptions import NoNodeError

        pending = [self.client.get_children_async(p) for p in paths]
        out: list[list[str]] = []
        for result in pending:
            try:
                out.append(sorted(self.wait(result)))
            except NoNodeError:
                out.append([])
        return out

    def json_of(self, paths: Sequence[str]) -> list[dict[str, Any] | None]:
        """The JSON object in every node, read all at once (None: gone or not an object)."""
        from kazoo.exceptions import NoNodeError

        pending = [self.client.get_async(p) for p in paths]
        out: list[dict[str, Any] | None] = []
        for result in pending:
            try:
                data, _ = self.wait(result)
                value = json.loads(data.decode() or "{}")
            except (NoNodeError, ValueError):
                value = None
            out.append(value if isinstance(value, dict) else None)
        return out

    def create(self, path: str, data: bytes, ephemeral: bool = False) -> None:
        self.wait(self.client.create_async(path, data, ephemeral=ephemeral, makepath=True))

    def set(self, path: str, data: bytes) -> Any:
        return self.wait(self.client.set_async(path, data))

    def delete(self, path: str) -> None:
        self.wait(self.client.delete_async(path))

    def ensure_path(self, path: str) -> None:
        self.wait(self.client.ensure_path_async(path))


def _stop_client(client: Any) -> None:
    try:
        client.stop()
        client.close()
    except Exception:  # closing is best effort
        log.debug("closing the zookeeper client failed", exc_info=True)


class ZookeeperRegistry:
    """Registry on ZooKeeper via kazoo; every kazoo error becomes RegistryUnavailable.

    Every method returns or raises within ``call_timeout`` seconds (waiting for the lock
    included). A call that misses it abandons the client (stopped in the background, so its
    session and ephemeral nodes end) and the next call connects a new one.
    """

    def __init__(
        self,
        hosts: str,
        path: str = "/paasport",
        timeout: float = 10.0,
        connect_timeout: float = 5.0,
        call_timeout: float = 5.0,
    ) -> None:
        try:
            from kazoo.client import KazooClient  # noqa: F401
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
        self.session_timeout = timeout
        self.connect_timeout = connect_timeout
        self.call_timeout = call_timeout
        self.sessions_lost = 0
        self.clients_abandoned = 0
        self._lock = threading.Lock()
        self._stopping: list[threading.Thread] = []
        self._client: Any = None
        deadline = time.monotonic() + max(connect_timeout, call_timeout)
        with self._locked(deadline, "connect"):
            if not self._connect(deadline).connected:
                self._abandon(None)
                raise RegistryUnavailable(
                    f"zookeeper {self.hosts}{self.path}: connect: not connected within "
                    f"{connect_timeout:g}s"
                )
            self._run(self._ensure_paths, "create paths", deadline)

    def _on_state(self, client: Any, state: str) -> None:
        # runs in kazoo's thread: record only; the agent's next diff re-registers everything
        if state == "LOST" and client is self._client:
            self.sessions_lost += 1
            log.warning(
                "zookeeper session lost (%s); backends will be registered again", self.hosts
            )

    def _connect(self, deadline: float) -> Any:
        """A new client, connecting in the background; waits for it until the deadline."""
        from kazoo.client import KazooClient

        # reconnect quickly and forever: a registry outage must end as soon as ZooKeeper is back
        retry = {"max_tries": -1, "delay": 0.1, "backoff": 1.5, "max_delay": 2.0}
        client: Any = KazooClient(
            hosts=self.hosts, timeout=self.session_timeout, connection_retry=retry
        )
        client.add_listener(lambda state: self._on_state(client, state))
        self._client = client
        wait = min(self.connect_timeout, deadline - time.monotonic())
        client.start_async().wait(max(0.0, wait))
        return client

    def _abandon(self, why: str | None) -> None:
        """Drop the client, stopped in a thread of its own (kazoo's stop can wait on a socket);
        ``why`` is logged (None: closing on purpose)."""
        client, self._client = self._client, None
        if client is None:
            return
        if why is not None:
            self.clients_abandoned += 1
            log.warning(
                "zookeeper %s: %s; abandoning the client, the next call reconnects",
                self.hosts,
                why,
            )
        thread = threading.Thread(target=_stop_client, args=(client,), daemon=True)
        thread.start()
        self._stopping = [t for t in self._stopping if t.is_alive()] + [thread]

    @contextlib.contextmanager
    def _locked(self, deadline: float, what: str) -> Iterator[None]:
        if not self._lock.acquire(timeout=max(0.0, deadline - time.monotonic())):
            raise RegistryUnavailable(
                f"zookeeper {self.hosts}{self.path}: {what}: another call held the client "
                f"past the {self.call_timeout:g}s deadline"
            )
        try:
            yield
        finally:
            self._lock.release()

    def _run(self, fn: Callable[[_Calls], T], what: str, deadline: float) -> T:
        """``fn`` on the client within ``deadline`` (lock held); kazoo errors -> ours."""
        from kazoo.exceptions import KazooException
        from kazoo.handlers.threading import KazooTimeoutError

        where = f"zookeeper {self.hosts}{self.path}: {what}"
        if self._client is None:
            self._connect(deadline)
        if not self._client.connected:  # fail fast, never queue and hang
            raise RegistryUnavailable(f"{where}: not connected")
        try:
            return fn(_Calls(self._client, deadline))
        except _Missed:
            self._abandon(f"{what} got no answer within {self.call_timeout:g}s")
            raise RegistryUnavailable(f"{where}: no answer within {self.call_timeout:g}s") from None
        except (KazooException, KazooTimeoutError, OSError) as err:
            raise RegistryUnavailable(f"{where}: {type(err).__name__} {err}".strip()) from err

    def _guard(self, fn: Callable[[_Calls], T], what: str) -> T:
        deadline = time.monotonic() + self.call_timeout
        with self._locked(deadline, what):
            return self._run(fn, what, deadline)

    def _ensure_paths(self, z: _Calls) -> None:
        for sub in ("backends", "draining", "acks"):
            z.ensure_path(f"{self.path}/{sub}")
        if not z.exists(f"{self.path}/version"):
            from kazoo.exceptions import NodeExistsError

            with contextlib.suppress(NodeExistsError):
                z.create(f"{self.path}/version", b"")

    def _bump(self, z: _Calls) -> int:
        stat = z.set(f"{self.path}/version", b"")
        return int(stat.version)

    # -- writes ----------------------------------------------------------------------------
    def _take_over(self, z: _Calls, node: str) -> Any:
        """The node's stat, or None when absent or a previous session's (deleted, to be ours)."""
        from kazoo.exceptions import NoNodeError

        session = z.client.client_id[0] if z.client.client_id else None
        stat = z.exists(node)
        if stat is not None and stat.ephemeralOwner != session:
            with contextlib.suppress(NoNodeError):
                z.delete(node)
            stat = None
        return stat

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
                "share": backend.share,
            },
            sort_keys=True,
        ).encode()

        def write(z: _Calls) -> None:
            from kazoo.exceptions import NodeExistsError

            if self._take_over(z, node) is None:
                try:
                    z.create(node, data, ephemeral=True)
                except NodeExistsError:
                    z.set(node, data)
            else:
                z.set(node, data)
            self._bump(z)

        self._guard(write, f"register {backend.namespace}/{backend.task_id}")

    def deregister(self, namespace: str, task_id: str) -> None:
        node = f"{self.path}/backends/{_name(namespace)}/{_name(task_id)}"

        def delete(z: _Calls) -> None:
            from kazoo.exceptions import NoNodeError

            try:
                z.delete(node)
            except NoNodeError:
                return
            self._bump(z)

        self._guard(delete, f"deregister {namespace}/{task_id}")

    def set_draining(self, namespace: str, task_id: str, draining: bool, now: float) -> int:
        node = f"{self.path}/draining/{_name(namespace)}/{_name(task_id)}"

        def write(z: _Calls) -> int:
            from kazoo.exceptions import NodeExistsError, NoNodeError

            exists = z.exists(node) is not None
            if draining and not exists:
                version = self._bump(z)
                data = json.dumps({"version": version, "since": now}).encode()
                with contextlib.suppress(NodeExistsError):
                    z.create(node, data)
                return version
            if not draining and exists:
                with contextlib.suppress(NoNodeError):
                    z.delete(node)
                return self._bump(z)
            return int(z.exists(f"{self.path}/version").version)

        return self._guard(write, f"set draining {namespace}/{task_id}")

    def ack(
        self, agent_id: str, version: int, now: float, sessions: Mapping[str, int] | None = None,
        loads: Mapping[str, Mapping[str, float]] | None = None,
    ) -> None:  # fmt: skip
        node = f"{self.path}/acks/{_name(agent_id)}"
        document: dict[str, object] = {"version": version, "time": now,
                                       "sessions": dict(sessions or {})}  # fmt: skip
        if loads:
            document["loads"] = plain_loads(loads)
        data = json.dumps(document, sort_keys=True).encode()

        def write(z: _Calls) -> None:
            from kazoo.exceptions import NodeExistsError

            if self._take_over(z, node) is None:
                try:
                    z.create(node, data, ephemeral=True)
                    return
                except NodeExistsError:
                    pass
            z.set(node, data)

        self._guard(write, f"ack {agent_id}")

    # -- reads -----------------------------------------------------------------------------
    def _entries(self, z: _Calls, sub: str) -> list[tuple[str, str, dict[str, Any]]]:
        """(namespace, task, JSON) under ``sub``, each level read in one round of calls."""
        base = f"{self.path}/{sub}"
        names = z.children(base)
        pairs = [
            (ns, task)
            for ns, tasks in zip(
                names, z.children_of([f"{base}/{ns}" for ns in names]), strict=True
            )
            for task in tasks
        ]
        values = z.json_of([f"{base}/{ns}/{task}" for ns, task in pairs])
        return [
            (unquote(ns), unquote(task), d)
            for (ns, task), d in zip(pairs, values, strict=True)
            if d is not None
        ]

    def _read(self, z: _Calls) -> Snapshot:
        version = int(z.exists(f"{self.path}/version").version)
        backends = [
            Backend(
                ns,
                task,
                str(d["host"]),
                int(d["port"]),
                str(d["agent_id"]),
                "drain" if d.get("state") == "drain" else "up",
                int(d.get("weight", 1)),
                float(d.get("registered_at", 0.0)),
                float(d.get("share", 0.0)),
            )
            for ns, task, d in self._entries(z, "backends")
        ]
        drains = [
            DrainMark(ns, task, int(d["version"]), float(d["since"]))
            for ns, task, d in self._entries(z, "draining")
        ]
        marks = tuple(sorted(drains, key=lambda m: (m.namespace, m.task_id)))
        return Snapshot(version, apply_drains(tuple(backends), marks), marks)

    def snapshot(self) -> Snapshot:
        return self._guard(self._read, "read")

    def drain_marks(self) -> tuple[DrainMark, ...]:
        return self.snapshot().drains

    def backends(self, namespace: str | None = None) -> tuple[Backend, ...]:
        return tuple(
            b for b in self.snapshot().backends if namespace is None or b.namespace == namespace
        )

    def version(self) -> int:
        stat = self._guard(lambda z: z.exists(f"{self.path}/version"), "version")
        return int(stat.version)

    def reports(self) -> Mapping[str, AgentReport]:
        def read(z: _Calls) -> dict[str, AgentReport]:
            names = z.children(f"{self.path}/acks")
            out = {}
            for name, d in zip(
                names, z.json_of([f"{self.path}/acks/{n}" for n in names]), strict=True
            ):
                if d is not None:
                    agent = unquote(name)
                    sessions = {str(k): int(v) for k, v in dict(d.get("sessions", {})).items()}
                    out[agent] = AgentReport(agent, int(d["version"]), float(d["time"]), sessions,
                                             plain_loads(d.get("loads")))  # fmt: skip
            return out

        return self._guard(read, "read acks")

    def acks(self) -> Mapping[str, int]:
        return {a: r.version for a, r in self.reports().items()}

    def close(self, wait: float = 5.0) -> None:
        """Stop the client (its session ends, its ephemeral nodes go), waiting at most ``wait``."""
        deadline = time.monotonic() + wait
        if self._lock.acquire(timeout=wait):
            try:
                self._abandon(None)
            finally:
                self._lock.release()
        for thread in self._stopping:
            thread.join(timeout=max(0.0, deadline - time.monotonic()))
