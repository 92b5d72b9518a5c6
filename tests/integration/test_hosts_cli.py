"""``paasport hosts`` and the hosts in ``status`` on the real local Docker engine (one host)."""

from __future__ import annotations

import json
import subprocess

from test_reconciler import World, instance_yaml, world  # noqa: F401  (the fixture)


def _docker_name() -> str:
    out = subprocess.run(
        ["docker", "info", "--format", "{{.Name}}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    )
    return out.stdout.strip()


def _run(w: World, *argv: str) -> subprocess.CompletedProcess[str]:
    verb, *rest = argv
    return subprocess.run(
        w.cli(verb, *rest), capture_output=True, text=True, timeout=120, check=False
    )


def test_hosts_lists_this_host_and_status_shows_each_tasks_host(world: World) -> None:  # noqa: F811
    world.write_service(instance_yaml(instances=2))
    world.start_deployd()
    world.wait_for("first deploy", lambda: world.converged(2))
    name = _docker_name()

    shown = _run(world, "hosts", "--json")
    assert shown.returncode == 0, shown.stderr
    view = json.loads(shown.stdout)
    assert view["cluster"] == world.cluster and view["down"] == 0
    (host,) = view["hosts"]
    assert (host["node"], host["address"], host["state"], host["down"]) == (
        name, "127.0.0.1", "ready", False,
    )  # fmt: skip
    assert host["tasks"] >= 2 and host["cpus"] > 0 and host["mem_mb"] > 0
    assert host["cpus_reserved"] >= 0.2  # our two tasks reserve 0.1 cpus each
    assert host["cpus_free"] == round(host["cpus"] - host["cpus_reserved"], 3)

    table = _run(world, "list-hosts")
    assert table.returncode == 0, table.stderr
    assert name in table.stdout and "127.0.0.1" in table.stdout and "ready" in table.stdout

    status = _run(world, "status", "-s", "web", "--json")
    (entry,) = json.loads(status.stdout)
    assert status.returncode == 0, entry
    tasks = entry["tasks"]
    assert len(tasks) == 2
    assert all(t["node"] == name and t["host_down"] is False for t in tasks), tasks
    assert all(t["status_message"] == "" for t in tasks), tasks
    verbose = _run(world, "status", "-s", "web", "-v")
    for t in tasks:
        assert f"{name} {t['host']}:{t['port']}" in verbose.stdout, verbose.stdout
