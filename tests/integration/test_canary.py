"""Canary weights through the real HAProxy: a canary instance registered in main's namespace
with `canary_weight_percent: 10` gets 10% +- 3% of 5,000 requests (its tasks answer with their
PAASTA_INSTANCE), set through the runtime API: changing it to 50 moves the split without a
reload of HAProxy and without a bounce.
"""

from __future__ import annotations

import http.client
import json
import tempfile
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest
from e2e_world import E2E, SERVICE, NotYet, e2e_world, wait_for
from rollback_world import commit_version

pytestmark = pytest.mark.integration

WHO_CGI = '#!/bin/sh\necho "Content-Type: text/plain"\necho ""\necho "$PAASTA_INSTANCE"\n'
REQUESTS = 5000


def write_instances(world: E2E, percent: float) -> None:
    common = {
        "cpus": 0.1, "mem": 32, "cmd": "httpd -f -p 8888 -h /www",
        "healthcheck_grace_period_seconds": 5, "healthcheck_interval_seconds": 1,
        "healthcheck_timeout_seconds": 1, "deploy_group": f"{world.cluster}.main",
        "drain_timeout_seconds": 5,
    }  # fmt: skip
    world.instance_file.write_text(json.dumps({
        "main": {**common, "instances": 3},
        "canary": {**common, "instances": 1, "registrations": [f"{SERVICE}.main"],
                   "canary_weight_percent": percent},
    }, indent=2))  # fmt: skip


def ask(port: int) -> str:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", "/cgi-bin/app")
        response = conn.getresponse()
        return response.read().decode().strip() if response.status == 200 else str(response.status)
    finally:
        conn.close()


def split(world: E2E, n: int = REQUESTS) -> Counter[str]:
    with ThreadPoolExecutor(4) as pool:
        return Counter(pool.map(lambda _: ask(world.proxy_port), range(n)))


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
        sha = commit_version(w, "who", cgi=WHO_CGI)
        write_instances(w, 10)
        w.run("mark-for-deployment", "-s", SERVICE, "-l", f"{w.cluster}.main", "-c", sha)
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
