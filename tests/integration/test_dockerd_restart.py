"""A dockerd restart (SIGTERM or SIGKILL, ~6 s down) under load loses no request (issue 9).

A private dockerd with --live-restore (tests/integration/private_dockerd.py; the shared daemon
is never restarted) runs a 3-task service through deployd, the discovery agent (SQLite
registry) and a real HAProxy. Requests go to 127.0.0.1:<proxy_port> the whole time.
"""

from __future__ import annotations

import http.client
import json
import signal
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from paasport.discovery.agent import Agent
from paasport.discovery.drain import RegistryDrainer
from paasport.discovery.haproxy import HAProxyProcess
from paasport.discovery.sqlite_registry import SqliteRegistry
from paasport.engine.docker import DockerEngine
from paasport.monitoring.events import EventLog
from paasport.reconcile.store import DesiredStore

from discovery_support import free_proxy_port
from harness import (
    DeploydThread,
    cluster_system,
    deployments_json,
    fast_settings,
    replace_file,
    write_service,
)
from private_dockerd import PrivateDockerd

DOWN_SECONDS = 6.0


def wait_until(what: str, cond: Callable[[], bool], timeout: float = 45.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():
            return
        time.sleep(0.1)
    raise AssertionError(f"timed out after {timeout:g}s waiting for {what}")


@dataclass
class Load:
    """One client sending GET / to 127.0.0.1:port, a new connection per request, until stopped."""

    port: int
    ok: int = 0
    failed: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)

    def run(self) -> None:
        while not self.stop.is_set():
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=3)
            try:
                conn.request("GET", "/")
                status = conn.getresponse().status
                if status == 200:
                    self.ok += 1
                else:
                    self.failed.append(f"HTTP {status} at {time.monotonic():.2f}")
            except (OSError, http.client.HTTPException) as err:
                self.failed.append(f"{err!r} at {time.monotonic():.2f}")
            finally:
                conn.close()
            time.sleep(0.005)


class World:
    """deployd + agent + HAProxy on a private dockerd; ``close`` stops all of it (bounded)."""

    def __init__(self, root: Path, daemon: PrivateDockerd, image: str) -> None:
        self.cluster = f"test-{uuid.uuid4().hex[:8]}"
        self.daemon = daemon
        self.port = free_proxy_port()
        self.soa, self.state = root / "soa", root / "state"
        self.state.mkdir(parents=True)
        self.engine = DockerEngine(self.cluster, base_url=daemon.url)
        svc = write_service(self.soa, "web", "description: t\n", [f"{self.cluster}.main"])
        (svc / "smartstack.yaml").write_text(
            json.dumps({"main": {"proxy_port": self.port, "timeout_connect_ms": 500}})
        )
        main = {
            "instances": 3,
            "cpus": 0.1,
            "mem": 32,
            "cmd": "httpd -f -p 8888 -h /www",
            "healthcheck_mode": "http",
            "healthcheck_uri": "/status",
            "healthcheck_interval_seconds": 0.5,
            "healthcheck_timeout_seconds": 1,
            "backoff_seconds": 0.5,
        }
        replace_file(svc / f"instances-{self.cluster}.yaml", json.dumps({"main": main}))
        (svc / "deployments.json").write_text(deployments_json(self.cluster, image))
        self.events = EventLog(self.state / "events.sqlite")
        self.proxy = HAProxyProcess(self.state / "haproxy")
        system = cluster_system(self.cluster, self.soa, self.state)
        self.deployd = DeploydThread(
            system,
            self.engine,
            self.events,
            fast_settings(stop_grace_seconds=2.0, recheck_seconds=0.2),
            drainer=RegistryDrainer(SqliteRegistry(self.state / "registry.sqlite")),
            startup_interval_seconds=0.1,
        )
        self.agent = Agent(
            self.engine,
            SqliteRegistry(self.state / "registry.sqlite"),
            self.proxy,
            DesiredStore(self.soa, self.cluster, system=system).agent_view,
            agent_id="test-host",
            interval=0.2,
            check_interval=0.2,
        )
        self.stop = threading.Event()
        self.agent_thread = threading.Thread(
            target=self.agent.run_forever, args=(self.stop,), daemon=True
        )

    def start(self) -> None:
        self.deployd.start()
        self.agent_thread.start()

    def running(self) -> dict[str, str]:
        """task id -> host:port of the running tasks, as the engine lists them."""
        return {
            t.task_id: f"{t.host}:{t.port}"
            for av in self.engine.list_app_versions("web", "main")
            for t in av.tasks
            if t.state == "running"
        }

    def up_servers(self) -> set[str]:
        try:
            return {s.addr for s in self.proxy.stats() if s.proxy == "web.main" and s.state == "up"}
        except Exception:  # the proxy is not there yet
            return set()

    def converged(self) -> bool:
        try:
            running = self.running()
        except Exception:  # the daemon is not back yet
            return False
        return len(running) == 3 and self.up_servers() == set(running.values())

    def close(self) -> None:
        self.stop.set()
        self.deployd.stop()
        self.agent_thread.join(timeout=30)
        self.proxy.stop()
        self.engine.close()


