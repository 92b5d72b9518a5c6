"""One service on one throwaway cluster, driven through the `paasport` command as a user does:
a busybox httpd repo, its soa-configs, a paasport.yaml of its own, `paasport up` as a subprocess
and the cleanup of everything it started (our `up` by PID, `paasport down`, our HAProxy by its
pidfile, our cluster's containers and image). test_up_end_to_end.py and test_api.py use it.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from discovery_support import free_port, free_proxy_port, get
from harness import remove_cluster

PAASPORT = [sys.executable, "-m", "paasport"]
SERVICE = "e2eweb"
PAGE = "hello from the end-to-end test"
INSTANCES = 3


class NotYet(str):
    """A probe's "not yet, because ...": falsy, so wait_for keeps polling, and shown when it
    gives up."""

    def __bool__(self) -> bool:
        return False


def wait_for(what: str, probe: Callable[[], Any], timeout: float, log: Path) -> Any:
    """Poll ``probe`` until it returns something truthy; fail with the up log's tail."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except (OSError, ValueError, subprocess.SubprocessError) as err:
            last = NotYet(repr(err))  # not there yet: keep polling (an error is not an answer)
        if last:
            return last
        time.sleep(0.2)
    tail = "\n".join(log.read_text(errors="replace").splitlines()[-40:]) if log.exists() else ""
    pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}\n{tail}")


@dataclass
class Load:
    """Sequential GETs through the proxy port in a thread, bounded in count."""

    port: int
    limit: int = 3000
    ok: int = 0
    failures: list[str] = field(default_factory=list)
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def run(self) -> None:
        while not self.stop.is_set() and self.ok + len(self.failures) < self.limit:
            try:
                status, body = get(self.port)
            except OSError as err:
                self.failures.append(repr(err))
            else:
                if status == 200 and PAGE in body:
                    self.ok += 1
                else:
                    self.failures.append(f"HTTP {status}: {body[:80]!r}")
            time.sleep(0.005)

    def __enter__(self) -> Load:
        self.thread = threading.Thread(target=self.run, daemon=True)
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        assert self.thread is not None
        self.thread.join(10)


@dataclass
class E2E:
    root: Path
    cluster: str
    proxy_port: int
    env: dict[str, str]
    metrics_port: int = field(default_factory=lambda: free_port())
    up: subprocess.Popen[bytes] | None = None

    @property
    def config(self) -> Path:
        return self.root / "paasport.yaml"

    @property
    def soa(self) -> Path:
        return self.root / "soa"

    @property
    def state(self) -> Path:
        return self.root / "state"

    @property
    def repo(self) -> Path:
        return self.root / "repo"

    @property
    def up_log(self) -> Path:
        return self.root / "up.log"

    @property
    def instance_file(self) -> Path:
        return self.soa / SERVICE / f"instances-{self.cluster}.yaml"

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        out = subprocess.run(
            [*PAASPORT, *args, "--config", str(self.config)],
            capture_output=True,
            text=True,
            env=self.env,
            timeout=60,
            check=False,
        )
        if check and out.returncode != 0:
            pytest.fail(f"paasport {' '.join(args)} exited {out.returncode}:\n{out.stderr}")
        return out

    def status(self) -> dict[str, Any]:
        out = self.run("status", "-s", SERVICE, "-c", self.cluster, "--json", check=False)
        views = json.loads(out.stdout)
        assert [v["instance"] for v in views] == ["main"], out.stdout
        return dict(views[0])

    def start_up(self, *args: str) -> None:
        """``paasport up`` of this world with short timings (``args`` added), logging to
        ``up_log``; ``stop_everything`` ends it."""
        with self.up_log.open("wb") as out:
            self.up = subprocess.Popen(
                [
                    *PAASPORT, "up", "--config", str(self.config),
                    "--metrics-listen", f"127.0.0.1:{self.metrics_port}",
                    "--refresh-seconds", "2", "--full-pass-seconds", "5",
                    "--stop-grace-seconds", "2", *args,
                ],
                stdout=out,
                stderr=subprocess.STDOUT,
                env=self.env,
                start_new_session=True,
            )  # fmt: skip

    def write_instance(self, **overrides: object) -> None:
        main: dict[str, object] = {
            "instances": INSTANCES,
            "cpus": 0.1,
            "mem": 32,
            "cmd": "httpd -f -p 8888 -h /www",
            "healthcheck_grace_period_seconds": 5,
            "healthcheck_interval_seconds": 1,
            "healthcheck_timeout_seconds": 1,
            "bounce_method": "crossover",
            "drain_timeout_seconds": 10,
            "backoff_seconds": 1,
            "env": {"GREETING": "hello"},
        }
        main.update(overrides)
        self.instance_file.write_text(json.dumps({"main": main}, indent=2) + "\n")


