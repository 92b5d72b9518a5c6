"""kill -9 of HAProxy's worker, master or both under steady load through the proxy port: requests
failed and the time until the port answers again, with the discovery agent supervising it.

Real HAProxy and SQLite registry, the agent at its default cadence (0.3 s); the backends are two
tiny HTTP servers on 127.0.0.1 (no Docker needed). Usage: ``bench/haproxy_kill.py [RUNS]``.
"""

from __future__ import annotations

import http.client
import logging
import os
import signal
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

from paasport.discovery.agent import Agent
from paasport.discovery.haproxy import HAProxyProcess
from paasport.discovery.sqlite_registry import SqliteRegistry
from paasport.types import InstanceConfig, Namespace

from discovery_support import StaticEngine, backends, free_proxy_port, task_for

CONFIG = InstanceConfig("web", "local", "main", "local.main", registrations=("web.main",))


class SteadyLoad:
    """One request every ~2 ms on a new connection; records when each failure happened."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.ok = 0
        self.failed: list[float] = []
        self.last_ok = 0.0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        while not self._stop.is_set():
            conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=1.0)
            try:
                conn.request("GET", "/")
                resp = conn.getresponse()
                resp.read()
                if resp.status == 200:
                    self.ok += 1
                    self.last_ok = time.monotonic()
                else:
                    self.failed.append(time.monotonic())
            except (OSError, http.client.HTTPException):
                self.failed.append(time.monotonic())
            finally:
                conn.close()
            time.sleep(0.002)

    def __enter__(self) -> SteadyLoad:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join(timeout=10)


def one_run(root: Path, victim: str) -> tuple[int, int, float]:
    """(requests failed, requests ok, seconds from the kill until a request succeeds again)."""
    port = free_proxy_port()
    engine = StaticEngine()
    registry = SqliteRegistry(root / "registry.sqlite")
    proxy = HAProxyProcess(root / "haproxy")
    namespaces = {"web.main": Namespace("web", "main", port, healthcheck_timeout_s=0.5)}
    agent = Agent(
        engine,  # type: ignore[arg-type]
        registry,
        proxy,
        lambda: (namespaces, [CONFIG]),
        agent_id="bench",
        check_interval=0.1,
    )
    stop = threading.Event()
    try:
        with backends("a", "b") as (a, b):
            engine.tasks = [task_for(a), task_for(b)]
            deadline = time.monotonic() + 10
            while len(registry.backends()) < 2 and time.monotonic() < deadline:
                agent.run_once()
                time.sleep(0.05)
            thread = threading.Thread(target=agent.run_forever, args=(stop,), daemon=True)
            thread.start()
            with SteadyLoad(port) as load:
                time.sleep(1.0)
                master, worker = proxy.master_pid(), proxy.worker_pid()
                assert master is not None and worker is not None
                pids = {"worker": [worker], "master": [master], "both": [master, worker]}[victim]
                killed = time.monotonic()
                for pid in pids:
                    os.kill(pid, signal.SIGKILL)
                deadline = killed + 10
                while time.monotonic() < deadline and load.last_ok <= killed:
                    time.sleep(0.005)
                back = load.last_ok - killed if load.last_ok > killed else float("inf")
                time.sleep(1.0)  # steady again
            stop.set()
            thread.join(timeout=10)
            failed = [t for t in load.failed if t >= killed]
            return len(failed), load.ok, back
    finally:
        stop.set()
        proxy.stop()
        registry.close()


def main() -> None:
    logging.basicConfig(level=logging.ERROR)  # the agent's restart warnings: one per run
    runs = int(sys.argv[1]) if len(sys.argv) > 1 else 5
    print(f"kill -9 under steady load, agent every 0.3 s, {runs} runs each (median [max])")
    for victim in ("worker", "master", "both"):
        results = []
        for i in range(runs):
            with tempfile.TemporaryDirectory(prefix="paasport-bench-kill-") as tmp:
                results.append(one_run(Path(tmp) / f"run{i}", victim))
        failed = [r[0] for r in results]
        back = [r[2] for r in results]
        total = sum(r[0] + r[1] for r in results)
        print(
            f"  {victim:6}: requests failed {statistics.median(failed):.0f} [{max(failed)}]"
            f" of {total} in all runs; port answers again after"
            f" {statistics.median(back):.2f} s [{max(back):.2f} s]"
        )


if __name__ == "__main__":
    main()
