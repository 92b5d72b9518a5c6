"""Secrets on the real Docker engine: `SECRET(db_password)` in a service's env is a config error
naming the field until `paasport secret add` stores it (from standard input); the task starts
with the value in its environment (docker inspect), `secret update` bounces the instance to the
new value, and the value is in no output of any command, API endpoint or dashboard page, and in
no file paasport writes (soa-configs, the state dir with its event log, registry, HAProxy files
and the secrets themselves, encrypted, and `up`'s log).
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_world import E2E, PAASPORT, SERVICE, NotYet, e2e_world, git, healthy_in_proxy, wait_for

from discovery_support import free_port
from harness import running_containers

pytestmark = pytest.mark.integration

FIRST = "s3cr3t-VALUE-one-9f8e7d"
SECOND = "s3cr3t-VALUE-two-1a2b3c"


def secret(world: E2E, verb: str, value: str | None = None, *args: str) -> Any:
    return subprocess.run(
        [*PAASPORT, "secret", verb, "-s", SERVICE, *args, "--config", str(world.config)],
        input=value, capture_output=True, text=True, env=world.env, timeout=60, check=False,
    )  # fmt: skip


def task_env(cid: str) -> dict[str, str]:
    out = subprocess.run(["docker", "inspect", cid], capture_output=True, text=True, timeout=60,
                         check=True).stdout  # fmt: skip
    pairs = json.loads(out)[0]["Config"]["Env"]
    return dict(p.split("=", 1) for p in pairs)


def running_with(world: E2E, value: str) -> Any:
    ids = running_containers(world.cluster)
    envs = [task_env(c) for c in ids]
    ok = len(envs) == 3 and all(e.get("DB_PASSWORD") == value for e in envs)
    return (
        envs
        if ok
        else NotYet(f"{len(envs)} tasks, {[e.get('DB_PASSWORD', '-')[:6] for e in envs]}")
    )


def test_a_secret_is_used_rotated_and_never_shown(tmp_path: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="paasport-test-") as tmp, e2e_world(Path(tmp)) as w:
        w.write_instance(env={"GREETING": "hello", "DB_PASSWORD": "SECRET(db_password)"})
        outputs: list[str] = []

        def run(*args: str, check: bool = False) -> Any:
            out = w.run(*args, check=check)
            outputs.extend([out.stdout, out.stderr])
            return out

        missing = run("validate", "-s", SERVICE)
        assert missing.returncode == 1
        assert "env.DB_PASSWORD: 'db_password': no such secret of e2eweb on cluster" in (
            missing.stdout + missing.stderr)  # fmt: skip
        assert "instances-" in missing.stdout + missing.stderr  # the file (and line) is named

        added = secret(w, "add", FIRST + "\n", "-n", "db_password")
        assert added.returncode == 0, added.stderr
        outputs.extend([added.stdout, added.stderr])
        again = secret(w, "add", FIRST, "-n", "db_password")
        assert again.returncode != 0 and "exists" in again.stderr
        outputs.extend([again.stdout, again.stderr])
        listed = secret(w, "list", None, "--json")
        [entry] = json.loads(listed.stdout)
        assert entry["name"] == "db_password" and set(entry) == {
            "service", "cluster", "name", "version", "changed"}  # fmt: skip
        outputs.append(listed.stdout)
        assert run("validate", "-s", SERVICE).returncode == 0

        sha = git(w.repo, "rev-parse", "HEAD")
        run("cook-image", "-s", SERVICE, "-c", sha, check=True)
        run("mark-for-deployment", "-s", SERVICE, "-l", f"{w.cluster}.main", "-c", sha, check=True)
        port = free_port()
        w.start_up("--api-listen", f"127.0.0.1:{port}")
        wait_for("3 healthy tasks", lambda: healthy_in_proxy(w), 90, w.up_log)
        wait_for("the tasks with the secret", lambda: running_with(w, FIRST), 60, w.up_log)
        first_hash = json.loads(run("status", "-s", SERVICE, "--json").stdout)[0]["config_hash"]

        rotated = secret(w, "update", SECOND, "-n", "db_password")
        assert rotated.returncode == 0, rotated.stderr
        outputs.extend([rotated.stdout, rotated.stderr])
        wait_for("the bounce to the new value", lambda: running_with(w, SECOND), 90, w.up_log)
        wait_for("3 healthy again", lambda: healthy_in_proxy(w), 60, w.up_log)
        status = json.loads(run("status", "-s", SERVICE, "-v", "--json").stdout)[0]
        assert status["config_hash"] != first_hash  # the secret's version is in the hash

        for args in (("status", "-s", SERVICE, "-vv"), ("info", "-s", SERVICE, "--json"),
                     ("info", "-s", SERVICE), ("events", "-s", SERVICE, "--json", "-n", "1000"),
                     ("logs", "-s", SERVICE, "--json"), ("mesh-status", "-s", SERVICE, "--json"),
                     ("diff", "-s", SERVICE, "--json"), ("deploy-history", "-s", SERVICE),
                     ("list", "--json")):  # fmt: skip
            run(*args)
        api = f"http://127.0.0.1:{port}"
        for path in (f"/v1/services/{SERVICE}/main/status", f"/v1/services/{SERVICE}",
                     "/v1/events?limit=1000", f"/v1/services/{SERVICE}/logs", "/v1/diff",
                     f"/services/{SERVICE}", "/"):  # fmt: skip
            outputs.append(httpx.get(api + path, timeout=30).text)

        said = "\n".join(outputs)
        assert "db_password" in said and "SECRET(db_password)" in said  # the name, yes
        for value in (FIRST, SECOND):
            assert value not in said, "a secret's value in an output"
            for path in Path(tmp).rglob("*"):
                if path.is_file() and path.stat().st_size < 64 * 1024 * 1024:
                    assert value.encode() not in path.read_bytes(), f"{value[:12]}... in {path}"
