"""Many hosts: paasport on the 3-host lab (scripts/lab.sh), next to the same work on one host.

Brings up its own lab (``--lab-id``, default 35; removed at the end), starts an agent on every
host and deployd on lab1 as tests/integration/test_multihost.py does, and measures:

1. Bounce speed: the clock starts when mark-for-deployment is called for a new commit and stops
   when all N tasks of the new version run and are UP in lab1's HAProxy (read on its admin
   socket every 50 ms), N in (6, 30), crossover, 0.05 cpus a task. Once on the 3-host Swarm
   cluster ``lab``, once on one host: cluster ``solo``, the docker engine on lab1's dockerd with
   its own agent, HAProxy and deployd. Medians of --repeat runs, and their ratio.
2. Failed requests during --bounces crossover bounces of a 6-task service across the hosts
   under ``wrk -t2 -c8`` run inside lab1 through its proxy port, with drain_method proxy and
   noop in the same run (target: 0 failed of >= 20,000 with proxy).
3. lab3's dockerd killed (--kills runs, a bounce between runs spreads the tasks over the 3
   hosts again): time until no server at lab3's address is routed by lab1's and lab2's HAProxy,
   and until 6 tasks run on lab1/lab2 and are UP in lab1's proxy again (p50, p99).

    .venv/bin/python bench/multihost.py [--repeat 3] [--bounces 10] [--kills 10]
"""

from __future__ import annotations

import argparse
import os
import signal
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

from paasport.discovery.haproxy import ProxyUnavailable, read_stats
from paasport.engine.base import Engine
from paasport.engine.docker import DockerEngine
from paasport.engine.swarm import SwarmEngine
from paasport.errors import PaasportError

from bounce_under_load import parse_wrk
from harness import new_repo
from lab import Lab, lab_from, lab_sh, stop_spawned
from lab_service import LabService, instances_yaml

POLL = 0.05
SOLO_PORT, LAB_PORT = 19302, 19301


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def pct(values: list[float], q: float) -> float:
    """The q-quantile (nearest rank) of ``values``."""
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))]


class Probe:
    """What the engine runs and what one host's HAProxy routes, read in-process (the engines'
    and HAProxy's sockets are unix sockets: reachable from outside the lab's namespaces)."""

    def __init__(self, engine: Engine, state_dirs: dict[str, Path], service: str) -> None:
        self.engine, self.service = engine, service
        self.sockets = {h: d / "haproxy" / "admin.sock" for h, d in state_dirs.items()}

    def routed(self, host: str) -> set[tuple[str, int]]:
        """(address, port) of every server ``host``'s proxy has UP for the service."""
        try:
            stats = read_stats(self.sockets[host])
        except ProxyUnavailable:
            return set()
        prefix = f"{self.service}."
        return {
            s.host_port
            for s in stats
            if s.proxy.startswith(prefix) and s.state == "up" and s.host_port
        }

    def in_proxy(self, host: str, address: str) -> bool:
        """Whether ``host``'s proxy still routes (up or drain) any server at ``address``."""
        try:
            stats = read_stats(self.sockets[host])
        except ProxyUnavailable:
            return True
        return any(
            s.proxy.startswith(f"{self.service}.")
            and s.state in ("up", "drain", "down")
            and s.host_port
            and s.host_port[0] == address
            for s in stats
        )

    def running(self, sha: str | None = None) -> list[tuple[str, int, str]]:
        """(address, port, node) of the running tasks (of ``sha``) of the service's main."""
        out = []
        for v in self.engine.list_app_versions(self.service, "main"):
            for t in v.tasks:
                if t.state == "running" and t.port and (sha is None or t.git_sha == sha):
                    out.append((t.host, t.port, t.node))
        return out

    def versions(self) -> int:
        return len(self.engine.list_app_versions(self.service, "main"))

    def healthy(self, n: int, sha: str | None = None, avoid: str = "") -> bool:
        """``n`` running tasks (of ``sha``; none on node ``avoid``), each UP in lab1's proxy."""
        tasks = [t for t in self.running(sha) if t[2] != avoid]
        up = self.routed("lab1")
        return len(tasks) >= n and sum((a, p) in up for a, p, _ in tasks) >= n


def wait(what: str, probe: Callable[[], bool], timeout: float = 180.0) -> float:
    """Poll ``probe`` every POLL s; the seconds it took. Raises on timeout."""
    t0 = time.perf_counter()
    while time.perf_counter() - t0 < timeout:
        try:
            if probe():
                return time.perf_counter() - t0
        except (PaasportError, OSError):
            pass
        time.sleep(POLL)
    raise TimeoutError(f"timed out after {timeout:.0f}s waiting for {what}")


