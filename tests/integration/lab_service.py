"""One paasport service on the 3-host lab, driven as a user would (tests and bench/multihost.py).

``LabService`` writes a service's soa-configs into a soa folder the lab's deployd and agents
read, commits versions in a git repo of its own, pushes each version's image (the lab's base
image under the build's name) from lab1, marks it, and reads status, mesh-status and the
Swarm services back through ``paasport`` on the lab's hosts. ``prefix`` runs every paasport
command with another config (``env PAASPORT_CONFIG=... PAASPORT_STATE_DIR=...``): the bench's
one-host cluster on lab1. ``Load`` is tests/integration/lab_load.py inside one host.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from harness import commit_version
from lab import Lab

LOAD_SCRIPT = Path(__file__).with_name("lab_load.py")
# busybox httpd ignores SIGTERM as PID 1: sh traps it and exits, so a stop takes no grace
CMD = (
    'mkdir -p /www && echo "web $PAASTA_GIT_SHA" > /www/index.html && echo ok > /www/status;'
    " trap 'exit 0' TERM; httpd -f -p 8888 -h /www & wait"
)


def instances_yaml(instances: int, cpus: float = 0.1, extra: str = "") -> str:
    return f"""\
main:
  cpus: {cpus}
  mem: 32
  instances: {instances}
  cmd: {json.dumps(CMD)}
  container_port: 8888
  healthcheck_grace_period_seconds: 3
  healthcheck_interval_seconds: 1
  bounce_method: crossover
{extra}"""


def smartstack_yaml(proxy_port: int) -> str:
    return f"""\
main:
  proxy_port: {proxy_port}
  mode: http
  healthcheck_uri: /status
  timeout_connect_ms: 500
  timeout_server_ms: 2000
"""


@dataclass
class LabService:
    lab: Lab
    root: Path  # logs and load results
    repo: Path
    soa_dir: Path
    service: str = "web"
    cluster: str = "lab"
    instances: int = 6
    proxy_port: int = 19301
    prefix: tuple[str, ...] = ()
    agents: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    deployds: dict[str, subprocess.Popen[bytes]] = field(default_factory=dict)
    version: int = 0

    @property
    def group(self) -> str:
        return f"{self.cluster}.main"

    @property
    def folder(self) -> Path:
        return self.soa_dir / self.service

    def write(self, instances_text: str | None = None) -> None:
        """The service's soa-configs (instances-<cluster>.yaml: ``instances_text`` or the
        default for ``self.instances``)."""
        self.folder.mkdir(parents=True, exist_ok=True)
        (self.folder / "service.yaml").write_text(f"git_url: {self.repo}\n")
        (self.folder / "deploy.yaml").write_text(f"pipeline:\n  - step: {self.group}\n")
        (self.folder / "smartstack.yaml").write_text(smartstack_yaml(self.proxy_port))
        text = instances_text if instances_text is not None else instances_yaml(self.instances)
        (self.folder / f"instances-{self.cluster}.yaml").write_text(text)

    def paasport(self, host: str, *args: str, check: bool = True) -> str:
        return self.lab.exec(host, *self.prefix, "paasport", *args, timeout=60, check=check).stdout

    def status(self) -> dict[str, Any]:
        args = ("status", "-s", self.service, "-i", "main", "--json")
        [entry] = json.loads(self.paasport("lab1", *args, check=False))
        return dict(entry)

    def _spawn(self, host: str, what: str, *args: str) -> subprocess.Popen[bytes]:
        log = self.root / f"{self.cluster}-{host}-{what}.log"
        return self.lab.spawn(host, *self.prefix, "paasport", what, *args, log=log)

    def start_agent(self, host: str) -> None:
        self.agents[host] = self._spawn(host, "agent", "--stop-proxy")

    def start_deployd(self, host: str, *flags: str) -> subprocess.Popen[bytes]:
        """``flags``: more deployd options (e.g. ``--autoscale-seconds 2``)."""
        proc = self._spawn(
            host, "deployd", "--full-pass-seconds", "5", "--stop-grace-seconds", "2", *flags
        )
        self.deployds[host] = proc
        return proc

    def new_version(self) -> str:
        """Commit the next version, push its image (the base image under the build's name)."""
        self.version += 1
        return self.push(commit_version(self.repo, self.version))

    def push(self, sha: str) -> str:
        image = f"{self.lab.registry}/services-{self.service}:paasta-{sha}"
        self.lab.exec("lab1", "docker", "tag", self.lab.base_image, image)
        self.lab.exec("lab1", "docker", "push", "-q", image, timeout=120)
        return sha

    def mark(self, sha: str) -> None:
        args = ("-s", self.service, "-l", self.group, "-c", sha)
        self.paasport("lab1", "mark-for-deployment", *args)

    def services(self) -> list[str]:
        """Names of the Swarm services of this service (one per task)."""
        out = self.lab.exec(
            "lab1", "docker", "service", "ls", "-q", "--filter",
            f"label=paasport.service={self.service}", "--format", "{{.Name}}",
        )  # fmt: skip
        return out.stdout.split()

    def backends(self, host: str) -> list[dict[str, Any]]:
        """The service's backends in ``host``'s HAProxy (mesh-status on that host)."""
        out = self.paasport(host, "mesh-status", "-s", self.service, "--json", check=False)
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

    def wait(self, what: str, probe: Callable[[], Any], timeout: float, every: float = 0.5) -> Any:
        deadline = time.monotonic() + timeout
        last: Any = None
        while time.monotonic() < deadline:
            try:
                last = probe()
            except (OSError, ValueError, KeyError, subprocess.SubprocessError) as err:
                last = err
            if last and not isinstance(last, Exception):
                return last
            time.sleep(every)
        pytest.fail(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}\n"
                    f"{self.log_tail()}")  # fmt: skip

    def converged(self, sha: str) -> dict[str, Any] | None:
        """The status entry once ``sha`` runs all its tasks healthy and nothing else, each up
        in lab1's proxy; else None."""
        st = self.status()
        tasks = [t for t in st["tasks"] if t["state"] == "running"]
        if st["git_sha"] != sha or len(tasks) != self.instances or len(st["app_versions"]) != 1:
            return None
        if not all(t["health"] == "healthy" and t["new"] for t in tasks):
            return None
        up = {b["task_id"] for b in self.backends("lab1") if b["state"] == "up"}
        return st if {t["id"] for t in tasks} == up else None


@dataclass
class Load:
    """lab_load.py running inside ``host`` against the service's proxy port."""

    svc: LabService
    host: str = "lab1"
    name: str = "load"
    result: dict[str, Any] = field(default_factory=dict)

    def __enter__(self) -> Load:
        self.out = self.svc.root / f"{self.name}.json"
        self.stop = self.svc.root / f"{self.name}.stop"
        for f in (self.out, self.stop):
            f.unlink(missing_ok=True)
        self.proc = self.svc.lab.spawn(
            self.host, sys.executable, str(LOAD_SCRIPT), str(self.svc.proxy_port), str(self.out),
            str(self.stop), log=self.svc.root / f"{self.name}-stdout.txt",
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
    """How many running tasks of a status entry each node runs."""
    counts: dict[str, int] = {}
    for t in st["tasks"]:
        if t["state"] == "running":
            counts[t["node"]] = counts.get(t["node"], 0) + 1
    return counts
