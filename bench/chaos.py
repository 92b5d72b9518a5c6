"""The hardening figures: a real `paasport up` under steady load survives its dependencies dying.

One busybox httpd service (3 tasks, crossover, drain through the proxy) runs under `paasport up`
(a subprocess with a paasport.yaml of its own, ZooKeeper as the registry through a relay this
script can cut), and ``wrk`` sends steady load through 127.0.0.1:<proxy_port>. Scenarios, each
with its own wrk run; printed: requests, failed (non-2xx + socket errors) and recovery times.

- ``kill-up``: an env edit starts a bounce, `up` is SIGKILLed at a random point of it and started
  again, N times; time for each bounce to converge after the restart.
- ``zk``: a bounce is started and ZooKeeper is cut off (the relay refuses and closes every
  connection) for 30 s; time from ZooKeeper's return until the bounce has converged.
- ``haproxy``: kill -9 of HAProxy's worker, its master, then both, under sequential requests (not
  wrk); failed requests and when the last one failed (the agent supervises its HAProxy).

dockerd restarts have their own script (bench/dockerd_restart.py: it needs a private daemon).

    .venv/bin/python bench/chaos.py [--runs N] [--zk-seconds S] [SCENARIO ...]
"""

from __future__ import annotations

import argparse
import contextlib
import http.client
import json
import os
import random
import re
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

from discovery_support import Relay, free_proxy_port

PAASPORT = [sys.executable, "-m", "paasport"]
SERVICE = "chaos"
TASKS = 3
ZK = ("127.0.0.1", int(os.environ.get("PAASPORT_TEST_ZK_PORT", "2181")))


def get(port: int, timeout: float = 1.0) -> int:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", "/")
        return conn.getresponse().status
    finally:
        conn.close()


def answers(port: int) -> bool:
    try:
        return get(port, 0.5) == 200
    except OSError:
        return False


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True, timeout=30
    ).stdout.strip()


