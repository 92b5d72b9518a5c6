"""engine.health against a real busybox httpd container: http, tcp and cmd (docker exec) probes,
and the HealthMonitor following a task from healthy to unhealthy."""

from __future__ import annotations

import socket
import subprocess
import threading
import time
import uuid
from collections.abc import Iterator
from dataclasses import dataclass, replace
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from paasport.engine.base import ExecResult
from paasport.engine.health import HealthMonitor, probe
from paasport.errors import EngineError
from paasport.types import HealthCheck, Task

TEST_LABEL = "paasport.test"


def docker(*args: str, timeout: float = 60) -> str:
    out = subprocess.run(
        ["docker", *args], capture_output=True, text=True, timeout=timeout, check=False
    )
    if out.returncode != 0:
        raise RuntimeError(f"docker {' '.join(args)} failed: {out.stderr.strip()}")
    return out.stdout.strip()


@dataclass(frozen=True)
class Container:
    name: str
    http_port: int  # 8888: busybox httpd
    idle_port: int  # 9999: published, nothing listens inside

    def task(self, port: int | None = None, state: str = "running") -> Task:
        return Task(
            task_id=self.name,
            service="health",
            instance="main",
            cluster="test",
            config_hash="h",
            git_sha="abc",
            state=state,  # type: ignore[arg-type]
            port=self.http_port if port is None else port,
            started_at=time.time(),
        )


def docker_exec(task_id: str, cmd: str, timeout: float) -> ExecResult:
    """What DockerEngine.exec_in_task does, through the CLI: ``/bin/sh -c cmd`` in the task."""
    try:
        out = subprocess.run(
            ["docker", "exec", task_id, "/bin/sh", "-c", cmd],
            capture_output=True,
            text=True,
            timeout=timeout,
            check=False,
        )
    except subprocess.TimeoutExpired as err:
        raise EngineError(f"`{cmd}` did not finish within {timeout:g}s") from err
    return ExecResult(out.returncode, out.stdout + out.stderr)


def host_port(name: str, container_port: int) -> int:
    mapping = docker("port", name, f"{container_port}/tcp")
    return int(mapping.splitlines()[0].rsplit(":", 1)[1])


@pytest.fixture
def container(busybox_image: str) -> Iterator[Container]:
    name = f"paasport-test-health-{uuid.uuid4().hex[:8]}"
    docker(
        "run", "-d", "--pull=never", "--name", name, "--label", f"{TEST_LABEL}=health",
        "-p", "127.0.0.1::8888", "-p", "127.0.0.1::9999", busybox_image,
    )  # fmt: skip
    try:
        box = Container(name, host_port(name, 8888), host_port(name, 9999))
        check = HealthCheck(mode="http", timeout_seconds=1)
        deadline = time.monotonic() + 30
        while not probe(box.task(), check).ok:  # wait for httpd to listen
            assert time.monotonic() < deadline, "busybox httpd never answered"
            time.sleep(0.05)
        yield box
    finally:
        subprocess.run(["docker", "rm", "-f", name], capture_output=True, check=False, timeout=120)


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
    return port  # closed again: nothing listens there


def test_http_probe(container: Container) -> None:
    ok = probe(container.task(), HealthCheck(mode="http", uri="/status", timeout_seconds=2))
    assert ok.ok
    assert ok.detail == f"HTTP 200 from 127.0.0.1:{container.http_port}/status"

    missing = probe(container.task(), HealthCheck(mode="http", uri="missing", timeout_seconds=2))
    assert not missing.ok
    assert missing.detail.startswith(f"HTTP 404 from 127.0.0.1:{container.http_port}/missing")

    nothing_behind = probe(
        container.task(port=container.idle_port), HealthCheck(mode="http", timeout_seconds=2)
    )
    assert not nothing_behind.ok
    assert f"127.0.0.1:{container.idle_port}/status" in nothing_behind.detail

    refused = probe(container.task(port=free_port()), HealthCheck(mode="http", timeout_seconds=2))
    assert not refused.ok
    assert refused.detail.startswith("connection refused by 127.0.0.1:")


