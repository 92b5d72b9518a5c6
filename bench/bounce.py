"""Bounce speed: mark-for-deployment -> all N new tasks healthy, next to raw Docker.

For N in (3, 10): a service runs N busybox httpd tasks under deployd (real Docker engine, real git
repo, real deploy tags); the clock starts when mark-for-deployment is called for a new commit and
stops when paasport's own health monitor reports all N tasks of the new version healthy. The
baseline starts N containers of the same image straight through the Docker SDK (in parallel) and
polls the same HTTP check every 50 ms until all pass. Prints both and their ratio (target <= 1.2).

    .venv/bin/python bench/bounce.py [N ...] [--repeat R]
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

from paasport.engine.docker import DockerEngine
from paasport.monitoring.events import EventLog
from paasport.reconcile.deployd import DeploydSettings
from paasport.reconcile.reconciler import ReconcilerSettings

from conftest import build_busybox_image
from harness import (
    DeploydThread,
    answers,
    cluster_system,
    commit_version,
    mark,
    new_repo,
    remove_cluster,
    tag_image,
    write_service,
)


def commit(repo: Path, n: int, image: str) -> str:
    sha = commit_version(repo, n)
    tag_image(image, "bench", sha)
    return sha


def paasport_bounce(n: int, image: str, root: Path) -> tuple[float, float]:
    """Seconds to all N new tasks healthy, and to the bounce finished (old tasks gone)."""
    cluster = f"bench-{uuid.uuid4().hex[:8]}"
    repo = new_repo(root / "repo")
    first = commit(repo, 1, image)
    soa = write_service(root / "soa", "bench", f"git_url: {repo}\n", [f"{cluster}.main"])
    (soa / f"instances-{cluster}.yaml").write_text(
        f"main:\n  instances: {n}\n  cpus: 0.05\n  mem: 32\n  cmd: httpd -f -p 8888 -h /www\n"
        "  healthcheck_mode: http\n  healthcheck_grace_period_seconds: 30\n"
        "  healthcheck_interval_seconds: 1\n  healthcheck_timeout_seconds: 1\n"
        "  drain_method: noop\n"
    )
    system = cluster_system(cluster, root / "soa", root / "state")
    mark(system, repo, f"{cluster}.main", first, now=time.time())
    engine = DockerEngine(cluster)
    events = EventLog(root / "state" / "events.sqlite")
    runner = DeploydThread(
        system,
        engine,
        events,
        DeploydSettings(reconciler=ReconcilerSettings(stop_grace_seconds=1)),
        startup_interval_seconds=0.05,  # as `paasport up`
    ).start()
    health = runner.health
    try:

        def healthy_of(sha: str) -> int:
            versions = health.with_health(engine.list_app_versions("bench", "main"))
            return sum(
                1
                for av in versions
                if av.git_sha == sha
                for t in av.tasks
                if t.health == "healthy" and t.state == "running"
            )

        def only(sha: str) -> bool:
            return {av.git_sha for av in engine.list_app_versions("bench", "main")} == {sha}

        deadline = time.monotonic() + 120
        while (healthy_of(first) < n or not only(first)) and time.monotonic() < deadline:
            time.sleep(0.05)
        second = commit(repo, 2, image)
        t0 = time.monotonic()
        mark(system, repo, f"{cluster}.main", second, now=time.time() + 1)
        while healthy_of(second) < n:
            if time.monotonic() - t0 > 120:
                raise SystemExit(f"N={n}: the bounce did not finish in 120 s")
            time.sleep(0.02)
        t_healthy = time.monotonic() - t0
        while not only(second) and time.monotonic() - t0 < 120:
            time.sleep(0.02)
        return t_healthy, time.monotonic() - t0
    finally:
        runner.stop()
        events.close()
        remove_cluster(cluster)
        engine.close()


def raw_docker(n: int, image: str) -> float:
    """Seconds for the Docker SDK to start N containers and see all pass the HTTP check."""
    import docker

    client = docker.from_env()
    label = f"bench-raw-{uuid.uuid4().hex[:8]}"
    t0 = time.monotonic()

    def start(i: int) -> int:
        c = client.containers.run(
            image,
            ["httpd", "-f", "-p", "8888", "-h", "/www"],
            detach=True,
            name=f"{label}-{i}",
            labels={"paasport.cluster": label},
            ports={"8888/tcp": ("127.0.0.1", None)},
            nano_cpus=50_000_000,
            mem_limit="32m",
            init=True,  # as the engine runs every task
        )
        c.reload()
        return int(c.ports["8888/tcp"][0]["HostPort"])

    try:
        with ThreadPoolExecutor(max_workers=8) as pool:
            ports = list(pool.map(start, range(n)))
        pending = set(ports)
        while pending:
            pending = {p for p in pending if not answers(p)}
            if pending:
                time.sleep(0.05)
        return time.monotonic() - t0
    finally:
        remove_cluster(label)
        client.close()


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("sizes", nargs="*", type=int, default=[3, 10], help="N tasks (3 10)")
    parser.add_argument(
        "--repeat", type=int, default=3, help="runs per N; medians are printed (default 3)"
    )
    args = parser.parse_args()
    image = build_busybox_image()
    print(
        f"{'N':>3}  {'paasport: mark -> N healthy':>28}  {'old gone':>9}  "
        f"{'raw docker':>10}  {'ratio':>6}   (medians of {args.repeat} runs; min in brackets)"
    )
    for n in args.sizes:
        runs: list[tuple[float, float]] = []
        raws: list[float] = []
        for _ in range(args.repeat):  # alternate, so both see the same machine
            with tempfile.TemporaryDirectory(prefix="paasport-bench-") as tmp:
                runs.append(paasport_bounce(n, image, Path(tmp)))
            raws.append(raw_docker(n, image))
        healthy = statistics.median(r[0] for r in runs)
        done = statistics.median(r[1] for r in runs)
        raw = statistics.median(raws)
        print(
            f"{n:>3}  {healthy:>20.2f}s [{min(r[0] for r in runs):.2f}]  {done:>8.2f}s  "
            f"{raw:>4.2f}s [{min(raws):.2f}]  {healthy / raw:>6.2f}"
        )


if __name__ == "__main__":
    main()
