"""Every verb that needs the Docker engine says in ONE line that it did not answer, and exits 1.

Runs ``python -m paasport`` as a user would, against a system config whose cluster names a
Docker socket nobody listens on (the real DockerEngine and image adapters, no daemon reached),
and against DOCKER_HOST pointing at a closed TCP port.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "soa-configs"


@pytest.fixture
def world(tmp_dir: Path) -> Path:
    """soa-configs (hello's git_url -> a real repo with a Dockerfile), state dir, system config."""
    soa = tmp_dir / "soa"
    shutil.copytree(EXAMPLES, soa, ignore=shutil.ignore_patterns("deployments.json"))
    repo = tmp_dir / "repo"
    repo.mkdir()
    (repo / "Dockerfile").write_text("FROM scratch\n")
    git = ["git", "-C", str(repo), "-c", "user.email=t@example.com", "-c", "user.name=t"]
    subprocess.run([*git, "init", "-q"], check=True, timeout=120)
    subprocess.run([*git, "add", "Dockerfile"], check=True, timeout=120)
    subprocess.run([*git, "commit", "-q", "-m", "one"], check=True, timeout=120)
    service_yaml = soa / "hello" / "service.yaml"
    service_yaml.write_text(
        service_yaml.read_text().replace("git_url: ../../repos/hello", f"git_url: {repo}")
    )
    (tmp_dir / "paasport.yaml").write_text(
        "clusters:\n"
        f"  local: {{engine: docker, docker_host: 'unix://{tmp_dir}/nobody.sock'}}\n"
        f"soa_dir: {soa}\n"
        f"state_dir: {tmp_dir / 'state'}\n"
    )
    return tmp_dir


VERBS = [
    ["status"],
    ["status", "-s", "hello", "-v"],
    ["logs", "-s", "hello"],
    ["down", "-y"],
    ["down", "-s", "hello", "-y"],
    ["up", "--metrics-listen", ""],
    ["deployd"],
    ["wait-for-deployment", "-s", "hello", "-l", "local.main", "-c", "abc", "-t", "30"],
    ["cook-image", "-s", "hello", "-c", "HEAD"],
]


def _run(argv: list[str], env: dict[str, str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "paasport", *argv],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
        check=False,
    )


@pytest.mark.parametrize("argv", VERBS, ids=[" ".join(v) for v in VERBS])
def test_unreachable_cluster_engine_is_one_line(world: Path, argv: list[str]) -> None:
    env = {**os.environ, "PAASPORT_CONFIG": str(world / "paasport.yaml")}
    env.pop("DOCKER_HOST", None)
    out = _run(argv, env)
    sock = f"unix://{world}/nobody.sock"
    assert out.returncode == 1, out.stderr
    lines = out.stderr.splitlines()
    assert len(lines) == 1, out.stderr
    prefix = "error: cluster local: the" if argv[0] != "cook-image" else "error: the"
    assert lines[0].startswith(f"{prefix} Docker engine at {sock} did not answer ("), lines[0]
    assert lines[0].endswith("No such file or directory); is dockerd running?"), lines[0]


@pytest.mark.parametrize("argv", [["status"], ["cook-image", "-s", "hello", "-c", "HEAD"]])
def test_docker_host_at_a_closed_port_is_one_line(world: Path, argv: list[str]) -> None:
    config = world / "paasport.yaml"
    config.write_text(
        config.read_text().replace(f", docker_host: 'unix://{world}/nobody.sock'", "")
    )
    env = {**os.environ, "PAASPORT_CONFIG": str(config), "DOCKER_HOST": "tcp://127.0.0.1:1"}
    out = _run(argv, env)
    assert out.returncode == 1, out.stderr
    assert out.stderr.endswith(
        "Docker engine at tcp://127.0.0.1:1 (DOCKER_HOST) did not answer (Connection refused); "
        "is dockerd running?\n"
    ), out.stderr
    assert len(out.stderr.splitlines()) == 1
