"""paasport on the 3-host lab (scripts/lab.sh): the swarm engine, an agent and HAProxy on every
host, deployd on lab1, all started by the test as a user would (`paasport agent`, `paasport
deployd`, `paasport mark-for-deployment` run on the lab's hosts).

One service ``web`` of 6 tasks, routed as web.main on every host's proxy port. The tests run in
file order and each leaves the service converged and healthy for the next: spread over the 3
hosts, a host whose dockerd dies, a host cut off, a crossover bounce under load, ZooKeeper away
for 30 s, and a second deployd taking over from a SIGKILLed first. Load runs inside lab1
(tests/integration/lab_load.py) because the lab's subnet is unreachable from here.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
from lab import Lab, lab  # noqa: F401  (the session fixture)

from harness import commit_version, new_repo

SERVICE = "web"
INSTANCES = 6
PROXY_PORT = 19301
SESSION_TIMEOUT = 4  # scripts/lab.sh: zookeeper_session_timeout_seconds
LOAD_SCRIPT = Path(__file__).with_name("lab_load.py")
# busybox httpd ignores SIGTERM as PID 1: sh traps it and exits, so a stop takes no grace
CMD = (
    'mkdir -p /www && echo "web $PAASTA_GIT_SHA" > /www/index.html && echo ok > /www/status;'
    " trap 'exit 0' TERM; httpd -f -p 8888 -h /www & wait"
)
INSTANCES_YAML = f"""\
main:
  cpus: 0.1
  mem: 32
  instances: {INSTANCES}
  cmd: {json.dumps(CMD)}
  container_port: 8888
  healthcheck_grace_period_seconds: 3
  healthcheck_interval_seconds: 1
  bounce_method: crossover
"""
SMARTSTACK_YAML = f"""\
main:
  proxy_port: {PROXY_PORT}
  mode: http
  healthcheck_uri: /status
  timeout_connect_ms: 500
  timeout_server_ms: 2000
"""


@dataclass
class Web:
    lab: Lab
    root: Path
    repo: Path
    agents: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    deployds: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    version: int = 1

    def paasport(self, host: str, *args: str, check: bool = True) -> str:
        return self.lab.exec(host, "paasport", *args, timeout=60, check=check).stdout

    def status(self) -> dict[str, Any]:
        [entry] = json.loads(self.paasport("lab1", "status", "-s", SERVICE, "--json", check=False))
        return dict(entry)

    def start_agent(self, host: str) -> None:
        self.agents[host] = self.lab.spawn(
            host, "paasport", "agent", "--stop-proxy", log=self.root / f"{host}-agent.log"
        )

    def start_deployd(self, host: str) -> subprocess.Popen[bytes]:
        proc = self.lab.spawn(
            host, "paasport", "deployd", "--full-pass-seconds", "5", "--stop-grace-seconds", "2",
            log=self.root / f"{host}-deployd.log",
        )  # fmt: skip
        self.deployds[host] = proc
        return proc

    def new_version(self) -> str:
        """Commit the next version, push its image (the base image under the build's name)."""
        self.version += 1
        return self.push(commit_version(self.repo, self.version))

    def push(self, sha: str) -> str:
        image = f"{self.lab.registry}/services-{SERVICE}:paasta-{sha}"
        self.lab.exec("lab1", "docker", "tag", self.lab.base_image, image)
        self.lab.exec("lab1", "docker", "push", "-q", image, timeout=120)
        return sha

    def mark(self, sha: str) -> None:
        self.paasport("lab1", "mark-for-deployment", "-s", SERVICE, "-l", "lab.main", "-c", sha)

    def services(self) -> list[str]:
        """Names of the Swarm services of ``web`` (one per task)."""
        out = self.lab.exec(
            "lab1", "docker", "service", "ls", "-q", "--filter",
            f"label=paasport.service={SERVICE}", "--format", "{{.Name}}",
        )  # fmt: skip
        return out.stdout.split()

    def backends(self, host: str) -> list[dict[str, Any]]:
        """web.main's backends in ``host``'s HAProxy (mesh-status on that host)."""
        out = self.paasport(host, "mesh-status", "-s", SERVICE, "--json", check=False)
        try:
            mesh = json.loads(out)
        except ValueError:
            return []
        return [b for ns in mesh.get("namespaces", []) for b in ns.get("backends", [])]

    def log_tail(self) -> str:
        parts = []
        for log in sorted(self.root.glob("*.log")):
            lines = log.read_text(errors="replace").splitlines()[-15:]
            parts.append(f"--- {log.name}\n" + "\n".join(lines))
        return "\n".join(parts)

    def wait(self, what: str, probe: Callable[[], Any], timeout: float) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = probe()
            except (OSError, ValueError, KeyError, subprocess.SubprocessError) as err:
                last = err
            if last:
                return last
            time.sleep(0.5)
        pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}\n"
                    f"{self.log_tail()}")  # fmt: skip

    def converged(self, sha: str) -> dict[str, Any] | None:
        """The status entry once ``sha`` runs 6 healthy tasks and nothing else, each up in
        lab1's proxy; else None."""
        st = self.status()
        tasks = [t for t in st["tasks"] if t["state"] == "running"]
        if st["git_sha"] != sha or len(tasks) != INSTANCES or len(st["app_versions"]) != 1:
            return None
        if not all(t["health"] == "healthy" and t["new"] for t in tasks):
            return None
        up = {b["task_id"] for b in self.backends("lab1") if b["state"] == "up"}
        return st if {t["id"] for t in tasks} == up else None


