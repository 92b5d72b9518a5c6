"""A one-host paasport for the discovery benchmarks: deployd (real Docker) + the discovery agent
(SQLite registry, real HAProxy) + the registry-backed drainer, on a temporary soa-configs tree.

Used by bench/bounce_under_load.py and bench/convergence.py; everything it starts carries the
cluster label ``bench-<uuid8>`` and is removed by ``close``.
"""

from __future__ import annotations

import json
import sys
import threading
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

from paasport.config.system import SystemConfig
from paasport.discovery.agent import Agent
from paasport.discovery.drain import RegistryDrainer
from paasport.discovery.haproxy import HAProxyProcess
from paasport.discovery.haproxy_stats import ServerStat
from paasport.discovery.sqlite_registry import SqliteRegistry
from paasport.engine.docker import DockerEngine
from paasport.monitoring.events import EventLog
from paasport.reconcile.store import DesiredStore

from conftest import build_busybox_image
from discovery_support import free_proxy_port
from harness import (
    DeploydThread,
    cluster_system,
    deployments_json,
    fast_settings,
    remove_cluster,
    replace_file,
    write_service,
)


class World:
    def __init__(
        self, root: Path, bounce_method: str, drain_method: str, docker_host: str | None = None
    ) -> None:
        self.root = root
        self.cluster = f"bench-{uuid.uuid4().hex[:8]}"
        self.image = build_busybox_image()
        self.proxy_port = free_proxy_port()
        self.bounce_method = bounce_method
        self.drain_method = drain_method
        self.generation = 0
        self.soa = root / "soa"
        self.state = root / "state"
        self.state.mkdir(parents=True, exist_ok=True)
        self.engine = DockerEngine(self.cluster, docker_host)  # None: the shared local engine
        self.stop = threading.Event()
        self.threads: list[threading.Thread] = []
        self.deployd: DeploydThread | None = None
        self.proxy = HAProxyProcess(self.state / "haproxy")
        self.write_service()

    @property
    def system(self) -> SystemConfig:
        return cluster_system(self.cluster, self.soa, self.state)

    def write_service(self) -> None:
        svc = write_service(
            self.soa, "web", "description: bench service\n", [f"{self.cluster}.main"]
        )
        (svc / "smartstack.yaml").write_text(
            json.dumps(
                {
                    "main": {
                        "proxy_port": self.proxy_port,
                        "timeout_server_ms": 5000,
                        "timeout_connect_ms": 500,
                        "retries": 2,
                    }
                }
            )
        )
        self.write_instances()
        (svc / "deployments.json").write_text(deployments_json(self.cluster, self.image))

    def write_instances(self) -> None:
        main = {
            "instances": 3,
            "cpus": 0.2,
            "mem": 32,
            "cmd": "httpd -f -p 8888 -h /www",
            "env": {"GENERATION": str(self.generation)},
            "healthcheck_mode": "http",
            "healthcheck_uri": "/status",
            "healthcheck_grace_period_seconds": 30,
            "healthcheck_interval_seconds": 0.5,
            "healthcheck_timeout_seconds": 1,
            "bounce_method": self.bounce_method,
            "drain_method": self.drain_method,
            "drain_timeout_seconds": 30,
            "backoff_seconds": 0.5,
        }
        replace_file(
            self.soa / "web" / f"instances-{self.cluster}.yaml", json.dumps({"main": main})
        )

    def _start_deployd(self) -> None:
        self.deployd = DeploydThread(
            self.system,
            self.engine,
            self.events,
            fast_settings(stop_grace_seconds=2.0, recheck_seconds=0.2),
            drainer=RegistryDrainer(self.drain_registry),
            startup_interval_seconds=0.1,
        ).start()

    def restart_deployd(self) -> None:
        """A fresh deployd (its crash backoff memory starts from zero, as after a restart)."""
        if self.deployd is not None:
            self.deployd.stop()
        self._start_deployd()

    def desired(self) -> DesiredStore:
        """The agent's desired-state store (the platform's one policy), watching ``soa``."""
        store = DesiredStore(self.soa, self.cluster, system=self.system)
        store.start(self.stop)
        return store

    def start(self) -> None:
        self.events = EventLog(self.state / "events.sqlite")
        self.drain_registry = SqliteRegistry(self.state / "registry.sqlite")
        self._start_deployd()
        self.agent = Agent(
            self.engine,
            SqliteRegistry(self.state / "registry.sqlite"),
            self.proxy,
            self.desired().agent_view,
            agent_id="bench-host",
            interval=0.2,
            check_interval=0.2,
        )
        t = threading.Thread(target=self.agent.run_forever, args=(self.stop,), daemon=True)
        t.start()
        self.threads.append(t)

    def stats(self) -> list[ServerStat]:
        try:
            return [s for s in self.proxy.stats() if s.proxy == "web.main"]
        except Exception:
            return []

    def up_servers(self) -> set[str]:
        return {s.addr for s in self.stats() if s.state == "up"}

    def live_hashes(self) -> dict[str, int]:
        out: dict[str, int] = {}
        for av in self.engine.list_app_versions("web", "main"):
            n = sum(1 for t in av.tasks if t.state == "running")
            if n:
                out[av.config_hash] = n
        return out

    def wait(self, what: str, cond: object, timeout: float = 90.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():  # type: ignore[operator]
                return
            time.sleep(0.1)
        raise RuntimeError(f"timed out waiting for {what}")

    def converged(self) -> bool:
        hashes = self.live_hashes()
        if len(hashes) != 1 or next(iter(hashes.values())) != 3:
            return False
        ports = {
            f"{t.host}:{t.port}"
            for av in self.engine.list_app_versions("web", "main")
            for t in av.tasks
            if t.state == "running"
        }
        return self.up_servers() == ports

    def bounce(self) -> None:
        before = set(self.live_hashes())
        self.generation += 1
        self.write_instances()
        self.wait("the bounce", lambda: self.converged() and not (set(self.live_hashes()) & before))

    def close(self) -> None:
        self.stop.set()
        if self.deployd is not None:
            self.deployd.stop()
        for t in self.threads:
            t.join(timeout=30)
        self.proxy.stop()
        remove_cluster(self.cluster)
