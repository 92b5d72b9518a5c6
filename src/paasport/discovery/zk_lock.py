"""The ZooKeeper calls of the one-deployd-per-cluster lock (``platform.lock.ClusterLock``).

Nodes follow kazoo's ``Lock`` recipe layout (ephemeral sequential ``<prefix>__lock__<seq>``
children of ``<zookeeper_path>/locks/<name>``, data = the contender's identifier), so kazoo's
``Lock(client, path).contenders()`` reads them too. Every call goes through one
``ZookeeperRegistry``'s deadline-bounded client (its abandon-and-reconnect handling included).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass

from paasport.discovery.zk_registry import ZookeeperRegistry, _Calls

LOCK_MARK = "__lock__"  # kazoo.recipe.lock.Lock._NODE_NAME


@dataclass(frozen=True)
class Contender:
    node: str  # the child's name: <prefix>__lock__<sequence>
    identifier: str  # its data ("host/pid")


def sequence_of(node: str) -> str:
    """The sequence part kazoo sorts contenders by (after the last ``__lock__``)."""
    return node[node.rfind(LOCK_MARK) + len(LOCK_MARK) :]


class ZkLockSeat:
    """One process's place in the lock ``name`` through ``registry``'s client."""

    def __init__(self, registry: ZookeeperRegistry, name: str) -> None:
        self.registry = registry
        self.path = f"{registry.path}/locks/{name}"

    @property
    def where(self) -> str:
        return f"zookeeper {self.registry.hosts}{self.path}"

    def session(self) -> int | None:
        """The client's session id while it is connected (no call: kazoo's own state, which
        turns SUSPENDED as soon as the connection drops), else None."""
        client = self.registry._client  # read without the lock: one attribute, never torn
        if client is None or not client.connected:
            return None
        client_id = client.client_id
        return int(client_id[0]) if client_id else None

    def contenders(self) -> tuple[Contender, ...]:
        """Every contender, the holder first (one round of calls within the deadline)."""

        def read(z: _Calls) -> tuple[Contender, ...]:
            z.ensure_path(self.path)
            names = sorted((n for n in z.children(self.path) if LOCK_MARK in n), key=sequence_of)
            out = []
            for name in names:
                data = z.get(f"{self.path}/{name}")
                if data is not None:  # gone between the two calls: not a contender
                    out.append(Contender(name, data.decode(errors="replace")))
            return tuple(out)

        return self.registry._guard(read, f"read lock {self.path}")

    def enter(self, prefix: str, identifier: str) -> str:
        """Queue up: a new ephemeral sequential node of this session; returns its name."""

        def create(z: _Calls) -> str:
            created = z.wait(
                z.client.create_async(
                    f"{self.path}/{prefix}{LOCK_MARK}",
                    identifier.encode(),
                    ephemeral=True,
                    sequence=True,
                    makepath=True,
                )
            )
            return str(created).rsplit("/", 1)[-1]

        return self.registry._guard(create, f"enter lock {self.path}")

    def leave(self, nodes: tuple[str, ...]) -> None:
        """Remove our nodes (already gone is fine)."""

        def delete(z: _Calls) -> None:
            from kazoo.exceptions import NoNodeError

            for node in nodes:
                with contextlib.suppress(NoNodeError):
                    z.delete(f"{self.path}/{node}")

        self.registry._guard(delete, f"leave lock {self.path}")

    def close(self) -> None:
        self.registry.close()
