"""Bounce speed: mark-for-deployment -> all N new tasks healthy, next to raw Docker.

For N in (3, 10): a service runs N busybox httpd tasks under deployd (real Docker engine, real git
repo, real deploy tags); the clock starts when mark-for-deployment is called for a new commit and
stops when paasport's own health monitor reports all N tasks of the new version healthy. The
baseline starts N containers of the same image straight through the Docker SDK (in parallel) and
polls the same HTTP check every 50 ms until all pass. Prints both and their ratio (target <= 1.2).

    .venv/bin/python bench/bounce.py [N ...]
"""

from __future__ import annotations

import http.client
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

from paasport.config.system import ClusterConfig, SystemConfig
from paasport.deploy.git import GitRepo
from paasport.deploy.workflow import mark_for_deployment
from paasport.engine.docker import DockerEngine
from paasport.engine.health import HealthMonitor
from paasport.monitoring.events import EventLog
from paasport.reconcile.deployd import Deployd, DeploydSettings, DesiredStore
from paasport.reconcile.drain import NoopDrainer
from paasport.reconcile.reconciler import ReconcilerSettings
from paasport.reconcile.refresh import targets

from conftest import build_busybox_image


def answers(port: int | None) -> bool:
    if port is None:
        return False
    try:
        conn = http.client.HTTPConnection("127.0.0.1", port, timeout=0.5)
        conn.request("GET", "/status")
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except OSError:
        return False


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        [
            "git",
            "-C",
            str(repo),
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@localhost",
            *args,
        ],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.strip()


def commit(repo: Path, n: int, image: str) -> str:
    (repo / "version").write_text(f"{n}\n")
    git(repo, "add", "version")
    git(repo, "commit", "-q", "-m", f"version {n}")
    sha = git(repo, "rev-parse", "HEAD")
    subprocess.run(["docker", "tag", image, f"services-bench:paasta-{sha}"], check=True)
    return sha


def remove_cluster(cluster: str) -> None:
    ids = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=paasport.cluster={cluster}"],
        capture_output=True,
        text=True,
        check=False,
    ).stdout.split()
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, check=False)


def paasport_bounce(n: int, image: str, root: Path) -> tuple[float, float]:
    """Seconds to all N new tasks healthy, and to the bounce finished (old tasks gone)."""
    cluster = f"bench-{uuid.uuid4().hex[:8]}"
    repo = root / "repo"
    repo.mkdir()
    git(repo, "init", "-q", "-b", "main")
    first = commit(repo, 1, image)
    soa = root / "soa" / "bench"
    soa.mkdir(parents=True)
    (soa / "service.yaml").write_text(f"git_url: {repo}\n")
    (soa / "deploy.yaml").write_text(f"pipeline:\n  - step: {cluster}.main\n")
    (soa / f"instances-{cluster}.yaml").write_text(
        f"main:\n  instances: {n}\n  cpus: 0.05\n  mem: 32\n  cmd: httpd -f -p 8888 -h /www\n"
        "  healthcheck_mode: http\n  healthcheck_grace_period_seconds: 30\n"
        "  healthcheck_interval_seconds: 1\n  healthcheck_timeout_seconds: 1\n"
        "  drain_method: noop\n"
    )
    system = SystemConfig(
        clusters={cluster: ClusterConfig(cluster)},
        local_cluster=cluster,
        soa_dir=root / "soa",
        state_dir=root / "state",
    )
    (target,) = targets(root / "soa", system)
    with GitRepo(str(repo)) as git_repo:
        mark_for_deployment(target, git_repo, f"{cluster}.main", first, now=time.time())
    engine = DockerEngine(cluster)
    health = HealthMonitor(engine.exec_in_task, startup_interval_seconds=0.1)
    events = EventLog(root / "state" / "events.sqlite")
    deployd = Deployd(
        DesiredStore(root / "soa", cluster, None, system=system),
        engine,
        health,
        NoopDrainer(),
        events,
        DeploydSettings(reconciler=ReconcilerSettings(stop_grace_seconds=1)),
    )
    stop = threading.Event()
    thread = threading.Thread(target=deployd.run_forever, args=(stop,), daemon=True)
    thread.start()
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
        with GitRepo(str(repo)) as git_repo:
            mark_for_deployment(target, git_repo, f"{cluster}.main", second, now=time.time() + 1)
        while healthy_of(second) < n:
            if time.monotonic() - t0 > 120:
                raise SystemExit(f"N={n}: the bounce did not finish in 120 s")
            time.sleep(0.02)
        t_healthy = time.monotonic() - t0
        while not only(second) and time.monotonic() - t0 < 120:
            time.sleep(0.02)
        return t_healthy, time.monotonic() - t0
    finally:
        stop.set()
        thread.join(timeout=30)
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


def main(sizes: list[int]) -> None:
    image = build_busybox_image()
    print(
        f"{'N':>3}  {'paasport: mark -> N healthy':>28}  {'old gone':>9}  "
        f"{'raw docker':>10}  {'ratio':>6}"
    )
    for n in sizes:
        with tempfile.TemporaryDirectory(prefix="paasport-bench-") as tmp:
            healthy, done = paasport_bounce(n, image, Path(tmp))
        raw = raw_docker(n, image)
        print(f"{n:>3}  {healthy:>27.2f}s  {done:>8.2f}s  {raw:>9.2f}s  {healthy / raw:>6.2f}")


if __name__ == "__main__":
    main([int(a) for a in sys.argv[1:]] or [3, 10])
