"""status and mesh-status tell the truth about this host's real HAProxy and registry (issue 9):
a killed HAProxy makes an instance in discovery "Proxy down" and mesh-status exit 1; an
unreachable ZooKeeper is named in status's why line and fails mesh-status."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from paasport.discovery.haproxy import HAProxyProcess
from paasport.discovery.sqlite_registry import SqliteRegistry
from paasport.types import Namespace

from discovery_support import free_port, free_proxy_port

pytestmark = pytest.mark.integration


def write_world(tmp: Path, registry: str = "") -> tuple[Path, int]:
    port = free_proxy_port()
    svc = tmp / "soa" / "web"
    svc.mkdir(parents=True)
    (svc / "service.yaml").write_text("description: x\n")
    (svc / "deploy.yaml").write_text("pipeline:\n  - step: local.main\n")
    (svc / "instances-local.yaml").write_text("main:\n  instances: 1\n")
    (svc / "smartstack.yaml").write_text(f"main:\n  proxy_port: {port}\n  mode: http\n")
    dep = {"local.main": {"docker_image": "paasport-test-view:none", "git_sha": "a" * 40}}
    (svc / "deployments.json").write_text(json.dumps({"v2": {"deployments": dep, "controls": {}}}))
    config = tmp / "paasport.yaml"
    config.write_text(f"soa_dir: {tmp / 'soa'}\nstate_dir: {tmp / 'state'}\n{registry}")
    return config, port


def run(config: Path, *argv: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PAASPORT_CONFIG": str(config)}
    return subprocess.run(
        [sys.executable, "-m", "paasport", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


@contextlib.contextmanager
def haproxy(state: Path, port: int) -> Iterator[HAProxyProcess]:
    proxy = HAProxyProcess((state / "haproxy").resolve())
    try:
        proxy.apply([Namespace("web", "main", port, healthcheck_uri="/status")], [])
        yield proxy
    finally:
        proxy.stop()


def kill_hard(proxy: HAProxyProcess) -> None:
    """kill -9 of the master and the worker of the HAProxy this test started."""
    pids = [p for p in (proxy.master_pid(), proxy.worker_pid()) if p]
    for pid in pids:
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and proxy.running():
        time.sleep(0.05)
    assert not proxy.running()


def web_main(config: Path) -> tuple[int, dict[str, object]]:
    out = run(config, "status", "-s", "web", "--json")
    [entry] = json.loads(out.stdout)
    return out.returncode, entry


def test_a_killed_haproxy_makes_status_proxy_down_and_mesh_status_fail(tmp_dir: Path) -> None:
    config, port = write_world(tmp_dir)
    SqliteRegistry(tmp_dir / "state" / "registry.sqlite").close()
    with haproxy(tmp_dir / "state", port) as proxy:
        _, alive = web_main(config)
        assert alive["state"] != "Proxy down", alive
        mesh = run(config, "mesh-status", "-s", "web", "--json")
        assert mesh.returncode == 0, mesh.stdout + mesh.stderr
        assert json.loads(mesh.stdout)["error"] is None

        kill_hard(proxy)
        code, dead = web_main(config)
        assert code == 1
        sock = (tmp_dir / "state" / "haproxy" / "admin.sock").resolve()
        assert dead["state"] == "Proxy down", dead
        assert dead["ok"] is False
        assert str(dead["why"]).startswith(f"this host's HAProxy does not answer on {sock}: ")
        text = run(config, "status", "-s", "web")
        assert text.returncode == 1
        assert "Proxy down" in text.stdout
        for argv in (["--json"], []):
            mesh = run(config, "mesh-status", "-s", "web", *argv)
            assert mesh.returncode == 1, mesh.stdout + mesh.stderr
        assert json.loads(run(config, "mesh-status", "-s", "web", "--json").stdout)["proxy_error"]


def test_an_unreachable_zookeeper_is_named_by_status_and_fails_mesh_status(
    tmp_dir: Path,
) -> None:
    closed = free_port()  # nothing listens there
    hosts = f"127.0.0.1:{closed}"
    config, port = write_world(
        tmp_dir, f"discovery:\n  registry: zookeeper\n  zookeeper_hosts: '{hosts}'\n"
    )
    with haproxy(tmp_dir / "state", port):
        code, entry = web_main(config)
        assert code == 1
        assert str(entry["why"]).startswith(f"registry unreachable: zookeeper {hosts}"), entry
        mesh = run(config, "mesh-status", "-s", "web", "--json")
        assert mesh.returncode == 1
        shown = json.loads(mesh.stdout)
        assert shown["proxy_error"] is None
        assert str(shown["registry_error"]).startswith(f"zookeeper {hosts}")