class Bench:
    def __init__(self, lab: Lab, root: Path) -> None:
        self.lab, self.root = lab, root
        repo = new_repo(root / "web-repo")
        dirs = {h: Path(lab.facts[f"LAB_{h}_STATE_DIR"]) for h in lab.hosts}
        self.swarm = LabService(lab, root, repo, lab.soa_dir, "web", proxy_port=LAB_PORT)
        self.swarm_probe = Probe(SwarmEngine("lab", base_url=lab.manager_socket), dirs, "web")
        solo = root / "solo"
        (solo / "state").mkdir(parents=True)
        config = solo / "paasport.yaml"
        config.write_text(
            f"""\
local_cluster: solo
clusters:
  solo:
    engine: docker
    docker_host: "{lab.manager_socket}"
soa_dir: "{solo / "soa-configs"}"
state_dir: "{solo / "state"}"
docker_registry: "{lab.registry}"
discovery:
  registry: zookeeper
  zookeeper_hosts: "{lab.zk_hosts}"
  zookeeper_path: /paasport-solo
  zookeeper_session_timeout_seconds: 4
"""
        )
        env = ("env", f"PAASPORT_CONFIG={config}", f"PAASPORT_STATE_DIR={solo / 'state'}")
        self.solo = LabService(lab, root, repo, solo / "soa-configs", "web", cluster="solo",
                               proxy_port=SOLO_PORT, prefix=env)  # fmt: skip
        engine = DockerEngine("solo", base_url=lab.manager_socket)
        self.solo_probe = Probe(engine, {"lab1": solo / "state"}, "web")

    extra: dict[str, str]

    def start(self) -> None:
        self.extra = {}
        self.swarm.write(instances_yaml(0))
        self.solo.write(instances_yaml(0))
        self.sha = self.swarm.new_version()
        for host in self.lab.hosts:
            self.swarm.start_agent(host)
        self.swarm.start_deployd("lab1")
        self.solo.start_agent("lab1")
        self.solo.start_deployd("lab1")
        self.swarm.mark(self.sha)
        self.solo.mark(self.sha)

    def resize(self, svc: LabService, probe: Probe, n: int, extra: str = "") -> None:
        """Write ``n`` instances (0.05 cpus; ``extra`` lines) and wait until exactly they run,
        healthy; when ``extra`` changed, as a new app version (the bounce it causes is over)."""
        rehash = n > 0 and extra != self.extra.get(svc.cluster, "")
        self.extra[svc.cluster] = extra
        before = {v.config_hash for v in probe.engine.list_app_versions(svc.service, "main")}
        svc.instances = n
        svc.write(instances_yaml(n, cpus=0.05, extra=extra))

        def settled() -> bool:
            versions = probe.engine.list_app_versions(svc.service, "main")
            if len(versions) > 1 or (rehash and versions and versions[0].config_hash in before):
                return False
            return len(probe.running()) == n and probe.healthy(n)

        wait(f"{svc.cluster}: {n} tasks", settled, 300)

    def bounce(self, svc: LabService, probe: Probe) -> tuple[float, float]:
        """mark a new version: (seconds to all new healthy in lab1's proxy, to the old gone)."""
        sha = self.swarm.new_version()  # one repo: the swarm side commits and pushes
        t0 = time.perf_counter()
        svc.mark(sha)
        n = svc.instances
        wait(f"{svc.cluster}: {n} new tasks healthy", lambda: probe.healthy(n, sha), 300)
        healthy = time.perf_counter() - t0
        wait(f"{svc.cluster}: the old tasks gone", lambda: probe.versions() == 1, 300)
        return healthy, time.perf_counter() - t0

    def speed(self, counts: list[int], repeat: int) -> dict[tuple[str, int], list[float]]:
        out: dict[tuple[str, int], list[float]] = {}
        for name, svc, probe, other, other_probe in (
            ("3 hosts", self.swarm, self.swarm_probe, self.solo, self.solo_probe),
            ("1 host", self.solo, self.solo_probe, self.swarm, self.swarm_probe),
        ):
            self.resize(other, other_probe, 0)  # the other cluster idles with no task
            for n in counts:
                self.resize(svc, probe, n)
                runs = [self.bounce(svc, probe) for _ in range(repeat)]
                out[(name, n)] = [h for h, _ in runs]
                log(f"{name}, N={n}: healthy " + ", ".join(f"{h:.2f}s" for h, _ in runs)
                    + "; old gone " + ", ".join(f"{d:.2f}s" for _, d in runs))  # fmt: skip
            self.resize(svc, probe, 0)
        return out

    def under_load(self, bounces: int) -> list[dict[str, object]]:
        rows = []
        for drain in ("proxy", "noop"):
            self.resize(self.swarm, self.swarm_probe, 6, extra=f"  drain_method: {drain}\n")
            out = self.root / f"wrk-{drain}.txt"
            url = f"http://127.0.0.1:{LAB_PORT}/"
            wrk = self.lab.spawn("lab1", "wrk", "-t2", "-c8", "-d900s", url, log=out)
            try:
                time.sleep(2)
                t0 = time.perf_counter()
                for _ in range(bounces):
                    self.bounce(self.swarm, self.swarm_probe)
                secs = time.perf_counter() - t0
                time.sleep(2)
            finally:
                os.killpg(wrk.pid, signal.SIGINT)
                wrk.wait(timeout=30)
            row: dict[str, object] = {"drain": drain, "bounces": bounces, "seconds": secs}
            row.update(parse_wrk(out.read_text()))
            nodes = {t[2] for t in self.swarm_probe.running()}
            log(f"drain_method {drain}: {row} (last spread over {sorted(nodes)})")
            rows.append(row)
        return rows

    def kills(self, runs: int) -> tuple[list[float], list[float]]:
        lost, address = "lab3", self.lab.address["lab3"]
        self.resize(self.swarm, self.swarm_probe, 6)
        left_all, replicated_all = [], []
        for i in range(runs):
            for _ in range(3):  # spread over the 3 hosts again (Swarm spreads new tasks)
                if any(t[2] == lost for t in self.swarm_probe.running()):
                    break
                self.bounce(self.swarm, self.swarm_probe)
            on_lost = sum(t[2] == lost for t in self.swarm_probe.running())
            t0 = time.perf_counter()
            self.lab.fail(lost, "docker")
            try:

                def gone() -> bool:
                    return not any(self.swarm_probe.in_proxy(h, address) for h in ("lab1", "lab2"))

                wait(f"{lost}'s backends out of lab1's and lab2's proxies", gone, 60)
                left = time.perf_counter() - t0
                wait("6 tasks again on lab1/lab2",
                     lambda: self.swarm_probe.healthy(6, avoid=lost), 180)  # fmt: skip
                replicated = time.perf_counter() - t0
            finally:
                self.lab.heal(lost)
            left_all.append(left)
            replicated_all.append(replicated)
            log(f"kill {i + 1}/{runs} ({on_lost} tasks on {lost}): out of every proxy "
                f"{left:.2f}s, replicated {replicated:.2f}s")  # fmt: skip
        return left_all, replicated_all


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--repeat", type=int, default=3, help="bounces per N and cluster (3)")
    parser.add_argument("--bounces", type=int, default=10, help="bounces under wrk (10)")
    parser.add_argument("--kills", type=int, default=10, help="dockerd kills (10)")
    parser.add_argument("--counts", default="6,30", help="task counts to bounce (6,30)")
    parser.add_argument("--lab-id", type=int, default=35, help="the lab to bring up (35)")
    args = parser.parse_args()
    counts = [int(c) for c in args.counts.split(",")]
    lab_sh(args.lab_id, "down", timeout=180)
    log(f"bringing up lab {args.lab_id} (scripts/lab.sh up --no-platform)")
    up = lab_sh(args.lab_id, "up", "--no-platform", timeout=300)
    if up.returncode != 0:
        sys.exit(f"the lab did not come up:\n{up.stderr[-3000:]}")
    try:
        with tempfile.TemporaryDirectory(prefix="paasport-bench-") as tmp:
            bench = Bench(lab_from(args.lab_id), Path(tmp))
            try:
                bench.start()
                speed = bench.speed(counts, args.repeat) if args.repeat else {}
                load = bench.under_load(args.bounces) if args.bounces else []
                left, replicated = bench.kills(args.kills) if args.kills else ([], [])
            except BaseException:
                print(bench.swarm.log_tail(), file=sys.stderr)
                raise
            finally:
                stop_spawned()
    finally:
        lab_sh(args.lab_id, "down", timeout=180)
    print("\nmark-for-deployment -> all N new tasks healthy in lab1's proxy (median of "
          f"{args.repeat}; crossover, 0.05 cpus a task)")  # fmt: skip
    for n in counts if speed else []:
        many, one = (
            statistics.median(speed[("3 hosts", n)]),
            statistics.median(speed[("1 host", n)]),
        )
        print(f"  N={n:<3} 3 hosts (swarm) {many:6.2f}s   1 host (docker) {one:6.2f}s   "
              f"ratio {many / one:.2f}")  # fmt: skip
    if load:
        print(f"\n{args.bounces} crossover bounces of 6 tasks across 3 hosts under wrk -t2 -c8 "
              "(inside lab1, through its proxy)")  # fmt: skip
    for r in load:
        failed = int(str(r["non2xx"])) + int(str(r["socket_errors"]))
        print(f"  drain_method {r['drain']!s:5}  {failed} failed of {r['requests']} "
              f"({r['non2xx']} non-2xx, {r['socket_errors']} socket errors) in "
              f"{float(str(r['seconds'])):.0f}s")  # fmt: skip
    if left:
        print(f"\nlab3's dockerd killed, {len(left)} runs (p50 / p99):")
        print(
            f"  backends out of every other proxy  {pct(left, 0.5):.2f}s / {pct(left, 0.99):.2f}s"
        )
        print(f"  full replication on lab1/lab2      {pct(replicated, 0.5):.2f}s / "
              f"{pct(replicated, 0.99):.2f}s")  # fmt: skip


if __name__ == "__main__":
    main()
