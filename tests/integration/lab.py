"""The 3-host lab (scripts/lab.sh) as a pytest session fixture, and how tests act on its hosts.

``lab`` brings a lab up once per session (``PAASPORT_TEST_LAB_ID``, default 7, so it never
touches a lab a user brought up with ``make lab``), without its agents and deployd (tests start
their own with ``spawn``), and removes all of it at the end. Every call has a deadline.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LAB_SH = ROOT / "scripts" / "lab.sh"
HOSTS = ("lab1", "lab2", "lab3")
SPAWNED: list[subprocess.Popen[bytes]] = []  # stopped at the end of the session at the latest


def lab_sh(lab_id: int, *args: str, timeout: float = 180.0) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "LAB_ID": str(lab_id)}
    return subprocess.run(
        ["bash", str(LAB_SH), *args], env=env, capture_output=True, text=True, timeout=timeout
    )


@dataclass(frozen=True)
class Lab:
    lab_id: int
    config: Path
    soa_dir: Path
    hosts: tuple[str, ...]
    address: Mapping[str, str]
    base_image: str
    registry: str
    zk_hosts: str
    facts: Mapping[str, str]

    @property
    def manager_socket(self) -> str:
        return self.socket("lab1")

    def socket(self, host: str) -> str:
        return self.facts[f"LAB_{host}_DOCKER_HOST"]

    def netns(self, host: str) -> str:
        return self.facts[f"LAB_{host}_NETNS"]

    def env(self, host: str) -> dict[str, str]:
        """What ``lab.sh exec`` sets on ``host``."""
        return {
            "PAASPORT_CONFIG": str(self.config),
            "PAASPORT_STATE_DIR": self.facts[f"LAB_{host}_STATE_DIR"],
            "DOCKER_HOST": self.socket(host),
        }

    def _cmd(self, host: str, cmd: tuple[str, ...]) -> list[str]:
        return ["bash", str(LAB_SH), "exec", host, "--", *cmd]

    def _env(self) -> dict[str, str]:
        return {**os.environ, "LAB_ID": str(self.lab_id)}

    def exec(
        self, host: str, *cmd: str, timeout: float = 60.0, check: bool = True
    ) -> subprocess.CompletedProcess[str]:
        """Run ``cmd`` on ``host`` and wait (bounded); ``check``: fail the test on exit != 0."""
        out = subprocess.run(
            self._cmd(host, cmd), env=self._env(), capture_output=True, text=True, timeout=timeout
        )
        if check and out.returncode != 0:
            pytest.fail(
                f"on {host}: {' '.join(cmd)} exited {out.returncode}\n{out.stdout}\n{out.stderr}"
            )
        return out

    def spawn(self, host: str, *cmd: str, log: Path) -> subprocess.Popen[bytes]:
        """Start a long-running ``cmd`` on ``host`` (own process group; the caller stops it)."""
        log.parent.mkdir(parents=True, exist_ok=True)
        with log.open("ab") as out:
            proc = subprocess.Popen(
                self._cmd(host, cmd),
                env=self._env(),
                stdout=out,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        SPAWNED.append(proc)
        return proc

    def get(self, host: str, port: int, path: str = "/", timeout: float = 2.0) -> tuple[int, str]:
        """One HTTP GET to 127.0.0.1:port from inside ``host``: (status, body); (0, why) when
        nothing answered."""
        try:
            out = subprocess.run(
                ["nsenter", f"--net={self.netns(host)}", "curl", "-s", "-m", str(timeout),
                 "-w", "\n%{http_code}", f"http://127.0.0.1:{port}{path}"],
                capture_output=True, text=True, timeout=timeout + 5,
            )  # fmt: skip
        except subprocess.TimeoutExpired:
            return 0, "curl did not end"
        body, _, code = out.stdout.rpartition("\n")
        status = int(code) if code.isdigit() else 0
        return status, body if status else (out.stderr or f"curl exited {out.returncode}")

    def fail(self, host: str, what: str) -> None:
        """``docker`` (its whole docker stack dies), ``network`` (its link down), ``zookeeper``."""
        out = lab_sh(self.lab_id, "fail", host, what, timeout=60)
        assert out.returncode == 0, out.stderr

    def heal(self, host: str) -> None:
        """Undo what was failed on ``host`` and wait until it is a Ready node again."""
        out = lab_sh(self.lab_id, "heal", host, timeout=120)
        assert out.returncode == 0, out.stderr


def parse_env(text: str) -> dict[str, str]:
    facts = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep:
            facts[key] = value.strip('"')
    return facts


def lab_from(lab_id: int) -> Lab:
    out = lab_sh(lab_id, "env", timeout=30)
    assert out.returncode == 0, out.stderr
    facts = parse_env(out.stdout)
    hosts = tuple(facts["LAB_HOSTS"].split())
    return Lab(
        lab_id=lab_id,
        config=Path(facts["LAB_CONFIG"]),
        soa_dir=Path(facts["LAB_SOA_DIR"]),
        hosts=hosts,
        address={h: facts[f"LAB_{h}_ADDR"] for h in hosts},
        base_image=facts["LAB_BASE_IMAGE"],
        registry=facts["LAB_REGISTRY"],
        zk_hosts=facts["LAB_ZOOKEEPER"],
        facts=facts,
    )


def lab_leftovers(lab_id: int) -> list[str]:
    """What of lab ``lab_id`` is still on this machine (namespaces, route, mounts, folders)."""
    left = []
    netns = subprocess.run(["ip", "netns", "list"], capture_output=True, text=True, timeout=10)
    left += [f"netns {n.split()[0]}" for n in netns.stdout.splitlines() if f"pplab{lab_id}-" in n]
    routes = subprocess.run(["ip", "route"], capture_output=True, text=True, timeout=10).stdout
    left += [f"route {r}" for r in routes.splitlines() if f"10.251.{lab_id}.0/24" in r]
    for line in Path("/proc/mounts").read_text().splitlines():
        if f"/paasport-lab/{lab_id}/" in line.split()[1] + "/":
            left.append(f"mount {line.split()[1]}")
    for folder in (Path(f"/run/paasport-lab/{lab_id}"), Path(f"/var/lib/paasport-lab/{lab_id}")):
        if folder.exists():
            left.append(f"folder {folder}")
    return left


def stop_spawned(grace: float = 10.0) -> None:
    """Stop what tests spawned on the lab and left running (their process groups)."""
    alive = [p for p in SPAWNED if p.poll() is None]
    for proc in alive:
        with contextlib.suppress(ProcessLookupError):
            os.killpg(proc.pid, signal.SIGTERM)
    for proc in alive:
        try:
            proc.wait(timeout=grace)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    SPAWNED.clear()


@pytest.fixture(scope="session")
def lab() -> Iterator[Lab]:
    lab_id = int(os.environ.get("PAASPORT_TEST_LAB_ID", "7"))
    lab_sh(lab_id, "down", timeout=120)  # what a killed run left behind
    up = lab_sh(lab_id, "up", "--no-platform", timeout=300)
    if up.returncode != 0:
        lab_sh(lab_id, "down", timeout=120)
        pytest.fail(f"the lab did not come up (scripts/lab.sh up):\n{up.stderr[-3000:]}")
    try:
        yield lab_from(lab_id)
    finally:
        stop_spawned()
        down = lab_sh(lab_id, "down", timeout=180)
        assert down.returncode == 0, down.stderr
        assert lab_leftovers(lab_id) == []
