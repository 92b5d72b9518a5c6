"""The discovery agent end to end on one host: real HealthMonitor probes, real SQLite registry,
real HAProxy; the engine is a stand-in listing tasks that are tiny local HTTP servers."""

from __future__ import annotations

import contextlib
import os
import signal
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from paasport.discovery.agent import Agent
from paasport.discovery.drain import RegistryDrainer
from paasport.discovery.haproxy import HAProxyProcess
from paasport.discovery.sqlite_registry import SqliteRegistry
from paasport.types import InstanceConfig, Namespace

from discovery_support import (
    Load,
    StaticEngine,
    backends,
    free_port,
    free_proxy_port,
    get,
    task_for,
    wait_for,
)

CONFIG = InstanceConfig("web", "local", "main", "local.main", registrations=("web.main",))


@dataclass
class Host:
    engine: StaticEngine
    registry: SqliteRegistry
    proxy: HAProxyProcess
    port: int
    dir: Path

    events: list[tuple[str, str]]

    def agent(self, interval: float = 0.1) -> Agent:
        namespaces = {"web.main": Namespace("web", "main", self.port, healthcheck_timeout_s=0.5)}
        return Agent(
            self.engine,  # type: ignore[arg-type]
            self.registry,
            self.proxy,
            lambda: (namespaces, [CONFIG]),
            agent_id="host-1",
            interval=interval,
            check_interval=0.1,
            on_event=lambda level, message: self.events.append((level, message)),
        )


@pytest.fixture
def host(tmp_dir: Path) -> Iterator[Host]:
    h = Host(
        StaticEngine(),
        SqliteRegistry(tmp_dir / "registry.sqlite"),
        HAProxyProcess(tmp_dir / "haproxy"),
        free_port(),
        tmp_dir,
        [],
    )
    yield h
    h.proxy.stop()
    h.registry.close()


def seen(port: int, n: int = 12) -> set[str]:
    return {get(port)[1] for _ in range(n)}


def run_until(agent: Agent, predicate: object, timeout: float = 10.0) -> bool:
    def step() -> bool:
        agent.run_once()
        return bool(predicate())  # type: ignore[operator]

    return wait_for(step, timeout=timeout, interval=0.05)


def test_registration_follows_health(host: Host) -> None:
    agent = host.agent()
    with backends("a", "b") as (a, b):
        host.engine.tasks = [task_for(a), task_for(b)]
        assert run_until(agent, lambda: len(host.registry.backends()) == 2)
        assert seen(host.port) == {"a", "b"}
        b.healthy = False
        assert run_until(agent, lambda: len(host.registry.backends()) == 1)
        assert [x.task_id for x in host.registry.backends()] == ["task-a"]
        assert seen(host.port) == {"a"}
        b.healthy = True
        assert run_until(agent, lambda: len(host.registry.backends()) == 2)
        host.engine.tasks = [task_for(b)]  # task a is gone from the engine
        agent.run_once()
        assert [x.task_id for x in host.registry.backends()] == ["task-b"]
        assert seen(host.port) == {"b"}
        assert host.proxy.reloads == 0


def test_agent_restart_keeps_traffic_flowing(host: Host) -> None:
    with backends("a", "b") as (a, b):
        host.engine.tasks = [task_for(a), task_for(b)]
        first = host.agent()
        assert run_until(first, lambda: len(host.registry.backends()) == 2)
        worker = host.proxy.worker_pid()
        with Load(host.port) as load:
            stop = threading.Event()
            thread = threading.Thread(target=first.run_forever, args=(stop,), daemon=True)
            thread.start()
            wait_for(lambda: load.ok > 50)
            stop.set()
            thread.join(timeout=15)
            assert not thread.is_alive(), "the agent did not stop within 15 s"
            wait_for(lambda: load.ok > 150)  # no agent at all for a while
            host.proxy = HAProxyProcess(host.dir / "haproxy")  # a new agent process
            second = host.agent()
            for _ in range(5):
                assert second.run_once().errors == []
            wait_for(lambda: load.ok > 250)
        assert load.failures == []
        assert set(load.seen) == {"a", "b"}
        assert host.proxy.worker_pid() == worker  # adopted, not restarted or reloaded