class Wrk:
    """One wrk run through the proxy port, ended by SIGINT; returns its counts."""

    def __init__(self, port: int) -> None:
        self.proc = subprocess.Popen(
            ["wrk", "-t2", "-c8", "-d3600s", f"http://127.0.0.1:{port}/"],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
        )

    def __enter__(self) -> Wrk:
        return self

    def __exit__(self, *exc: object) -> None:
        """Kill and reap it if ``finish`` did not (a failed scenario must not leave it)."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(timeout=10)

    def finish(self) -> dict[str, int]:
        self.proc.send_signal(signal.SIGINT)
        out, _ = self.proc.communicate(timeout=30)

        def grab(pattern: str) -> int:
            m = re.search(pattern, out)
            return int(m.group(1)) if m else 0

        sock = re.search(
            r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", out
        )
        return {
            "requests": grab(r"(\d+) requests in"),
            "failed": grab(r"Non-2xx or 3xx responses: (\d+)")
            + (sum(int(x) for x in sock.groups()) if sock else 0),
        }


class World:
    """A temporary soa-configs tree, service repo, paasport.yaml and a `paasport up` process."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self.cluster = f"chaos-{uuid.uuid4().hex[:8]}"
        self.proxy_port = free_proxy_port()
        self.relay = Relay(*ZK)
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("PAASPORT_")}
        self.up: subprocess.Popen[bytes] | None = None
        self.generation = 0
        self.repo = root / "repo"
        self.soa = root / "soa"
        self.state = root / "state"
        self.config = root / "paasport.yaml"
        self.log = root / "up.log"
        self.image = ""

    @property
    def instance_file(self) -> Path:
        return self.soa / SERVICE / f"instances-{self.cluster}.yaml"

    def run(self, *args: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [*PAASPORT, *args, "--config", str(self.config)],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=120,
            check=False,
        )

    def setup(self) -> None:
        (self.repo / "www").mkdir(parents=True)
        shutil.copy(shutil.which("busybox") or "/bin/busybox", self.repo / "busybox")
        (self.repo / "Dockerfile").write_text(
            "FROM scratch\nCOPY busybox /bin/busybox\n"
            'RUN ["/bin/busybox", "--install", "-s", "/bin"]\nENV PATH=/bin\nCOPY www /www\n'
            'CMD ["httpd", "-f", "-p", "8888", "-h", "/www"]\n'
        )
        (self.repo / "www" / "index.html").write_text("chaos\n")
        (self.repo / "www" / "status").write_text("ok\n")
        git(self.repo, "init", "-q", "-b", "main")
        git(self.repo, "add", "-A")
        git(self.repo, "-c", "user.name=b", "-c", "user.email=b@localhost", "commit", "-qm", "v1")
        svc = self.soa / SERVICE
        svc.mkdir(parents=True)
        (svc / "service.yaml").write_text(f"description: chaos bench\ngit_url: {self.repo}\n")
        (svc / "deploy.yaml").write_text(f"pipeline:\n  - step: {self.cluster}.main\n")
        (svc / "smartstack.yaml").write_text(
            f"main:\n  proxy_port: {self.proxy_port}\n  mode: http\n  healthcheck_uri: /status\n"
        )
        self.write_instance()
        self.config.write_text(
            f"local_cluster: {self.cluster}\n"
            f"clusters:\n  {self.cluster}:\n    engine: docker\n"
            f"soa_dir: {json.dumps(str(self.soa))}\n"
            f"state_dir: {json.dumps(str(self.state))}\n"
            "discovery:\n  registry: zookeeper\n"
            f"  zookeeper_hosts: 127.0.0.1:{self.relay.port}\n"
            f"  zookeeper_path: /paasport-{self.cluster}\n"
        )
        sha = git(self.repo, "rev-parse", "HEAD")
        for args in (
            ("cook-image", "-s", SERVICE, "-c", sha),
            ("mark-for-deployment", "-s", SERVICE, "-l", f"{self.cluster}.main", "-c", sha),
        ):
            out = self.run(*args)
            if out.returncode != 0:
                raise SystemExit(f"paasport {args[0]} failed: {out.stderr}")
        self.image = f"services-{SERVICE}:paasta-{sha}"

    def write_instance(self) -> None:
        """Atomically, as an editor that renames would (a bounce: a new env value)."""
        main = {
            "instances": TASKS,
            "cpus": 0.1,
            "mem": 32,
            "cmd": "httpd -f -p 8888 -h /www",
            "healthcheck_grace_period_seconds": 5,
            "healthcheck_interval_seconds": 1,
            "healthcheck_timeout_seconds": 1,
            "drain_timeout_seconds": 10,
            "env": {"GENERATION": str(self.generation)},
        }
        tmp = self.instance_file.with_suffix(".tmp")
        tmp.write_text(json.dumps({"main": main}, indent=2) + "\n")
        os.replace(tmp, self.instance_file)

    def bounce(self) -> None:
        self.generation += 1
        self.write_instance()

    def start_up(self) -> None:
        with self.log.open("ab") as out:
            self.up = subprocess.Popen(
                [
                    *PAASPORT,
                    "up",
                    "--config",
                    str(self.config),
                    "--metrics-listen",
                    "",
                    "--stop-grace-seconds",
                    "2",
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )

    def kill_up(self) -> None:
        assert self.up is not None
        self.up.kill()  # SIGKILL to `up` alone: its HAProxy lives in its own session
        self.up.wait(10)

    def converged(self) -> bool:
        """One app version of the newest generation, every task healthy and up in the proxy."""
        out = self.run("status", "-s", SERVICE, "--json")
        try:
            [view] = json.loads(out.stdout)
        except (ValueError, TypeError):
            return False
        tasks = view.get("tasks") or []
        return bool(
            view.get("ok")
            and view.get("healthy") == TASKS
            and len(view.get("app_versions") or []) == 1
            and len(tasks) == TASKS
            and all(t["proxy"] == {f"{SERVICE}.main": "up"} for t in tasks)
            and self.generation_running()
        )

    def generation_running(self) -> bool:
        out = subprocess.run(
            ["docker", "ps", "--filter", f"label=paasport.cluster={self.cluster}", "-q"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout.split()
        if len(out) != TASKS:
            return False
        env = subprocess.run(
            ["docker", "inspect", "--format", "{{json .Config.Env}}", *out],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout.splitlines()
        return all(f"GENERATION={self.generation}" in line for line in env)

    def wait(self, what: str, probe: Callable[[], bool], timeout: float) -> float:
        started = time.monotonic()
        while time.monotonic() - started < timeout:
            if probe():
                return time.monotonic() - started
            time.sleep(0.1)
        tail = "\n".join(self.log.read_text(errors="replace").splitlines()[-30:])
        raise SystemExit(f"timed out after {timeout:.0f}s waiting for {what}\n{tail}")

    def haproxy_pids(self) -> tuple[int | None, list[int]]:
        """HAProxy's master (from its pidfile) and its workers (the master's children)."""
        try:
            master = int((self.state / "haproxy" / "haproxy.pid").read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None, []
        children = subprocess.run(
            ["pgrep", "-P", str(master)], capture_output=True, text=True, timeout=10, check=False
        ).stdout.split()
        return master, [int(c) for c in children]

    def close(self) -> None:
        if self.up is not None and self.up.poll() is None:
            self.up.send_signal(signal.SIGINT)
            try:
                self.up.wait(20)
            except subprocess.TimeoutExpired:
                self.up.kill()
        self.run("down", "--yes")
        master, workers = self.haproxy_pids()
        for pid in [p for p in (master, *workers) if p]:
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        ids = subprocess.run(
            ["docker", "ps", "-aq", "--filter", f"label=paasport.cluster={self.cluster}"],
            capture_output=True,
            text=True,
            timeout=30,
            check=False,
        ).stdout.split()
        if ids:
            subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, timeout=60)
        if self.image:
            subprocess.run(["docker", "rmi", "-f", self.image], capture_output=True, timeout=60)
        self.relay.close()


@contextlib.contextmanager
def world() -> Iterator[World]:
    with tempfile.TemporaryDirectory(prefix="paasport-chaos-") as tmp:
        w = World(Path(tmp))
        try:
            w.setup()
            w.start_up()
            w.wait("3 healthy tasks up in the proxy", w.converged, 90)
            yield w
        finally:
            w.close()


def pct(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))] if ordered else 0.0


def kill_up(runs: int) -> dict[str, Any]:
    with world() as w, Wrk(w.proxy_port) as load:
        times: list[float] = []
        for i in range(runs):
            w.bounce()
            time.sleep(random.uniform(0.3, 4.0))  # somewhere in the bounce
            w.kill_up()
            w.start_up()
            times.append(w.wait(f"run {i + 1}: convergence after the restart", w.converged, 120))
            print(f"  kill-up run {i + 1}/{runs}: converged {times[-1]:.1f} s after the restart")
        counts = load.finish()
    return {
        "scenario": f"SIGKILL up mid-bounce x{runs}",
        **counts,
        "recovery": f"converged p50 {pct(times, 50):.1f} s, max {max(times):.1f} s",
    }


def zookeeper(seconds: float) -> dict[str, Any]:
    with world() as w, Wrk(w.proxy_port) as load:
        time.sleep(2)
        w.bounce()
        time.sleep(0.5)
        w.relay.cut()
        print(f"  zk: ZooKeeper cut off for {seconds:.0f} s during a bounce")
        time.sleep(seconds)
        w.relay.restore()
        back = w.wait("convergence after ZooKeeper returned", w.converged, 180)
        time.sleep(2)
        counts = load.finish()
    return {
        "scenario": f"ZooKeeper down {seconds:.0f} s mid-bounce",
        **counts,
        "recovery": f"bounce converged {back:.1f} s after ZooKeeper returned",
    }


class Requests:
    """Sequential GETs through the proxy port in a thread (wrk counts every failed reconnect
    of its 8 connections, which says little about requests while nothing listens)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.ok = 0
        self.failed_at: list[float] = []
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)
        self.thread.start()

    def _run(self) -> None:
        while not self.stop.is_set():
            try:
                good = get(self.port, 1.0) == 200
            except OSError:
                good = False
            if good:
                self.ok += 1
            else:
                self.failed_at.append(time.monotonic())
            time.sleep(0.002)

    def finish(self) -> None:
        self.stop.set()
        self.thread.join(timeout=5)


def haproxy() -> list[dict[str, Any]]:
    rows: list[dict[str, Any]] = []
    with world() as w:
        for what in ("worker", "master", "both"):
            load = Requests(w.proxy_port)
            try:
                time.sleep(2)
                master, workers = w.haproxy_pids()
                victims = {"worker": workers, "master": [master], "both": [master, *workers]}[what]
                killed = time.monotonic()
                for pid in victims:
                    if pid:
                        os.kill(pid, signal.SIGKILL)
                time.sleep(5)
            finally:
                load.finish()
            failed = [t for t in load.failed_at if t >= killed]
            back = (max(failed) - killed) if failed else 0.0
            rows.append(
                {
                    "scenario": f"HAProxy {what} kill -9",
                    "requests": load.ok + len(load.failed_at),
                    "failed": len(load.failed_at),
                    "recovery": f"last failed request {back:.2f} s after the kill",
                }
            )
            w.wait("healthy again", w.converged, 60)
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument(
        "scenarios", nargs="*", metavar="SCENARIO", help="kill-up, zk, haproxy (default: all)"
    )
    parser.add_argument("--runs", type=int, default=20, help="SIGKILLs of up (20)")
    parser.add_argument("--zk-seconds", type=float, default=30.0, help="ZooKeeper outage (30)")
    args = parser.parse_args()
    unknown = set(args.scenarios) - {"kill-up", "zk", "haproxy"}
    if unknown:
        parser.error(f"unknown scenario(s): {', '.join(sorted(unknown))}")
    args.scenarios = args.scenarios or ["kill-up", "zk", "haproxy"]
    rows: list[dict[str, Any]] = []
    for name in args.scenarios:
        if name == "kill-up":
            rows.append(kill_up(args.runs))
        elif name == "zk":
            rows.append(zookeeper(args.zk_seconds))
        else:
            rows.extend(haproxy())
    print(f"\n{'scenario':36} {'requests':>9} {'failed':>7}  recovery")
    for r in rows:
        print(f"{r['scenario']:36} {r['requests']:>9} {r['failed']:>7}  {r['recovery']}")


if __name__ == "__main__":
    main()
