"""ZookeeperRegistry against the real ZooKeeper (scripts/services.sh): semantics, ephemerals,
session loss, calls that meet their deadline while a relay cuts and freezes the connection
mid-call, and a 30 s outage while HAProxy keeps routing."""

from __future__ import annotations

import random
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from paasport.discovery.agent import Agent
from paasport.discovery.haproxy import HAProxyProcess
from paasport.discovery.registry import Backend
from paasport.discovery.zk_registry import ZookeeperRegistry
from paasport.errors import RegistryUnavailable
from paasport.types import InstanceConfig, Namespace

from discovery_support import Load, Relay, StaticEngine, backends, free_port, task_for, wait_for

CONFIG = InstanceConfig("web", "local", "main", "local.main", registrations=("web.main",))
B1 = Backend("web.main", "t1", "127.0.0.1", 1001, "h1")


@pytest.fixture
def zk_path(zk_hosts: str) -> Iterator[str]:
    path = f"/paasport-test-{uuid.uuid4().hex[:8]}"
    yield path
    from kazoo.client import KazooClient

    client = KazooClient(hosts=zk_hosts)
    client.start(timeout=10)
    client.delete(path, recursive=True)
    client.stop()
    client.close()


def test_registry_semantics(zk_hosts: str, zk_path: str) -> None:
    reg = ZookeeperRegistry(zk_hosts, zk_path)
    other = ZookeeperRegistry(zk_hosts, zk_path)
    try:
        v0 = reg.version()
        reg.register(B1)
        assert other.backends() == (B1,)
        v = other.set_draining("web.main", "t1", True, now=5.0)
        assert v > v0 and reg.version() == v
        assert [b.state for b in reg.backends()] == ["drain"]
        reg.ack("h1", v, now=6.0, sessions={"web.main/t1": 1})
        assert other.acks() == {"h1": v}
        assert other.reports()["h1"].sessions == {"web.main/t1": 1}
        other.set_draining("web.main", "t1", False, now=7.0)
        assert [b.state for b in other.backends()] == ["up"]
    finally:
        reg.close()
    # the closed session's ephemeral nodes (backend, ack) are gone; drain marks are not
    assert wait_for(lambda: other.backends() == () and other.acks() == {}, timeout=5)
    other.close()


def test_unreachable_zookeeper_is_a_registry_error(zk_path: str) -> None:
    with pytest.raises(RegistryUnavailable, match="zookeeper"):
        ZookeeperRegistry(f"127.0.0.1:{free_port()}", zk_path, connect_timeout=1.0)


def _expire_session(zk_hosts: str, reg: ZookeeperRegistry) -> None:
    """The standard trick: a second client joins the session and closes it."""
    from kazoo.client import KazooClient

    session_id, password = reg._client.client_id
    twin = KazooClient(hosts=zk_hosts, client_id=(session_id, password))
    twin.start(timeout=10)
    twin.stop()
    twin.close()


def _agent(
    engine: StaticEngine, reg: ZookeeperRegistry, proxy: HAProxyProcess | None, port: int
) -> Agent:
    namespaces = {"web.main": Namespace("web", "main", port, healthcheck_timeout_s=0.5)}
    return Agent(
        engine,
        reg,
        proxy,
        lambda: (namespaces, [CONFIG]),  # type: ignore[arg-type]
        agent_id="host-zk",
        interval=0.1,
        check_interval=0.1,
    )


def test_session_loss_re_registers(zk_hosts: str, zk_path: str) -> None:
    reg = ZookeeperRegistry(zk_hosts, zk_path, timeout=4.0)
    watcher = ZookeeperRegistry(zk_hosts, zk_path)
    engine = StaticEngine()
    try:
        with backends("a") as (a,):
            engine.tasks = [task_for(a)]
            agent = _agent(engine, reg, None, free_port())
            assert wait_for(lambda: agent.run_once() and len(watcher.backends()) == 1)
            old_session = reg._client.client_id[0]
            _expire_session(zk_hosts, reg)
            assert wait_for(lambda: watcher.backends() == (), timeout=10)
            assert wait_for(lambda: reg.sessions_lost >= 1, timeout=10)

            def re_registered() -> bool:
                agent.run_once()
                return [b.task_id for b in watcher.backends()] == ["task-a"]

            assert wait_for(re_registered, timeout=15)
            assert reg._client.client_id[0] != old_session
    finally:
        reg.close()
        watcher.close()


