"""Canary weights through the real HAProxy: a canary instance (its own deploy group,
registered in main's namespace) with `canary_weight_percent: 10` gets 10% +- 3% of 5,000
requests (its tasks answer with their PAASTA_INSTANCE), set through the runtime API: changing
it to 50 moves the split without a reload of HAProxy and without a bounce. A canary version
that answers 500 is compared with the rest while traffic flows (a `canary` event, the status
`traffic` line: worse) and, with auto_rollback on its step, rolled back.
"""

from __future__ import annotations

import json
import tempfile
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_world import E2E, SERVICE, NotYet, e2e_world, wait_for
from rollback_world import BAD_CGI, commit_version
from rollback_world import split as split_at

pytestmark = pytest.mark.integration

WHO_CGI = '#!/bin/sh\necho "Content-Type: text/plain"\necho ""\necho "$PAASTA_INSTANCE"\n'
REQUESTS = 5000


def write_instances(world: E2E, percent: float) -> None:
    common = {
        "cpus": 0.1, "mem": 32, "cmd": "httpd -f -p 8888 -h /www",
        "healthcheck_grace_period_seconds": 5, "healthcheck_interval_seconds": 1,
        "healthcheck_timeout_seconds": 1, "drain_timeout_seconds": 5,
    }  # fmt: skip
    world.instance_file.write_text(json.dumps({
        "main": {**common, "instances": 3, "deploy_group": f"{world.cluster}.main"},
        "canary": {**common, "instances": 1, "registrations": [f"{SERVICE}.main"],
                   "canary_weight_percent": percent, "deploy_group": f"{world.cluster}.canary"},
    }, indent=2))  # fmt: skip


def split(world: E2E, n: int = REQUESTS) -> Counter[str]:
    return split_at(world.proxy_port, n)


def backends_up(world: E2E, want: int) -> Any:
    out = world.run("mesh-status", "-s", SERVICE, "--json", check=False)
    doc = json.loads(out.stdout)
    [ns] = [n for n in doc["namespaces"] if n["namespace"] == f"{SERVICE}.main"]
    up = [b for b in ns["backends"] if b["state"] == "up"]
    return up if len(up) == want else NotYet(f"{len(up)} backends up")


def weights(world: E2E) -> list[int]:
    doc = json.loads(world.run("mesh-status", "-s", SERVICE, "--json").stdout)
    [ns] = [n for n in doc["namespaces"] if n["namespace"] == f"{SERVICE}.main"]
    return sorted(b["weight"] for b in ns["backends"] if b["state"] == "up")


def proxy_reloads(world: E2E) -> int:
    out = world.run("events", "--kind", "proxy", "--json", "-n", "1000")
    return sum(1 for e in json.loads(out.stdout) if "reload" in e["message"])


@pytest.fixture(scope="module")
def world() -> Iterator[E2E]:
    with tempfile.TemporaryDirectory(prefix="paasport-test-") as tmp, e2e_world(Path(tmp)) as w:
        (w.soa / SERVICE / "deploy.yaml").write_text(
            f"pipeline:\n  - step: {w.cluster}.canary\n    auto_rollback: true\n"
            f"  - step: {w.cluster}.main\n"
        )
        sha = commit_version(w, "who", cgi=WHO_CGI)
        write_instances(w, 10)
        for group in ("canary", "main"):
            w.run("mark-for-deployment", "-s", SERVICE, "-l", f"{w.cluster}.{group}", "-c", sha)
        w.start_up()
        wait_for("4 backends up", lambda: backends_up(w, 4), 90, w.up_log)
        yield w


def test_a_canary_at_10_percent_gets_10_percent(world: E2E) -> None:
    assert weights(world) == [33, 100, 100, 100]
    seen = split(world)
    assert set(seen) == {"main", "canary"}, seen
    share = seen["canary"] / REQUESTS
    assert 0.07 <= share <= 0.13, seen


def test_a_new_weight_moves_traffic_without_a_reload_or_a_bounce(world: E2E) -> None:
    reloads = proxy_reloads(world)
    hashes = json.loads(world.run("status", "-s", SERVICE, "-c", world.cluster, "--json").stdout)
    before = {v["instance"]: v["config_hash"] for v in hashes}
    write_instances(world, 50)
    # 50% of 3 tasks' 300 is 300 for the canary, scaled with the rest to HAProxy's 256
    wait_for("the canary's new weight",
             lambda: weights(world) == [85, 85, 85, 256] or NotYet(weights(world)), 30,
             world.up_log)  # fmt: skip
    seen = split(world, 2000)
    assert 0.45 <= seen["canary"] / 2000 <= 0.55, seen
    assert proxy_reloads(world) == reloads
    after = json.loads(world.run("status", "-s", SERVICE, "-c", world.cluster, "--json").stdout)
    assert {v["instance"]: v["config_hash"] for v in after} == before  # no bounce


def test_a_worse_canary_is_said_and_rolled_back(world: E2E) -> None:
    write_instances(world, 20)
    wait_for("the canary at 20%", lambda: weights(world) == [75, 100, 100, 100] or
             NotYet(weights(world)), 30, world.up_log)  # fmt: skip
    good = json.loads(world.run("get-latest-deployment", "-s", SERVICE, "-l",
                                f"{world.cluster}.canary", "--json").stdout)["git_sha"]  # fmt: skip
    bad = commit_version(world, "canary answers 500", cgi=BAD_CGI)
    world.run("mark-for-deployment", "-s", SERVICE, "-l", f"{world.cluster}.canary", "-c", bad)

    def rolled_back() -> Any:
        seen = split(world, 400)
        out = world.run("events", "-s", SERVICE, "--kind", "deploy", "--json", "-n", "20")
        done = [e for e in json.loads(out.stdout) if e["data"].get("outcome") == "rolled_back"]
        return done or NotYet(f"not rolled back yet; answers {dict(seen)}")

    [event] = wait_for("the canary rolled back", rolled_back, 120, world.up_log)
    assert event["instance"] == "canary" and event["data"]["rolled_back_to"] == good
    assert event["data"]["why"] == "error rate"
    assert "canary " in event["message"] and " of the rest: worse" in event["message"]
    said = json.loads(world.run("events", "-s", SERVICE, "--kind", "canary", "--json").stdout)
    worse = [e for e in said if e["data"]["git_sha"] == bad and e["data"]["worse"]]
    assert worse and worse[0]["message"].startswith(f"canary git {bad[:8]} "), said
    status = json.loads(world.run("status", "-s", SERVICE, "-c", world.cluster, "-i", "canary",
                                  "--json").stdout)  # fmt: skip
    assert status[0]["traffic"] and status[0]["traffic"].endswith(": worse"), status
    text = world.run("status", "-s", SERVICE, "-c", world.cluster, "-i", "canary").stdout
    assert "traffic: canary git " in text
