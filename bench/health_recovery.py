"""Health recovery: remove /www/status in both tasks of an instance (as QA did), wait until the
proxy has taken them out, restore it, and time how long until HAProxy routes to both again.
The agent runs with `paasport up`'s defaults (pass 0.3 s, mesh checks 0.5 s). Prints p50/max of
the time to leave rotation and the time to come back, over ROUNDS rounds (target: a few seconds).

    .venv/bin/python bench/health_recovery.py [ROUNDS]
"""

from __future__ import annotations

import json
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

from paasport.discovery.agent import Agent
from paasport.discovery.sqlite_registry import SqliteRegistry
from paasport.monitoring.events import EventLog

from discovery_world import World
from harness import replace_file

OUTAGE_SECONDS = 5.0  # well under 30 failed task checks, so the reconciler replaces nothing


def instances_like_hello(world: World) -> None:
    """hello.main of the examples: 2 tasks, task checks every 2 s, grace 5 s."""
    main = {
        "instances": 2,
        "cpus": 0.1,
        "mem": 32,
        "cmd": "httpd -f -p 8888 -h /www",
        "env": {"GENERATION": str(world.generation)},
        "healthcheck_grace_period_seconds": 5,
        "healthcheck_interval_seconds": 2,
    }
    replace_file(world.soa / "web" / f"instances-{world.cluster}.yaml", json.dumps({"main": main}))


def running_ports(world: World) -> set[str]:
    return {
        f"{t.host}:{t.port}"
        for av in world.engine.list_app_versions("web", "main")
        for t in av.tasks
        if t.state == "running"
    }


def in_every_task(world: World, cmd: str) -> None:
    for av in world.engine.list_app_versions("web", "main"):
        for t in av.tasks:
            if t.state == "running":
                subprocess.run(
                    ["docker", "exec", t.task_id, "sh", "-c", cmd], check=True, timeout=30
                )


def main() -> None:
    rounds = count_arg(__doc__, "rounds", 5, "outage rounds")
    with tempfile.TemporaryDirectory(prefix="paasport-bench-") as tmp:
        world = World(Path(tmp), "crossover", "proxy")
        instances_like_hello(world)
        try:
            world.events = EventLog(world.state / "events.sqlite")
            world.drain_registry = SqliteRegistry(world.state / "registry.sqlite")
            world._start_deployd()
            world.agent = Agent(  # paasport up's defaults, unlike World.start's fast agent
                world.engine,
                SqliteRegistry(world.state / "registry.sqlite"),
                world.proxy,
                world.desired().agent_view,
                agent_id="bench-host",
            )
            thread = threading.Thread(target=world.agent.run_forever, args=(world.stop,))
            thread.start()
            world.threads.append(thread)
            world.wait("2 tasks up", lambda: len(world.up_servers()) == 2)
            out, back = [], []
            for _ in range(rounds):
                ports = running_ports(world)
                in_every_task(world, "mv /www/status /www/status.off")
                t0 = time.monotonic()
                world.wait("out of rotation", lambda: not world.up_servers())
                out.append(time.monotonic() - t0)
                time.sleep(OUTAGE_SECONDS)
                in_every_task(world, "mv /www/status.off /www/status")
                t0 = time.monotonic()
                world.wait("back in rotation", lambda p=ports: world.up_servers() == p, timeout=60)
                back.append(time.monotonic() - t0)
                time.sleep(1.0)
        finally:
            world.close()
    for name, xs in (("leave rotation", out), ("back in rotation", back)):
        print(
            f"{name:>17}: p50 {statistics.median(xs):.2f} s  max {max(xs):.2f} s  ({rounds} rounds)"
        )


if __name__ == "__main__":
    main()