def private_daemon(image: str, live_restore: bool) -> Iterator[PrivateDockerd]:
    d = PrivateDockerd(live_restore=live_restore)
    try:
        d.start()
        d.load_image(image)
        yield d
    finally:
        d.close()


@pytest.fixture
def daemon(busybox_image: str) -> Iterator[PrivateDockerd]:
    yield from private_daemon(busybox_image, live_restore=True)


@pytest.fixture
def daemon_without_live_restore(busybox_image: str) -> Iterator[PrivateDockerd]:
    yield from private_daemon(busybox_image, live_restore=False)


@pytest.mark.timeout(120)
@pytest.mark.parametrize("sig", [signal.SIGTERM, signal.SIGKILL], ids=["TERM", "KILL"])
def test_dockerd_restart_loses_no_request(
    daemon: PrivateDockerd, busybox_image: str, tmp_dir: Path, sig: signal.Signals
) -> None:
    world = World(tmp_dir, daemon, busybox_image)
    load = Load(world.port)
    loader = threading.Thread(target=load.run, daemon=True)
    try:
        world.start()
        wait_until("3 healthy tasks behind the proxy", world.converged)
        before = world.running()
        loader.start()
        time.sleep(1.0)

        daemon.stop(sig)
        time.sleep(DOWN_SECONDS)
        during = load.ok
        daemon.start()
        wait_until("paasport to converge after the restart", world.converged)
        time.sleep(1.0)
        load.stop.set()
        loader.join(timeout=10)

        assert load.failed == [], f"{len(load.failed)} failed of {load.ok}: {load.failed[:5]}"
        assert during > 50, "the load did not run while dockerd was down"
        # routed to the containers' own addresses, not to docker-proxy on 127.0.0.1
        assert not any(addr.startswith("127.0.0.1:") for addr in before.values()), before
        assert world.running() == before, "live-restore kept every task, at the same address"
        crashes = world.events.query(service="web")
        assert [e for e in crashes if e.kind in ("crash", "oom")] == []
    finally:
        load.stop.set()
        if loader.ident is not None:
            loader.join(timeout=10)
        world.close()


@pytest.mark.timeout(120)
def test_tasks_a_daemon_without_live_restore_stopped_are_no_crashes(
    daemon_without_live_restore: PrivateDockerd, busybox_image: str, tmp_dir: Path
) -> None:
    """Someone else's dockerd (live-restore off) stops every task when it stops: paasport
    replaces them at once, records no crash (status, crash-loop check and backoff read
    those) and leaves no exited container behind."""
    daemon = daemon_without_live_restore
    world = World(tmp_dir, daemon, busybox_image)
    try:
        world.start()
        wait_until("3 healthy tasks behind the proxy", world.converged)
        before = set(world.running())

        daemon.stop(signal.SIGTERM)
        daemon.start()
        wait_until(
            "3 new tasks behind the proxy",
            lambda: world.converged() and not set(world.running()) & before,
        )

        events = world.events.query(service="web")
        assert [e.message for e in events if e.kind in ("crash", "oom")] == []
        listed = [t for av in world.engine.list_app_versions() for t in av.tasks]
        assert {t.state for t in listed} == {"running"}
        assert len(daemon.cli("ps", "-aq").stdout.split()) == 3
    finally:
        world.close()
