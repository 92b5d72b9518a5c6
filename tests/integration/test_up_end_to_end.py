"""End to end, as a user runs it: cook-image, mark-for-deployment, `paasport up` as a subprocess,
then curl through HAProxy, status/mesh-status/events, a crossover bounce under load, stop/start
and a broken field, all through the `paasport` command with a paasport.yaml of the test's own.

Everything lives under a temporary folder and a unique cluster (``e2e-<uuid8>``); the test stops
the `up` it started (SIGINT by PID), runs `paasport down`, stops the HAProxy `up` started under
its state_dir (by the pid in its pidfile) and removes its containers and image.
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

PAASPORT = [sys.executable, "-m", "paasport"]
SERVICE = "e2eweb"
PAGE = "hello from the end-to-end test"
INSTANCES = 3


def wait_for(what: str, probe: Callable[[], Any], timeout: float, log: Path) -> Any:
    """Poll ``probe`` until it returns something truthy; fail with the up log's tail."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            last = probe()
        except (OSError, ValueError, subprocess.SubprocessError) as err:
            last = err
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
        out = self.run("status", "-s", SERVICE, "--json", check=False)
        views = json.loads(out.stdout)
        assert [v["instance"] for v in views] == ["main"], out.stdout
        return dict(views[0])

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
    leftover = subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=paasport.cluster={world.cluster}"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    ).stdout.split()
    if leftover:
        subprocess.run(
            ["docker", "rm", "-f", *leftover], capture_output=True, check=False, timeout=120
        )


@pytest.fixture
def world(tmp_dir: Path) -> Iterator[E2E]:
    w = make_world(tmp_dir)
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


def instance_gauges(world: E2E) -> dict[str, float]:
    """paasport_instance_tasks{kind=...} of our instance, from the /metrics `up` serves."""
    status, text = get(world.metrics_port, "/metrics")
    assert status == 200
    out: dict[str, float] = {}
    for line in text.splitlines():
        if not line.startswith("paasport_instance_tasks{"):
            continue
        labels, value = line[len("paasport_instance_tasks{") :].rsplit("} ", 1)
        pairs = dict(p.split("=", 1) for p in labels.split(","))
        want = {"cluster": f'"{world.cluster}"', "service": f'"{SERVICE}"', "instance": '"main"'}
        if all(pairs.get(k) == v for k, v in want.items()):
            out[pairs["kind"].strip('"')] = float(value)
    return out


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


