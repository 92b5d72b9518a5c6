"""A ramped crossover bounce through the real HAProxy: `bounce_ramp: [10, 50, 100]` gives the
new version 10% of the traffic for a step, then 50%, while the old tasks stay; after the last
step the old tasks leave and the new version takes everything.
"""

from __future__ import annotations

import json
import tempfile
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
from e2e_world import E2E, SERVICE, NotYet, e2e_world, wait_for
from rollback_world import commit_version
from rollback_world import split as split_at

pytestmark = pytest.mark.integration

GREET_CGI = '#!/bin/sh\necho "Content-Type: text/plain"\necho ""\necho "$GREETING"\n'
STEP = 12.0  # seconds per ramp step: room to measure each share


def write_instance(world: E2E, greeting: str) -> None:
    world.instance_file.write_text(json.dumps({"main": {
        "instances": 3, "cpus": 0.1, "mem": 32, "cmd": "httpd -f -p 8888 -h /www",
        "healthcheck_grace_period_seconds": 5, "healthcheck_interval_seconds": 1,
        "healthcheck_timeout_seconds": 1, "drain_timeout_seconds": 3,
        "bounce_method": "crossover", "bounce_ramp": [10, 50, 100],
        "bounce_ramp_step_seconds": STEP, "env": {"GREETING": greeting},
    }}, indent=2))  # fmt: skip


def split(world: E2E, n: int = 5000) -> Counter[str]:
    return split_at(world.proxy_port, n)


def new_share(world: E2E, low: float, high: float) -> Any:
    seen = split(world, 300)
    share = seen["hola"] / sum(seen.values())
    return seen if low <= share <= high else NotYet(f"{share:.0%} new: {dict(seen)}")


def _serving(world: E2E, greeting: str) -> Any:
    out = world.run("status", "-s", SERVICE, "-c", world.cluster, "--json", check=False)
    status = json.loads(out.stdout or "[{}]")
    if status[0].get("healthy") != 3 or len(status[0].get("app_versions") or ()) != 1:
        return NotYet(f"{status[0].get('healthy')} healthy")
    seen = split(world, 30)
    return seen if seen == Counter({greeting: 30}) else NotYet(dict(seen))


def test_a_ramped_bounce_moves_traffic_in_steps(tmp_path: Path) -> None:
    with tempfile.TemporaryDirectory(prefix="paasport-test-") as tmp, e2e_world(Path(tmp)) as w:
        sha = commit_version(w, "greets", cgi=GREET_CGI)
        write_instance(w, "hello")
        w.run("mark-for-deployment", "-s", SERVICE, "-l", f"{w.cluster}.main", "-c", sha)
        w.start_up()
        wait_for("hello from 3 tasks", lambda: _serving(w, "hello"), 90, w.up_log)
        write_instance(w, "hola")
        # the first step: about 10% to the new version (3 old tasks stay)
        first = wait_for("10% on the new version", lambda: new_share(w, 0.04, 0.16), STEP,
                         w.up_log)  # fmt: skip
        assert set(first) == {"hello", "hola"}
        out = w.run("status", "-s", SERVICE, "-c", w.cluster, "--json", check=False)
        status = json.loads(out.stdout)[0]
        assert len(status["app_versions"]) == 2 and status["bounce"]["in_progress"]
        # the second step: about half
        wait_for("50% on the new version", lambda: new_share(w, 0.40, 0.60), STEP + 5,
                 w.up_log)  # fmt: skip
        # then the old tasks leave: everything on the new version
        started = time.monotonic()
        wait_for("all on the new version", lambda: new_share(w, 1.0, 1.0), STEP + 30, w.up_log)
        assert time.monotonic() - started < STEP + 30

        def finished() -> list[Any] | NotYet:  # deployd says so once the old tasks are gone
            out = w.run("events", "-s", SERVICE, "--kind", "bounce", "--json").stdout
            said = [e for e in json.loads(out) if e["message"].endswith(" finished")]
            return said or NotYet("no bounce finished event yet")

        wait_for("the bounce's finished event", finished, 15, w.up_log)