def test_zookeeper_outage_keeps_routing_to_last_known_backends(
    zk_hosts: str, zk_path: str, tmp_dir: Path
) -> None:
    host, port = zk_hosts.split(":")
    relay = Relay(host, int(port))
    reg = ZookeeperRegistry(f"127.0.0.1:{relay.port}", zk_path, timeout=6.0)
    proxy = HAProxyProcess(tmp_dir / "haproxy")
    engine = StaticEngine()
    proxy_port = free_port()
    stop = threading.Event()
    thread: threading.Thread | None = None
    try:
        with backends("a", "b") as (a, b):
            engine.tasks = [task_for(a), task_for(b)]
            agent = _agent(engine, reg, proxy, proxy_port)
            assert wait_for(lambda: agent.run_once() and len(reg.backends()) == 2)
            thread = threading.Thread(target=agent.run_forever, args=(stop,), daemon=True)
            thread.start()
            with Load(proxy_port) as load:
                wait_for(lambda: load.ok > 20)
                relay.cut()
                outage_start = load.ok
                time.sleep(30)
                during = load.ok - outage_start
                report = agent.run_once()
                assert any("registry" in e for e in report.errors)
                relay.restore()

                def back() -> bool:
                    try:
                        return len(reg.backends()) == 2
                    except RegistryUnavailable:
                        return False

                assert wait_for(back, timeout=20)
            stop.set()
            thread.join(timeout=15)
            assert not thread.is_alive(), "the agent did not stop within 15 s"
        assert load.failures == []
        assert during > 100 and set(load.seen) == {"a", "b"}
    finally:
        stop.set()
        if thread is not None:
            thread.join(timeout=15)  # before stopping the proxy, or a last pass starts it again
        proxy.stop()
        reg.close()
        relay.close()


class CallStream:
    """Registry calls back to back in threads, each timed: the longest, the last success."""

    def __init__(self, reg: ZookeeperRegistry, threads: int = 2) -> None:
        self.reg = reg
        self.longest = (0.0, "")
        self.last_ok = 0.0
        self.calls = 0
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._threads = [
            threading.Thread(target=self._run, args=(n,), daemon=True) for n in range(threads)
        ]

    def _ops(self, n: int) -> list[tuple[str, Callable[[], object]]]:
        reg, mine = self.reg, Backend("web.main", f"stream-{n}", "127.0.0.1", 2000 + n, "h1")
        return [
            ("snapshot", reg.snapshot),  # get_children per namespace, then a get per node
            ("register", lambda: reg.register(mine)),
            ("reports", reg.reports),
            ("set_draining", lambda: reg.set_draining("web.main", mine.task_id, True, 1.0)),
            ("ack", lambda: reg.ack(f"h{n}", 1, 1.0)),
            ("backends", reg.backends),
            ("undrain", lambda: reg.set_draining("web.main", mine.task_id, False, 2.0)),
            ("version", reg.version),
        ]

    def _run(self, n: int) -> None:
        ops = self._ops(n)
        i = 0
        while not self._stop.is_set():
            name, op = ops[i % len(ops)]
            i += 1
            start = time.monotonic()
            ok = True
            try:
                op()
            except RegistryUnavailable:
                ok = False
                time.sleep(0.01)  # a caller's retry; not connected fails at once
            took = time.monotonic() - start
            with self._lock:
                self.calls += 1
                if took > self.longest[0]:
                    self.longest = (took, name)
                if ok:
                    self.last_ok = time.monotonic()

    def __enter__(self) -> CallStream:
        for t in self._threads:
            t.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        for t in self._threads:
            t.join(timeout=10)

    def alive(self) -> bool:
        return any(t.is_alive() for t in self._threads)


def test_every_call_meets_its_deadline_through_30_cuts_and_freezes(
    zk_hosts: str, zk_path: str
) -> None:
    host, port = zk_hosts.split(":")
    relay = Relay(host, int(port))
    deadline = 1.0
    reg = ZookeeperRegistry(
        f"127.0.0.1:{relay.port}", zk_path, timeout=4.0, connect_timeout=1.0, call_timeout=deadline
    )
    rng = random.Random(9)
    recoveries: list[float] = []
    try:
        for i in range(40):  # a snapshot is dozens of calls: cuts land inside get_children
            reg.register(Backend(f"ns{i % 8}.main", f"t{i}", "127.0.0.1", 3000 + i, "h1"))
        with CallStream(reg) as stream:
            assert wait_for(lambda: stream.calls > 50, timeout=10)
            for n in range(30):
                time.sleep(rng.uniform(0.0, 0.3))  # a random point in the stream of calls
                mode = "freeze" if n % 2 == 0 else "cut"
                relay.freeze() if mode == "freeze" else relay.cut()
                time.sleep(rng.uniform(0.05, 1.5))  # shorter and longer than the deadline
                relay.restore()
                restored = time.monotonic()
                assert wait_for(lambda t=restored: stream.last_ok > t, timeout=15), (
                    f"cut {n} ({mode}): no call succeeded within 15 s of the restore"
                )
                recoveries.append(stream.last_ok - restored)
                assert stream.longest[0] <= deadline + 0.5, (
                    f"cut {n} ({mode}): {stream.longest[1]} took {stream.longest[0]:.1f}s"
                )
        assert not stream.alive()
        print(
            f"\n{stream.calls} calls, longest {stream.longest[0]:.2f}s ({stream.longest[1]}), "
            f"back after restore: median {sorted(recoveries)[len(recoveries) // 2]:.2f}s, "
            f"max {max(recoveries):.2f}s, clients abandoned {reg.clients_abandoned}"
        )
    finally:
        reg.close()
        relay.close()