def test_drain_by_acknowledgement(host: Host) -> None:
    agent = host.agent()
    drainer = RegistryDrainer(host.registry)
    with backends("a", "b") as (a, b):
        ta, tb = task_for(a), task_for(b)
        host.engine.tasks = [ta, tb]
        assert run_until(agent, lambda: len(host.registry.backends()) == 2)
        drainer.start(ta, CONFIG)  # type: ignore[arg-type]
        status = drainer.status(ta, CONFIG, now=0.0)  # type: ignore[arg-type]
        assert not status.done and "host-1" in status.waiting_on
        agent.run_once()
        assert drainer.status(ta, CONFIG, now=0.0).done  # type: ignore[arg-type]
        assert seen(host.port) == {"b"}
        states = {s.addr: s.state for s in host.proxy.stats()}
        assert states[f"127.0.0.1:{a.port}"] == "drain"
        host.engine.tasks = [tb]  # the reconciler stopped it
        drainer.forget(ta)  # type: ignore[arg-type]
        agent.run_once()
        assert [x.task_id for x in host.registry.backends()] == ["task-b"]
        assert host.registry.drain_marks() == ()


def answers(port: int) -> bool:
    try:
        return get(port, timeout=0.5)[0] == 200
    except OSError:
        return False


@pytest.mark.parametrize("victim", ["worker", "master", "both"])
def test_a_killed_haproxy_is_restarted_within_two_seconds(host: Host, victim: str) -> None:
    """kill -9 of HAProxy's worker, master or both: the agent notices on its next pass and the
    port answers again within 2 s, with the server state kept and an event saying so."""
    with backends("a", "b") as (a, b):
        host.engine.tasks = [task_for(a), task_for(b)]
        agent = host.agent(interval=0.3)  # the agent's default cadence
        assert run_until(agent, lambda: len(host.registry.backends()) == 2)
        assert seen(host.port) == {"a", "b"}
        master, worker = host.proxy.master_pid(), host.proxy.worker_pid()
        assert master is not None and worker is not None
        stop = threading.Event()
        thread = threading.Thread(target=agent.run_forever, args=(stop,), daemon=True)
        thread.start()
        try:
            pids = {"worker": [worker], "master": [master], "both": [master, worker]}[victim]
            for pid in pids:
                os.kill(pid, signal.SIGKILL)
            killed = time.monotonic()
            assert wait_for(lambda: not answers(host.port), timeout=2, interval=0.01)
            assert wait_for(lambda: answers(host.port), timeout=2, interval=0.02)
            back = time.monotonic() - killed
        finally:
            stop.set()
            thread.join(timeout=10)
        assert back < 2.0
        assert seen(host.port) == {"a", "b"}
        assert host.proxy.master_pid() not in (None, master)
        assert host.proxy.restarts == 1
        assert [level for level, _ in host.events] == ["warning"]
        assert "restarted" in host.events[0][1]


def test_a_second_paasport_agent_on_the_same_ports_refuses(tmp_dir: Path) -> None:
    """Two `paasport agent` with their own state dirs on one host: the second says who serves
    the port and exits 1, never starting a second HAProxy; the first proxy keeps its port."""
    import subprocess
    import sys
    import uuid

    port = free_proxy_port()
    soa = tmp_dir / "soa"
    (soa / "web").mkdir(parents=True)
    (soa / "web" / "service.yaml").write_text("description: lock test\n")
    (soa / "web" / "smartstack.yaml").write_text(f"main:\n  proxy_port: {port}\n")
    cluster = f"lock-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAASPORT_")}
    paasport = str(Path(sys.executable).parent / "paasport")

    def agent(name: str, *args: str) -> subprocess.CompletedProcess[str]:
        cfg = tmp_dir / f"{name}.yaml"
        cfg.write_text(
            f"local_cluster: {cluster}\nclusters:\n  {cluster}:\n    engine: docker\n"
            f"soa_dir: {soa}\nstate_dir: {tmp_dir / name}\n"
        )
        argv = [paasport, "agent", "--config", str(cfg), *args]
        return subprocess.run(argv, capture_output=True, text=True, timeout=15, env=env)

    first = HAProxyProcess(tmp_dir / "first" / "haproxy")
    try:
        assert agent("first", "--once").returncode == 0, "the first agent starts HAProxy"
        master = first.master_pid()
        assert master is not None and answers(port) is False  # listening, no backend: 503
        assert first.stats()[0].proxy == "web.main"
        second = agent("second")  # not --once: it would run forever if it did not refuse
        assert second.returncode == 1
        lines = second.stderr.strip().splitlines()
        assert len(lines) == 1 and "Traceback" not in second.stderr
        assert f"HAProxy pid {master} of {tmp_dir / 'first' / 'haproxy'}" in lines[0]
        assert not (tmp_dir / "second" / "haproxy" / "haproxy.pid").exists()
        assert first.master_pid() == master and first.running()
    finally:
        first.stop()
        HAProxyProcess(tmp_dir / "second" / "haproxy").stop()


