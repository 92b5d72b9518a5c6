"""Helpers of the Postgres add-on's integration tests: a world (e2e_world's service on a
throwaway cluster) with the add-on in its service.yaml, the tasks' env read back with
``docker inspect``, and waits on the tasks and the proxy."""

from __future__ import annotations

import json
import subprocess
from pathlib import Path
from typing import Any

from e2e_world import E2E, SERVICE, NotYet

from harness import running_containers

ADDON_SERVICE_YAML = (
    "description: end-to-end test service\ngit_url: {repo}\naddons: {{postgres: {{}}}}\n"
)


def with_addon(world: E2E, system_extra: str = "") -> None:
    """The add-on in the service's service.yaml; ``system_extra`` appended to paasport.yaml."""
    (world.soa / SERVICE / "service.yaml").write_text(ADDON_SERVICE_YAML.format(repo=world.repo))
    if system_extra:
        world.config.write_text(world.config.read_text() + system_extra)


def task_env(cid: str) -> dict[str, str]:
    out = subprocess.run(
        ["docker", "inspect", cid], capture_output=True, text=True, timeout=60, check=True
    ).stdout
    return dict(p.split("=", 1) for p in json.loads(out)[0]["Config"]["Env"])


def envs(world: E2E) -> list[dict[str, str]]:
    return [task_env(c) for c in running_containers(world.cluster)]


def healthy(world: E2E, count: int, user: str | None = None) -> Any:
    """The status entry once ``count`` tasks are healthy and up in the proxy and (``user``)
    every running task has PGUSER ``user`` (None: none has a PGUSER)."""
    s = world.status()
    tasks = s["tasks"]
    ok = (
        s["ok"]
        and s["healthy"] == count
        and len(tasks) == count
        and all(t["proxy"] == {f"{SERVICE}.main": "up"} for t in tasks)
    )
    users = sorted({e.get("PGUSER", "-") for e in envs(world)})
    if ok and users == [user or "-"]:
        return s
    return NotYet(f"healthy {s['healthy']}/{count}, {len(tasks)} tasks, PGUSER {users}")


def outputs_hold(texts: list[str], root: Path, secret: str) -> list[str]:
    """Where ``secret`` shows: the outputs collected, or files under ``root``."""
    found = [f"output {i}" for i, t in enumerate(texts) if secret in t]
    for path in root.rglob("*"):
        small = path.is_file() and not path.is_symlink() and path.stat().st_size < 2**26
        if small and secret.encode() in path.read_bytes():
            found.append(str(path))
    return found