@dataclass
class Load:
    """lab_load.py running inside ``host`` against the proxy port."""

    web: Web
    host: str = "lab1"
    name: str = "load"
    result: dict[str, Any] = field(default_factory=dict)

    def __enter__(self) -> Load:
        self.out = self.web.root / f"{self.name}.json"
        self.stop = self.web.root / f"{self.name}.stop"
        for f in (self.out, self.stop):
            f.unlink(missing_ok=True)
        self.proc = self.web.lab.spawn(
            self.host, sys.executable, str(LOAD_SCRIPT), str(PROXY_PORT), str(self.out),
            str(self.stop), log=self.web.root / f"{self.name}-stdout.txt",
        )  # fmt: skip
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.touch()
        try:
            self.proc.wait(timeout=15)
        except subprocess.TimeoutExpired:
            os.killpg(self.proc.pid, signal.SIGKILL)
            self.proc.wait(timeout=10)
        if self.out.exists():
            self.result = json.loads(self.out.read_text())


def hosts_of(st: dict[str, Any]) -> dict[str, int]:
    counts: dict[str, int] = {}
    for t in st["tasks"]:
        if t["state"] == "running":
            counts[t["node"]] = counts.get(t["node"], 0) + 1
    return counts


@pytest.fixture(scope="module")
def web(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:  # noqa: F811
    root = tmp_path_factory.mktemp("multihost")
    repo = new_repo(root / "web-repo")
    svc = lab.soa_dir / SERVICE
    svc.mkdir(parents=True, exist_ok=True)
    (svc / "service.yaml").write_text(f"git_url: {repo}\n")
    (svc / "deploy.yaml").write_text("pipeline:\n  - step: lab.main\n")
    (svc / "instances-lab.yaml").write_text(INSTANCES_YAML)
    (svc / "smartstack.yaml").write_text(SMARTSTACK_YAML)
    w = Web(lab, root, repo)
    try:
        sha = w.push(commit_version(repo, 1))
        for host in lab.hosts:
            w.start_agent(host)
        w.start_deployd("lab1")
        w.mark(sha)
        w.wait("6 healthy tasks of the first version", lambda: w.converged(sha), 120)
        yield w
    finally:
        from lab import stop_spawned

        stop_spawned()
        names = w.services() if lab.exec("lab1", "true", check=False).returncode == 0 else []
        if names:
            lab.exec("lab1", "docker", "service", "rm", *names, check=False, timeout=120)
        import shutil

        shutil.rmtree(svc, ignore_errors=True)


def test_six_tasks_spread_over_the_three_hosts_and_answer_through_every_proxy(web: Web) -> None:
    st = web.status()
    assert hosts_of(st) == {"lab1": 2, "lab2": 2, "lab3": 2}, st["tasks"]
    assert {t["host"] for t in st["tasks"]} == set(web.lab.address.values())
    assert len(web.services()) == INSTANCES  # one Swarm service per task
    for host in web.lab.hosts:

        def up_in(h: str = host) -> list[dict[str, Any]]:
            return [b for b in web.backends(h) if b["state"] == "up"]

        up = web.wait(f"6 backends up in {host}'s proxy", up_in, 30)
        assert len(up) == INSTANCES
        status, body = web.lab.get(host, PROXY_PORT)
        assert status == 200 and body.startswith("web "), body
    text = web.paasport("lab1", "status", "-s", SERVICE, "-v")
    assert all(h in text for h in web.lab.hosts), text
    hosts = json.loads(web.paasport("lab1", "hosts", "--json"))
    assert sorted(n["node"] for n in hosts["hosts"]) == ["lab1", "lab2", "lab3"]


def _replaced_without(web: Web, lost: str, sha: str) -> dict[str, Any] | None:
    st = web.converged(sha)
    if st is None or lost in hosts_of(st):
        return None
    return st


def _names_down(text: str, lost: str) -> bool:
    """Whether a ``status -v`` says the instance is short because ``lost`` went down."""
    return "Host down" in text and (f"{lost}, which" in text or f"{lost} (down)" in text)


def _routes_to(web: Web, host: str, address: str) -> bool:
    return any(
        b["addr"].startswith(f"{address}:") and b["state"] != "not in proxy"
        for b in web.backends(host)
    )


def lose_a_host(web: Web, fault: str) -> None:
    """Take lab3 down by ``fault`` under load through lab1: its backends leave lab1's and
    lab2's proxies, its tasks come back on lab1/lab2, status names it; it heals and rejoins."""
    sha = web.status()["git_sha"]
    lost, address = "lab3", web.lab.address["lab3"]
    assert lost in hosts_of(web.status()), "lab3 runs none of the tasks: nothing to lose"
    with Load(web, name=f"lost-{fault}") as load:
        time.sleep(2)
        web.lab.fail(lost, fault)
        t0, failed_at = time.monotonic(), time.time()
        try:
            for host in ("lab1", "lab2"):
                web.wait(f"{host}'s proxy to stop routing to {lost}",
                         lambda h=host: not _routes_to(web, h, address), 30)  # fmt: skip
            left = time.monotonic() - t0
            st = web.wait(f"6 healthy tasks on lab1/lab2 after {lost} died",
                          lambda: _replaced_without(web, lost, sha), 90)  # fmt: skip
            replaced = time.monotonic() - t0
        finally:
            web.lab.heal(lost)
        time.sleep(2)
    assert hosts_of(st).keys() == {"lab1", "lab2"}
    # status -vv's recent events say where the tasks went (while they are being replaced its
    # verdict says "Host down: 2 tasks on lab3, which is down")
    recent = web.paasport("lab1", "status", "-s", SERVICE, "-vv", check=False)
    assert f"lost with its host (host {lost} is down)" in recent, recent
    failed = load.result["failed"]
    print(f"{fault}: backends left both proxies in {left:.1f}s, replicated in {replaced:.1f}s; "
          f"{load.result['ok']} ok, {failed} failed")  # fmt: skip
    assert load.result["ok"] > 100
    assert left < SESSION_TIMEOUT + 3  # within the ZooKeeper session timeout (and a pass)
    # no request lost beyond that window: every failure came before the backends had left
    late = [f for f in load.result["failures"] if float(f.split()[0]) > failed_at + left + 1]
    assert late == [], late
    web.wait(f"{lost} Ready again", lambda: json_node_state(web, lost) == "ready", 60)
    assert web.agents[lost].poll() is None, f"the agent on {lost} stopped"


def test_a_host_whose_dockerd_dies_is_replaced_left_by_every_proxy_and_rejoins(web: Web) -> None:
    lose_a_host(web, "docker")


def json_node_state(web: Web, host: str) -> str:
    hosts = json.loads(web.paasport("lab1", "hosts", "--json"))
    [node] = [n for n in hosts["hosts"] if n["node"] == host]
    return str(node["state"])


def test_a_crossover_bounce_under_load_loses_no_request_and_uses_every_host(web: Web) -> None:
    sha = web.new_version()
    with Load(web, name="crossover") as load:
        time.sleep(1)
        web.mark(sha)
        st = web.wait("the crossover to converge", lambda: web.converged(sha), 120)
        time.sleep(1)
    assert load.result["failed"] == 0, load.result["failures"]
    assert load.result["ok"] > 200
    assert hosts_of(st).keys() == {"lab1", "lab2", "lab3"}  # the rejoined host is used again
    assert len(web.services()) == INSTANCES


def test_a_host_cut_off_is_replaced_left_by_every_proxy_and_rejoins(web: Web) -> None:
    lose_a_host(web, "network")


def test_zookeeper_away_30s_fails_no_request_and_the_waiting_bounce_finishes(web: Web) -> None:
    sha = web.new_version()
    with Load(web, name="zookeeper") as load:
        time.sleep(1)
        web.lab.fail("lab1", "zookeeper")
        try:
            web.mark(sha)
            time.sleep(30)
            st = web.status()
            assert st["git_sha"] == sha and not web.converged(sha)  # waiting, not done
            for host in web.lab.hosts:
                assert web.agents[host].poll() is None, f"the agent on {host} stopped"
        finally:
            web.lab.heal("lab1")
        web.wait("the bounce to finish after ZooKeeper returned", lambda: web.converged(sha), 120)
        time.sleep(1)
    assert load.result["failed"] == 0, load.result["failures"]
    assert load.result["ok"] > 200


def test_a_second_deployd_stands_by_then_takes_over_a_sigkilled_first(web: Web) -> None:
    standby = web.start_deployd("lab2")
    time.sleep(3)
    assert standby.poll() is None
    first = web.deployds["lab1"]
    sha = web.new_version()
    web.mark(sha)

    def bouncing() -> bool:
        st = web.status()
        return any(t["new"] and t["state"] == "running" for t in st["tasks"])

    web.wait("the bounce to start", bouncing, 60)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    st = web.wait("the standby to finish the bounce", lambda: web.converged(sha), 120)
    assert len(web.services()) == INSTANCES  # no orphan
    assert [v["git_sha"] for v in st["app_versions"]] == [sha]  # no duplicate app version
    log = (web.root / "lab2-deployd.log").read_text(errors="replace")
    assert "lock" in log.lower(), log[-2000:]
    with contextlib.suppress(KeyError):
        del web.deployds["lab1"]


PLACED_YAML = """
batch:
  cpus: 0.1
  mem: 32
  instances: 2
  cmd: "trap 'exit 0' TERM; sleep 3600 & wait"
  deploy_group: lab.main
  pool: batch
gpu:
  cpus: 0.1
  mem: 32
  instances: 1
  cmd: "trap 'exit 0' TERM; sleep 3600 & wait"
  deploy_group: lab.main
  pool: gpu
"""


def test_pool_places_tasks_on_the_nodes_labelled_so_and_names_a_pool_no_node_has(web: Web) -> None:
    instances = web.lab.soa_dir / SERVICE / "instances-lab.yaml"
    web.lab.exec("lab1", "docker", "node", "update", "--label-add", "pool=batch", "lab2")
    try:
        instances.write_text(INSTANCES_YAML + PLACED_YAML)

        def placed() -> dict[str, Any] | None:
            out = web.paasport("lab1", "status", "-s", SERVICE, "--json", check=False)
            by = {e["instance"]: e for e in json.loads(out)}
            batch, gpu = by.get("batch"), by.get("gpu")
            if not batch or not gpu or batch["healthy"] != 2 or not gpu["tasks"]:
                return None
            return by

        by = web.wait("batch on lab2 and gpu pending", placed, 60)
        assert hosts_of(by["batch"]) == {"lab2": 2}
        [pending] = by["gpu"]["tasks"]
        assert pending["state"] == "starting"
        assert pending["status_message"] == "constraint pool=gpu matches no node", pending
        text = web.paasport("lab1", "status", "-s", SERVICE, "-i", "gpu", check=False)
        assert "constraint pool=gpu matches no node" in text, text
    finally:
        instances.write_text(INSTANCES_YAML)
        web.lab.exec("lab1", "docker", "node", "update", "--label-add", "pool=default", "lab2")
    web.wait("the batch and gpu tasks removed", lambda: len(web.services()) == INSTANCES, 60)