def test_up_end_to_end(world: E2E) -> None:
    log = world.up_log
    sha = git(world.repo, "rev-parse", "HEAD")
    cooked = world.run("cook-image", "-s", SERVICE, "-c", sha, "--json")
    assert json.loads(cooked.stdout)["image"] == f"services-{SERVICE}:paasta-{sha}"
    world.run("mark-for-deployment", "-s", SERVICE, "-l", f"{world.cluster}.main", "-c", sha)

    with log.open("wb") as out:
        world.up = subprocess.Popen(
            [
                *PAASPORT,
                "up",
                "--config",
                str(world.config),
                "--metrics-listen",
                f"127.0.0.1:{world.metrics_port}",
                "--refresh-seconds",
                "2",
                "--full-pass-seconds",
                "5",
                "--stop-grace-seconds",
                "2",
            ],
            stdout=out,
            stderr=subprocess.STDOUT,
            env=world.env,
            start_new_session=True,
        )

    # 1. the page answers through HAProxy on the namespace's proxy port
    def page() -> bool:
        status, body = get(world.proxy_port)
        return status == 200 and PAGE in body

    wait_for("the page through HAProxy", page, 45, log)

    # 2. status --json: healthy, the expected tasks, each up in the proxy
    first = wait_for(
        "3 healthy tasks, each up in the proxy", lambda: healthy_in_proxy(world), 30, log
    )
    assert first["state"] == "Running" and first["expected"] == INSTANCES
    assert first["git_sha"] == sha and first["desired_state"] == "start"
    old_hash = first["config_hash"]
    assert [v["config_hash"] for v in first["app_versions"]] == [old_hash]
    verbose = world.run("status", "-s", SERVICE, "-v")
    header = next(
        line for line in verbose.stdout.splitlines() if line.split()[:2] == ["task", "host"]
    )
    assert header.split()[-1] == "proxy", verbose.stdout
    assert verbose.stdout.count(f"{SERVICE}.main: up") == INSTANCES, verbose.stdout
    mesh = json.loads(world.run("mesh-status", "-s", SERVICE, "--json").stdout)
    assert mesh["error"] is None
    [ns] = mesh["namespaces"]
    assert ns["namespace"] == f"{SERVICE}.main" and ns["proxy_port"] == world.proxy_port
    assert [b["state"] for b in ns["backends"]] == ["up"] * INSTANCES
    task_ids = {t["id"] for t in first["tasks"]}
    assert {b["task_id"] for b in ns["backends"]} == task_ids
    # the monitor counts healthy tasks and backends up in the proxy (paasport_instance_tasks)
    wait_for(
        "/metrics to count 3 healthy tasks and 3 backends up",
        lambda: instance_gauges(world) == {"backends_up": 3.0, "expected": 3.0, "healthy": 3.0},
        15,
        log,
    )

    # 3. an env edit bounces (crossover) while a load loop sees no failed request
    with Load(world.proxy_port) as load:
        wait_for("load running", lambda: load.ok > 20, 10, log)
        world.write_instance(env={"GREETING": "bonjour"})

        def bounced() -> dict[str, Any] | None:
            s = healthy_in_proxy(world)
            if s is None or s["config_hash"] == old_hash:
                return None
            versions = s["app_versions"]
            return s if [v["config_hash"] for v in versions] == [s["config_hash"]] else None

        after = wait_for("the crossover bounce to finish", bounced, 45, log)
        seen = load.ok
        wait_for("more load after the bounce", lambda: load.ok > seen + 20, 10, log)
    assert load.failures == [], f"{len(load.failures)} failed of {load.ok}: {load.failures[:5]}"
    assert load.ok >= 100
    new_hash = after["config_hash"]
    assert new_hash != old_hash
    assert {t["id"] for t in after["tasks"]}.isdisjoint(task_ids)
    assert container_hashes(world.cluster) == [new_hash] * INSTANCES

    # 4. stop -> 0 tasks; start -> back
    world.run("stop", "-s", SERVICE, "-c", world.cluster, "-i", "main")

    def stopped() -> dict[str, Any] | None:
        s = world.status()
        return s if s["desired_state"] == "stop" and s["running"] == 0 and not s["tasks"] else None

    s = wait_for("0 tasks after stop", stopped, 30, log)
    assert s["state"] == "Stopped" and s["ok"]
    assert container_hashes(world.cluster) == []
    world.run("start", "-s", SERVICE, "-c", world.cluster, "-i", "main")
    s = wait_for("3 healthy tasks after start", lambda: healthy_in_proxy(world), 45, log)
    assert s["desired_state"] == "start"
    wait_for("the page after start", page, 15, log)
    running_hashes = container_hashes(world.cluster)
    assert len(running_hashes) == INSTANCES

    # 5. a broken field: validate names file:line and field, exits 1; what runs keeps serving
    text = world.instance_file.read_text()
    assert f'"instances": {INSTANCES},' in text
    broken = text.replace(f'"instances": {INSTANCES},', '"instances": "three",')
    world.instance_file.write_text(broken)
    line = 1 + broken.splitlines().index('    "instances": "three",')
    bad = world.run("validate", check=False)
    assert bad.returncode == 1, bad.stdout + bad.stderr
    assert f"{world.instance_file}:{line}: main: instances: expected an integer" in bad.stdout
    bad_json = json.loads(world.run("validate", "--json", check=False).stdout)
    [problem] = [p for p in bad_json["problems"] if p["severity"] == "error"]
    assert (problem["file"], problem["line"], problem["field"]) == (
        str(world.instance_file),
        line,
        "instances",
    )
    wait_for("deployd to see the broken file", lambda: "config error" in log.read_text(), 15, log)
    shown = world.run("status", "-s", SERVICE, "--json", check=False)
    assert shown.returncode == 1
    [entry] = json.loads(shown.stdout)
    assert (entry["instance"], entry["state"], entry["ok"]) == ("main", "Config error", False)
    assert f"{world.instance_file}:{line}: main: instances" in entry["why"]
    for _ in range(20):
        status, body = get(world.proxy_port)
        assert status == 200 and PAGE in body
        time.sleep(0.05)
    assert container_hashes(world.cluster) == running_hashes

    # 5b. a syntax error, a non-UTF-8 byte, an emptied file: the proxy keeps routing to the
    # running tasks (the agent shares deployd's last good config), nothing is stopped
    assert b'"GREETING": "' in text.encode()
    for label, content in (
        ("syntax error", text.encode() + b"main2: [unclosed\n"),
        ("non-UTF-8 byte", text.encode().replace(b'"GREETING": "', b'"GREETING": "\xe9', 1)),
        ("empty file", b""),
    ):
        world.instance_file.write_bytes(content)
        wait_for(
            f"status to name the {label}",
            lambda: world.run("status", "-s", SERVICE, "--json", check=False).returncode == 1,
            15,
            log,
        )
        deadline = time.monotonic() + 3  # past the watcher's quiet period and a few agent passes
        while time.monotonic() < deadline:
            status, body = get(world.proxy_port)
            assert status == 200 and PAGE in body, f"{label}: HTTP {status}"
            time.sleep(0.05)
        mesh = json.loads(world.run("mesh-status", "-s", SERVICE, "--json").stdout)
        assert [b["state"] for b in mesh["namespaces"][0]["backends"]] == ["up"] * INSTANCES, label
        assert container_hashes(world.cluster) == running_hashes, label
    world.instance_file.write_text(text)

    # 6. events --json shows the bounce, started and finished, for our instance
    events = json.loads(world.run("events", "-s", SERVICE, "--kind", "bounce", "--json").stdout)
    messages = [e["message"] for e in events if e["instance"] == "main"]
    assert any(
        f"crossover bounce to git {sha[:8]} config {new_hash[:8]} started" in m for m in messages
    ), messages
    assert any(f"bounce to git {sha[:8]} config {new_hash[:8]} finished" in m for m in messages), (
        messages
    )
    assert all(e["cluster"] == world.cluster for e in events)

    # 7. Ctrl-C stops paasport, not the services
    assert world.up is not None
    world.up.send_signal(signal.SIGINT)
    assert world.up.wait(20) == 0
    assert container_hashes(world.cluster) == running_hashes
    status, body = get(world.proxy_port)
    assert status == 200 and PAGE in body