def git(repo: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True, timeout=120
    ).stdout.strip()


def make_world(root: Path) -> E2E:
    cluster = f"e2e-{uuid.uuid4().hex[:8]}"
    env = {k: v for k, v in os.environ.items() if not k.startswith("PAASPORT_")}
    world = E2E(root, cluster, free_proxy_port(), env)
    # the service's code: busybox httpd serving www/ (Dockerfile from scratch, no pulls)
    repo = world.repo
    (repo / "www").mkdir(parents=True)
    shutil.copy(shutil.which("busybox") or "/bin/busybox", repo / "busybox")
    (repo / "Dockerfile").write_text(
        "FROM scratch\n"
        "COPY busybox /bin/busybox\n"
        'RUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
        "ENV PATH=/bin\n"
        "COPY www /www\n"
        'CMD ["httpd", "-f", "-p", "8888", "-h", "/www"]\n'
    )
    (repo / "www" / "index.html").write_text(PAGE + "\n")
    (repo / "www" / "status").write_text("ok\n")
    git(repo, "init", "-q", "-b", "main")
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=e2e", "-c", "user.email=e2e@localhost", "commit", "-q", "-m", "v1")
    # the soa-configs tree
    svc = world.soa / SERVICE
    svc.mkdir(parents=True)
    (svc / "service.yaml").write_text(f"description: end-to-end test service\ngit_url: {repo}\n")
    (svc / "deploy.yaml").write_text(f"pipeline:\n  - step: {cluster}.main\n")
    (svc / "smartstack.yaml").write_text(
        f"main:\n  proxy_port: {world.proxy_port}\n  mode: http\n  healthcheck_uri: /status\n"
    )
    (svc / "monitoring.yaml").write_text("team: e2e\npage: false\nalert_after: 1m\n")
    world.write_instance()
    world.config.write_text(
        f"local_cluster: {cluster}\n"
        f"clusters:\n  {cluster}:\n    engine: docker\n"
        f"soa_dir: {json.dumps(str(world.soa))}\n"
        f"state_dir: {json.dumps(str(world.state))}\n"
        "monitoring:\n  check_interval_seconds: 1\n"
    )
    return world


def stop_everything(world: E2E) -> None:
    """SIGINT to our `up`, `paasport down`, our HAProxy, then any container of our cluster."""
    if world.up is not None and world.up.poll() is None:
        world.up.send_signal(signal.SIGINT)
        try:
            world.up.wait(20)
        except subprocess.TimeoutExpired:
            world.up.kill()
            world.up.wait(5)
    world.run("down", "--yes", check=False)
    pidfile = world.state / "haproxy" / "haproxy.pid"
    with contextlib.suppress(OSError, ValueError):
        pid = int(pidfile.read_text().split()[0])
        os.kill(pid, signal.SIGTERM)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.1)
    remove_cluster(world.cluster)


def container_hashes(cluster: str) -> list[str]:
    """The config hash label of every running container of our cluster (the engine's truth)."""
    out = subprocess.run(
        [
            "docker",
            "ps",
            "--filter",
            f"label=paasport.cluster={cluster}",
            "--format",
            '{{.Label "paasport.config_hash"}}',
        ],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    ).stdout
    return sorted(out.split())


def healthy_in_proxy(world: E2E) -> dict[str, Any] | None:
    s = world.status()
    tasks = s["tasks"]
    ok = (
        s["ok"]
        and s["healthy"] == INSTANCES
        and len(tasks) == INSTANCES
        and all(t["proxy"] == {f"{SERVICE}.main": "up"} for t in tasks)
    )
    return s if ok else None


@contextlib.contextmanager
def e2e_world(root: Path) -> Iterator[E2E]:
    """A world under ``root``, everything it started stopped and removed afterwards."""
    w = make_world(root)
    image: str | None = None
    try:
        yield w
    finally:
        stop_everything(w)
        with contextlib.suppress(subprocess.CalledProcessError, OSError):
            sha = git(w.repo, "rev-parse", "HEAD")
            image = f"services-{SERVICE}:paasta-{sha}"
        if image:
            subprocess.run(
                ["docker", "rmi", "-f", image], capture_output=True, check=False, timeout=120
            )
