"""Benchmark: the pure per-instance work of one reconcile pass (desired_app, plan, bounce_status)
and one HealthMonitor.update over running tasks with no check configured (no I/O).

Usage: ``.venv/bin/python bench/bounce_plan.py [INSTANCES]`` (default 100). Each instance is
mid-crossover (old version of 5 healthy tasks, new version of 5 tasks, 2 healthy). Prints the
time per instance and per pass; the reconcile no-op target (100 instances < 0.5 s) leaves this
pure part a few milliseconds at most.
"""

from __future__ import annotations

import statistics
import time

from paasport.bounce.desired import desired_app
from paasport.bounce.plan import bounce_status, plan
from paasport.engine.health import HealthMonitor
from paasport.types import AppVersion, DeploymentState, InstanceConfig, Task

from count_arg import count_arg

REGISTRY = "127.0.0.1:5000"


def build(n: int) -> list[tuple[InstanceConfig, DeploymentState, list[AppVersion]]]:
    world = []
    for i in range(n):
        config = InstanceConfig(
            service=f"svc{i}",
            cluster="local",
            instance="main",
            deploy_group="local.main",
            instances=5,
            env={"INDEX": str(i)},
        )
        deployment = DeploymentState(
            docker_image=f"services-svc{i}:paasta-{i:040x}", git_sha=f"{i:040x}"
        )
        new_hash = desired_app(config, deployment, REGISTRY).config_hash

        def tasks(h: str, healthy: int, i: int = i) -> tuple[Task, ...]:
            return tuple(
                Task(
                    task_id=f"{h}-{i}-{k}",
                    service=f"svc{i}",
                    instance="main",
                    cluster="local",
                    config_hash=h,
                    git_sha="abc",
                    state="running",
                    health="healthy" if k < healthy else "unknown",
                    started_at=float(k),
                )
                for k in range(5)
            )

        versions = [
            AppVersion(f"svc{i}", "main", "local", "old", "abc", "img", tasks=tasks("old", 5)),
            AppVersion(
                f"svc{i}", "main", "local", new_hash, "abc", "img", tasks=tasks(new_hash, 2)
            ),
        ]
        world.append((config, deployment, versions))
    return world


def one_pass(world: list[tuple[InstanceConfig, DeploymentState, list[AppVersion]]]) -> int:
    actions = 0
    for config, deployment, versions in world:
        spec = desired_app(config, deployment, REGISTRY)
        actions += len(plan(spec, versions, "crossover", 1.0, now=0.0))
        bounce_status(spec, versions, "crossover", 1.0)
    return actions


def main() -> None:
    n = count_arg(__doc__, "instances", 100, "instances mid-crossover")
    world = build(n)
    timings = []
    for _ in range(20):
        start = time.perf_counter()
        actions = one_pass(world)
        timings.append(time.perf_counter() - start)
    median = statistics.median(timings)
    print(f"instances: {n}, actions per pass: {actions}")
    print(
        f"desired_app + plan + bounce_status: {median * 1000:.2f} ms per pass "
        f"({median / n * 1e6:.1f} us per instance, median of {len(timings)})"
    )

    monitor = HealthMonitor()
    tasks = [t for _, _, versions in world for v in versions for t in v.tasks]
    updates = []
    for _ in range(20):
        start = time.perf_counter()
        monitor.update(tasks, complete=True)
        monitor.with_health(v for _, _, versions in world for v in versions)
        updates.append(time.perf_counter() - start)
    print(
        f"HealthMonitor.update + with_health, {len(tasks)} tasks without a check: "
        f"{statistics.median(updates) * 1000:.2f} ms (median)"
    )


if __name__ == "__main__":
    main()
