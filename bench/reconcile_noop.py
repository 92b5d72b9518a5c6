"""Reconcile pass with nothing to change: wall time and Docker API calls over N instances.

A service with N one-task instances (busybox, no health check) runs under deployd on the real
Docker engine (real git repo, real deploy tag) until all N tasks run; deployd's threads are then
stopped and one full pass (one engine list, then every instance's reconcile step) is timed by
hand, ``--passes`` times, while every HTTP request to the Docker engine is counted through the
SDK's requests hook. Targets: under 0.5 s per pass and O(1) list calls (not one per instance).

    .venv/bin/python bench/reconcile_noop.py [N] [--passes K]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from collections import Counter
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

from paasport.engine.docker import DockerEngine
from paasport.monitoring.events import EventLog
from paasport.reconcile.deployd import DeploydSettings

from conftest import build_busybox_image
from harness import (
    DeploydThread,
    cluster_system,
    commit_version,
    mark,
    new_repo,
    remove_cluster,
    tag_image,
    write_service,
)

SERVICE = "noopbench"


def write_tree(root: Path, cluster: str, repo: Path, n: int) -> Path:
    soa = root / "soa"
    svc = write_service(soa, SERVICE, f"git_url: {repo}\n", [f"{cluster}.all"])
    lines = [
        "_base: &base",
        "  instances: 1",
        "  cpus: 0.01",
        "  mem: 32",
        "  cmd: exec sleep 100000",
        f"  deploy_group: {cluster}.all",
        "  drain_method: noop",
    ]
    lines += [f"i{i:03d}:\n  <<: *base" for i in range(n)]
    (svc / f"instances-{cluster}.yaml").write_text("\n".join(lines) + "\n")
    return soa


def running_tasks(engine: DockerEngine) -> int:
    return sum(
        1 for av in engine.list_app_versions(SERVICE) for t in av.tasks if t.state == "running"
    )


def bench(n: int, passes: int, image: str, root: Path) -> None:
    cluster = f"bench-{uuid.uuid4().hex[:8]}"
    repo = new_repo(root / "repo")
    sha = commit_version(repo, 1)
    tag_image(image, SERVICE, sha)
    soa = write_tree(root, cluster, repo, n)
    system = cluster_system(cluster, soa, root / "state")
    mark(system, repo, f"{cluster}.all", sha, now=time.time())

    engine = DockerEngine(cluster)
    events = EventLog(root / "state" / "events.sqlite")
    runner = DeploydThread(system, engine, events, DeploydSettings(workers=4))
    deployd = runner.deployd
    try:
        started = time.monotonic()
        runner.start()
        while running_tasks(engine) < n:
            if time.monotonic() - started > 600:
                raise SystemExit(f"only {running_tasks(engine)} of {n} tasks ran after 600 s")
            time.sleep(0.5)
        converge = time.monotonic() - started
        time.sleep(1.0)  # let the last steps and health sweeps settle
        runner.stop()

        calls: Counter[str] = Counter()

        def count(response: Any, *args: Any, **kwargs: Any) -> None:
            path = response.request.path_url.split("?")[0]
            kind = (
                "list"
                if path.endswith("/containers/json")
                else (f"{response.request.method} {path.rsplit('/', 1)[-1]}")
            )
            calls[kind] += 1

        before = {t.task_id for av in engine.list_app_versions() for t in av.tasks}
        engine.api.hooks["response"].append(count)
        list_times = []
        for _ in range(passes):
            t0 = time.perf_counter()
            engine.list_app_versions()
            list_times.append(time.perf_counter() - t0)
        list_calls = calls["list"]
        calls.clear()

        times = []
        for _ in range(passes):
            t0 = time.perf_counter()
            queued = deployd.full_pass()
            deployd.drain_queue()
            times.append(time.perf_counter() - t0)
        engine.api.hooks["response"].remove(count)
        after = {t.task_id for av in engine.list_app_versions() for t in av.tasks}

        changed = "none" if before == after else f"{len(before ^ after)} task(s) changed!"
        per_pass = {k: v / passes for k, v in sorted(calls.items())}
        print(f"instances: {n} ({queued} queued per pass), converged from zero in {converge:.1f} s")
        print(
            f"engine.list_app_versions() alone: median {statistics.median(list_times) * 1000:.1f}"
            f" ms, {list_calls / passes:.0f} Docker call(s)"
        )
        print(
            f"noop reconcile pass ({passes} passes): median {statistics.median(times):.3f} s, "
            f"min {min(times):.3f} s, max {max(times):.3f} s (target < 0.5 s)"
        )
        print(
            f"Docker API calls per pass: {sum(calls.values()) / passes:.0f} {per_pass} "
            f"(target O(1) list calls)"
        )
        print(f"tasks changed by the passes: {changed}")
    finally:
        runner.stop()
        events.close()
        remove_cluster(cluster)
        engine.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("instances", type=int, nargs="?", default=100)
    parser.add_argument("--passes", type=int, default=5)
    args = parser.parse_args()
    image = build_busybox_image()
    with tempfile.TemporaryDirectory(prefix="paasport-bench-") as tmp:
        bench(args.instances, args.passes, image, Path(tmp))


if __name__ == "__main__":
    main()
