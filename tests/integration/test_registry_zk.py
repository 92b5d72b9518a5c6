"""ZookeeperRegistry against the real ZooKeeper (scripts/services.sh): semantics, ephemerals,
session loss, and a 30 s outage (through a relay the test cuts) while HAProxy keeps routing."""

from __future__ import annotations

import threading
import time
import uuid
from collections.abc import Iterator
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
            thread = threading.Thread(target=agent.run_forever, args=(stop,))
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
            thread.join()
        assert load.failures == []
        assert during > 100 and set(load.seen) == {"a", "b"}
    finally:
        stop.set()
        if thread is not None:
            thread.join()  # before stopping the proxy, or a last pass would start it again
        proxy.stop()
        reg.close()
        relay.close()