def test_a_wedged_worker_is_restarted_after_two_silent_probes(host: Host) -> None:
    """SIGSTOP of the worker (master alive, socket silent): one slow probe is forgiven, two in
    a row restart HAProxy; the stopped worker cannot keep the port (noreuseport)."""
    with backends("a") as (a,):
        host.engine.tasks = [task_for(a)]
        agent = host.agent(interval=0.3)
        assert run_until(agent, lambda: len(host.registry.backends()) == 1)
        worker = host.proxy.worker_pid()
        assert worker is not None
        os.kill(worker, signal.SIGSTOP)
        try:
            first = agent.run_once()
            assert first.restarted == "" and host.proxy.restarts == 0  # forgiven once
            second = agent.run_once()
            assert "worker does not answer" in second.restarted
            assert answers(host.port)
            assert host.proxy.worker_pid() not in (None, worker)
        finally:
            with contextlib.suppress(ProcessLookupError):  # killed by the restart, normally
                os.kill(worker, signal.SIGCONT)
        assert [level for level, _ in host.events] == ["warning"]


def test_backends_up_counts_through_the_real_proxy_and_says_when_it_is_dead(
    tmp_dir: Path,
) -> None:
    """The monitor's BackendsUp against this host's real HAProxy and registry: the count while
    it serves, why it does not answer once killed (replication CRIT), one registry client."""
    from paasport.config.system import SystemConfig
    from paasport.discovery.wiring import BackendsUp, haproxy_dir, registry_file
    from paasport.types import AppVersion

    system = SystemConfig(soa_dir=tmp_dir / "soa", state_dir=tmp_dir / "state")
    host = Host(
        StaticEngine(),
        SqliteRegistry(registry_file(system)),
        HAProxyProcess(haproxy_dir(system)),
        free_port(),
        tmp_dir,
        [],
    )
    up = BackendsUp(system, max_age=0.0)
    try:
        with backends("a", "b") as (a, b):
            tasks = (task_for(a), task_for(b))
            host.engine.tasks = list(tasks)
            assert run_until(host.agent(), lambda: len(host.registry.backends()) == 2)
            versions = [AppVersion("web", "main", "local", "h", "sha", "img", tasks)]  # type: ignore[arg-type]
            assert up(CONFIG, versions) == 2
            client = up._registry
            master = host.proxy.master_pid()
            assert master is not None
            os.kill(master, signal.SIGKILL)
            assert wait_for(lambda: isinstance(up(CONFIG, versions), str), timeout=5)
            answer = up(CONFIG, versions)
            assert isinstance(answer, str) and "HAProxy does not answer" in answer
            assert up._registry is client
    finally:
        up.close()
        host.proxy.stop()
        host.registry.close()


def test_a_dead_master_is_restarted_without_waiting_for_the_next_pass(host: Host) -> None:
    """Between passes the agent watches the master's pid: with passes 10 s apart a kill -9 is
    still answered within 2 s."""
    with backends("a") as (a,):
        host.engine.tasks = [task_for(a)]
        agent = host.agent(interval=10.0)
        assert run_until(agent, lambda: len(host.registry.backends()) == 1)
        stop = threading.Event()
        thread = threading.Thread(target=agent.run_forever, args=(stop,), daemon=True)
        thread.start()
        try:
            time.sleep(0.5)  # the first pass of run_forever is over: the next is 10 s away
            master = host.proxy.master_pid()
            assert master is not None
            os.kill(master, signal.SIGKILL)
            killed = time.monotonic()
            # the orphaned worker may answer for a moment after its master died: wait for the
            # restart itself, then for the port
            assert wait_for(
                lambda: host.proxy.restarts == 1 and answers(host.port), timeout=2, interval=0.02
            )
            assert time.monotonic() - killed < 2.0
        finally:
            stop.set()
            thread.join(timeout=10)
        assert host.proxy.restarts == 1
