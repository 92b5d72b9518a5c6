"""Discovery convergence: kill -9 one task's container 20 times under light load and measure
(1) how long HAProxy keeps treating the dead task as up (until its server leaves UP), and
(2) how long a replacement task waits, after it first passes its health check (probed by this
script every 10 ms), until HAProxy sends it a request. Prints p50/p99 of both (target p99 < 1 s).

    .venv/bin/python bench/convergence.py [KILLS]
"""

from __future__ import annotations

import http.client
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

from count_arg import count_arg

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

from discovery_world import World
from harness import answers


def load(port: int, stop: threading.Event) -> None:
    while not stop.is_set():
        try:
            conn = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            conn.request("GET", "/")
            conn.getresponse().read()
            conn.close()
        except (OSError, http.client.HTTPException):
            pass
        time.sleep(0.005)


def pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def main(kills: int) -> None:
    unroutable: list[float] = []
    routable: list[float] = []
    with tempfile.TemporaryDirectory(prefix="paasport-bench-") as tmp:
        world = World(Path(tmp), "crossover", "proxy")
        stop = threading.Event()
        try:
            world.start()
            world.wait("3 healthy tasks behind the proxy", world.converged)
            for _ in range(2):
                threading.Thread(target=load, args=(world.proxy_port, stop), daemon=True).start()
            for i in range(kills):
                tasks = [
                    t
                    for av in world.engine.list_app_versions("web", "main")
                    for t in av.tasks
                    if t.state == "running"
                ]
                victim = tasks[i % len(tasks)]
                known = {t.task_id for t in tasks}
                addr = f"{victim.host}:{victim.port}"
                t0 = time.monotonic()
                subprocess.run(
                    ["docker", "kill", "-s", "KILL", victim.task_id],
                    capture_output=True,
                    check=True,
                    timeout=30,
                )
                while addr in world.up_servers():
                    time.sleep(0.005)
                unroutable.append(time.monotonic() - t0)
                new_task = None
                deadline = time.monotonic() + 60
                while new_task is None and time.monotonic() < deadline:
                    for av in world.engine.list_app_versions("web", "main"):
                        for t in av.tasks:
                            if t.state == "running" and t.port and t.task_id not in known:
                                new_task = t
                    time.sleep(0.02)
                if new_task is None:
                    raise RuntimeError("no replacement task started")
                while not answers(new_task.port, timeout=0.3, host=new_task.host):
                    time.sleep(0.01)
                passed = time.monotonic()
                new_addr = f"{new_task.host}:{new_task.port}"
                while not any(s.addr == new_addr and s.stot > 0 for s in world.stats()):
                    time.sleep(0.005)
                routable.append(max(0.0, time.monotonic() - passed))
                world.wait("convergence", world.converged)
                world.restart_deployd()  # reset crash backoff: every kill is a first crash
                print(
                    f"kill {i + 1:2}: unroutable after {unroutable[-1] * 1000:6.0f} ms, "
                    f"replacement got traffic {routable[-1] * 1000:6.0f} ms after passing"
                )
        finally:
            stop.set()
            world.close()
    for label, values in (
        ("kill -9 -> HAProxy stops routing to it", unroutable),
        ("health check passed -> receives traffic", routable),
    ):
        p50, p99 = pct(values, 0.5) * 1000, pct(values, 0.99) * 1000
        mean = statistics.mean(values) * 1000
        print(
            f"{label:42} p50 {p50:6.0f} ms   p99 {p99:6.0f} ms   mean {mean:6.0f} ms"
            f"   (n={len(values)})"
        )
    print("target: p99 < 1000 ms for both")


if __name__ == "__main__":
    main(count_arg(__doc__, "kills", 20, "kill -9 rounds"))
