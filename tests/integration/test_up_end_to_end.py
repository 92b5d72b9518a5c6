"""End to end, as a user runs it: cook-image, mark-for-deployment, `paasport up` as a subprocess,
then curl through HAProxy, status/mesh-status/events, a crossover bounce under load, stop/start
and a broken field, all through the `paasport` command with a paasport.yaml of the test's own.

Everything lives under a temporary folder and a unique cluster (``e2e-<uuid8>``); the test stops
the `up` it started (SIGINT by PID), runs `paasport down`, stops the HAProxy `up` started under
its state_dir (by the pid in its pidfile) and removes its containers and image.
"""

from __future__ import annotations

import json
import signal
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_world import (
    E2E,
    INSTANCES,
    PAGE,
    SERVICE,
    Load,
    container_hashes,
    e2e_world,
    git,
    healthy_in_proxy,
    wait_for,
)

from discovery_support import get


@pytest.fixture
def world(tmp_dir: Path) -> Iterator[E2E]:
    with e2e_world(tmp_dir) as w:
        yield w


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


def test_up_end_to_end(world: E2E) -> None:
    log = world.up_log
    sha = git(world.repo, "rev-parse", "HEAD")
    cooked = world.run("cook-image", "-s", SERVICE, "-c", sha, "--json")
    assert json.loads(cooked.stdout)["image"] == f"services-{SERVICE}:paasta-{sha}"
    world.run("mark-for-deployment", "-s", SERVICE, "-l", f"{world.cluster}.main", "-c", sha)

    world.start_up()

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
