"""`paasport local-run` on the real Docker engine: a detached local-run of the deployed instance
starts with the very env, command and limits of the cluster's task (docker inspect of both)
but is never taken for a cluster task; --healthcheck-only exits 0 for a healthy image and 1 for
one whose health check fails; --build serves the working tree's uncommitted change; Ctrl-C
stops and removes the task.
"""

from __future__ import annotations

import json
import signal
import subprocess
import tempfile
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_world import E2E, PAASPORT, SERVICE, NotYet, e2e_world, git, healthy_in_proxy, wait_for

from harness import running_containers

pytestmark = pytest.mark.integration


def local_run(world: E2E, *args: str, cwd: Path | None = None) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [*PAASPORT, "local-run", "-s", SERVICE, "-c", world.cluster, "-i", "main", *args,
         "--config", str(world.config)],
        capture_output=True, text=True, env=world.env, timeout=120, check=False, cwd=cwd,
    )  # fmt: skip


def inspect(cid: str) -> dict[str, Any]:
    out = subprocess.run(["docker", "inspect", cid], capture_output=True, text=True, timeout=60,
                         check=True).stdout  # fmt: skip
    return dict(json.loads(out)[0])


def local_runs() -> list[str]:
    return subprocess.run(
        ["docker", "ps", "-aq", "--filter", "label=paasport.local_run"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.split()  # fmt: skip


@pytest.fixture(scope="module")
def world() -> Iterator[E2E]:
    with tempfile.TemporaryDirectory(prefix="paasport-test-") as tmp, e2e_world(Path(tmp)) as w:
        sha = git(w.repo, "rev-parse", "HEAD")
        w.run("cook-image", "-s", SERVICE, "-c", sha)
        w.run("mark-for-deployment", "-s", SERVICE, "-l", f"{w.cluster}.main", "-c", sha)
        w.start_up()
        wait_for("3 healthy tasks", lambda: healthy_in_proxy(w), 90, w.up_log)
        yield w
        for cid in local_runs():
            if SERVICE in inspect(cid)["Config"]["Labels"].get("paasport.local_run", ""):
                subprocess.run(["docker", "rm", "-f", cid], capture_output=True, timeout=60)


def test_a_local_run_is_the_clusters_task(world: E2E) -> None:
    out = local_run(world, "-d")
    assert out.returncode == 0, out.stderr
    cid = out.stdout.strip()
    try:
        assert "what " in out.stderr and "runs: git " in out.stderr, out.stderr
        mine = inspect(cid)
        [deployed, *_] = running_containers(world.cluster)
        theirs = inspect(deployed)
        assert sorted(mine["Config"]["Env"]) == sorted(theirs["Config"]["Env"])
        assert mine["Config"]["Cmd"] == theirs["Config"]["Cmd"]
        assert mine["Config"]["Image"] == theirs["Config"]["Image"]
        for key in ("Memory", "NanoCpus"):
            assert mine["HostConfig"][key] == theirs["HostConfig"][key]
        assert "paasport.cluster" not in mine["Config"]["Labels"]  # never a cluster task
        time.sleep(2)
        status = json.loads(world.run("status", "-s", SERVICE, "-c", world.cluster,
                                      "--json").stdout)  # fmt: skip
        assert cid not in {t["id"] for t in status[0]["tasks"]} and status[0]["running"] == 3
        port = mine["NetworkSettings"]["Ports"]["8888/tcp"][0]["HostPort"]
        with urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=10) as r:
            assert b"hello from the end-to-end test" in r.read()
    finally:
        subprocess.run(["docker", "rm", "-f", cid], capture_output=True, timeout=60)


def test_healthcheck_only_says_0_or_1(world: E2E) -> None:
    ok = local_run(world, "--healthcheck-only")
    assert ok.returncode == 0, ok.stderr
    assert "healthy: HTTP 200" in ok.stderr and "removed paasport-local-run-" in ok.stderr
    (world.repo / "www" / "status").unlink()  # the next build answers 404 on /status
    bad = local_run(world, "--healthcheck-only", "--build", "--repo-dir", str(world.repo))
    (world.repo / "www" / "status").write_text("ok\n")
    assert bad.returncode == 1, bad.stderr
    assert "uncommitted files included" in bad.stderr
    assert "health check failed: HTTP 404" in bad.stderr, bad.stderr
    assert not [c for c in local_runs()
                if "e2eweb" in inspect(c)["Config"]["Labels"]["paasport.local_run"]]  # fmt: skip


def test_build_serves_the_working_tree_and_ctrl_c_removes_it(world: E2E) -> None:
    (world.repo / "www" / "index.html").write_text("not committed yet\n")
    proc = subprocess.Popen(
        [*PAASPORT, "local-run", "-s", SERVICE, "-c", world.cluster, "-i", "main", "--build",
         "--repo-dir", str(world.repo), "--config", str(world.config)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=world.env,
        start_new_session=True,
    )  # fmt: skip
    lines: list[str] = []

    def healthy() -> Any:
        assert proc.stderr is not None
        line = proc.stderr.readline()
        lines.append(line)
        return line if line.startswith("healthy: ") else NotYet("".join(lines[-3:]))

    try:
        said = wait_for("the local-run healthy", healthy, 90, world.up_log)
        url = said.rsplit("try ", 1)[1].strip()
        with urllib.request.urlopen(url.replace("/status", "/"), timeout=10) as r:
            assert r.read() == b"not committed yet\n"
        assert len(local_runs()) >= 1
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
        git(world.repo, "checkout", "--", "www/index.html")
    assert proc.stderr is not None and proc.stdout is not None
    rest = proc.stderr.read()
    proc.stderr.close()
    proc.stdout.close()
    assert "removed paasport-local-run-" in rest
    assert not [c for c in local_runs()
                if "e2eweb" in inspect(c)["Config"]["Labels"]["paasport.local_run"]]  # fmt: skip