def test_http_probe_timeout() -> None:
    with socket.socket() as listener:  # accepts into the backlog, never answers
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)
        port = listener.getsockname()[1]
        task = Task("t", "s", "i", "c", "h", "abc", state="running", port=port)
        result = probe(task, HealthCheck(mode="http", timeout_seconds=0.3))
    assert not result.ok
    assert result.detail == f"no answer from 127.0.0.1:{port}/status within 0.3s"


def test_tcp_probe(container: Container) -> None:
    check = HealthCheck(mode="tcp", timeout_seconds=2)
    ok = probe(container.task(), check)
    assert ok.ok, ok.detail
    # Docker's port proxy accepts, then hangs up because nothing listens inside on 9999
    idle = probe(container.task(port=container.idle_port), check)
    assert not idle.ok
    assert str(container.idle_port) in idle.detail
    refused = probe(container.task(port=free_port()), check)
    assert not refused.ok
    assert refused.detail.startswith("connection refused by 127.0.0.1:")


def test_cmd_probe(container: Container) -> None:
    def check(cmd: str) -> HealthCheck:
        return HealthCheck(mode="cmd", cmd=cmd, timeout_seconds=10)

    ok = probe(container.task(), check("test -f /www/status"), docker_exec)
    assert ok.ok, ok.detail
    failed = probe(container.task(), check("echo not ready >&2; exit 3"), docker_exec)
    assert not failed.ok
    assert failed.detail == "`echo not ready >&2; exit 3` exited 3: not ready"
    gone = probe(replace(container.task(), task_id="no-such-task"), check("true"), docker_exec)
    assert not gone.ok
    assert "exited" in gone.detail


def test_monitor_follows_a_real_task(container: Container) -> None:
    check = HealthCheck(
        mode="http",
        uri="/status",
        grace_period_seconds=0,
        interval_seconds=0.05,
        timeout_seconds=2,
        max_consecutive_failures=2,
    )
    monitor = HealthMonitor(docker_exec)
    task = replace(container.task(), healthcheck=check)
    assert monitor.update([task])[task.task_id].health == "healthy"

    docker("exec", container.name, "rm", "/www/status")
    deadline = time.monotonic() + 30
    while monitor.health_of(task.task_id)[0] != "unhealthy":
        assert time.monotonic() < deadline, monitor.health_of(task.task_id)
        time.sleep(0.06)
        monitor.update([task])
    _, detail = monitor.health_of(task.task_id)
    assert detail.startswith(f"HTTP 404 from 127.0.0.1:{container.http_port}/status")
    state = monitor.state_of(task.task_id)
    assert state is not None and state.consecutive_failures >= 2

    docker("exec", container.name, "sh", "-c", "echo ok > /www/status")
    deadline = time.monotonic() + 30
    while monitor.health_of(task.task_id)[0] != "healthy":
        assert time.monotonic() < deadline, monitor.health_of(task.task_id)
        time.sleep(0.06)
        monitor.update([task])


class _Handler(BaseHTTPRequestHandler):
    """Answers ``/<status>`` with that status and a body naming it (long for /500)."""

    def do_GET(self) -> None:
        status = int(self.path.strip("/").split("?")[0])
        body = (f"status {status} " * (40 if status == 500 else 1)).encode()
        self.send_response(status)
        if 300 <= status < 400:
            self.send_header("Location", "/200")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(scope="module")
def status_server() -> Iterator[int]:
    server = ThreadingHTTPServer(("127.0.0.1", 0), _Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server.server_address[1]
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


@pytest.mark.parametrize(
    ("status", "ok", "detail_tail"),
    [
        (200, True, ""),
        (204, True, ""),
        (301, True, ""),  # redirects are not followed: 3xx passes
        (399, True, ""),
        (404, False, ": status 404"),
        (503, False, ": status 503"),
        (500, False, ": " + ("status 500 " * 12)[:117] + "..."),
    ],
)
def test_http_status_codes(status_server: int, status: int, ok: bool, detail_tail: str) -> None:
    task = Task("t", "s", "i", "c", "h", "abc", state="running", port=status_server)
    result = probe(task, HealthCheck(mode="http", uri=f"/{status}", timeout_seconds=2))
    assert result.ok is ok
    assert result.detail == f"HTTP {status} from 127.0.0.1:{status_server}/{status}{detail_tail}"
