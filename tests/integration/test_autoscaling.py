"""Autoscaling on the real Docker engine: an instance whose tasks burn their CPU (busy loop in
busybox sh while a host file is absent) scales up from 1 to 2 within a few passes, without a
bounce; once the load leaves it scales back after its stabilization window; an override holds
a range until it expires by itself. ``up`` runs the autoscaler every 2 s here.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_world import E2E, SERVICE, NotYet, e2e_world, git, wait_for

pytestmark = pytest.mark.integration

# busy whenever /ctl/stop is absent (one core of a 0.1-cpu task: a CPU fraction near 1), serving
BURNER = (
    "sh -c '(while :; do while [ ! -f /ctl/stop ]; do :; done; sleep 1; done) & "
    "exec httpd -f -p 8888 -h /www'"
)


def status(world: E2E) -> dict[str, Any]:
    out = world.run("status", "-s", SERVICE, "-c", world.cluster, "--json", check=False)
    [entry] = [e for e in json.loads(out.stdout) if e.get("instance") == "main"]
    return dict(entry)


def hashes(world: E2E) -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "--filter", f"label=paasport.cluster={world.cluster}",
         "--format", '{{.Label "paasport.config_hash"}}'],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    return sorted(out.split())


def autoscale_events(world: E2E) -> list[dict[str, Any]]:
    out = world.run("events", "-s", SERVICE, "--kind", "autoscale", "--json")
    return list(json.loads(out.stdout))


@pytest.fixture(scope="module")
def world() -> Iterator[tuple[E2E, Path]]:
    with tempfile.TemporaryDirectory(prefix="paasport-test-") as tmp, e2e_world(Path(tmp)) as w:
        ctl = Path(tmp) / "ctl"
        ctl.mkdir()
        with w.config.open("a") as config:
            config.write(f"allowed_host_paths: [{json.dumps(str(ctl))}]\n")
        w.write_instance(
            instances=1, min_instances=1, max_instances=2, cpus=0.1, cmd=BURNER,
            extra_volumes=[{"containerPath": "/ctl", "hostPath": str(ctl), "mode": "RO"}],
            autoscaling={
                "metrics_providers": [{"type": "cpu", "setpoint": 0.5,
                                       "moving_average_window_seconds": 6}],
                "scaledown_policies": {"stabilizationWindowSeconds": 10},
            },
        )  # fmt: skip
        sha = git(w.repo, "rev-parse", "HEAD")
        w.run("cook-image", "-s", SERVICE, "-c", sha)
        w.run("mark-for-deployment", "-s", SERVICE, "-l", f"{w.cluster}.main", "-c", sha)
        w.start_up("--autoscale-seconds", "2")
        yield w, ctl


def test_cpu_load_scales_up_without_a_bounce(world: tuple[E2E, Path]) -> None:
    w, _ = world

    def two_healthy() -> dict[str, Any] | NotYet:
        s = status(w)
        if s["healthy"] == 2 and s["expected"] == 2:
            return s
        return NotYet(f"{s['healthy']}/{s['expected']} healthy: {s.get('autoscaling')}")

    s = wait_for("the burning instance at 2 healthy tasks", two_healthy, 90, w.up_log)
    auto = s["autoscaling"]
    assert auto["target"] == 2 and auto["max_instances"] == 2 and auto["metric"] > 0.5, auto
    assert "1 -> 2" in auto["last_decision"], auto
    [up] = [e for e in autoscale_events(w) if e["data"].get("to") == 2]
    assert up["message"].startswith("cpu ") and "vs setpoint 0.50" in up["message"], up
    assert len(set(hashes(w))) == 1  # one app version: scaled, never bounced
    text = w.run("status", "-s", SERVICE, "-c", w.cluster).stdout
    assert "autoscaling: cpu" in text and "1..2" in text, text


def test_load_leaving_scales_back_after_the_window(world: tuple[E2E, Path]) -> None:
    w, ctl = world
    (ctl / "stop").write_text("")
    left = time.monotonic()

    def one_task() -> dict[str, Any] | NotYet:
        s = status(w)
        if s["expected"] == 1 and s["running"] == 1:
            return s
        return NotYet(f"{s['running']} running, {s['expected']} expected: {s.get('autoscaling')}")

    s = wait_for("a scale-down to 1", one_task, 90, w.up_log)
    took = time.monotonic() - left
    assert took >= 10, f"scaled down after {took:.1f}s, inside the 10 s stabilization window"
    [down] = [e for e in autoscale_events(w) if e["data"].get("to") == 1]
    assert down["message"].endswith("2 -> 1") and down["data"]["metric"] < 0.5, down
    assert s["autoscaling"]["target"] == 1 and s["ok"], s


def test_an_override_holds_its_range_then_expires(world: tuple[E2E, Path]) -> None:
    w, _ = world
    out = w.run("autoscale-override", "-s", SERVICE, "-i", "main", "--min", "2", "--max", "2",
                "--until", "15s", "--json")  # fmt: skip
    assert json.loads(out.stdout)["min"] == 2

    def at(count: int) -> Any:
        def probe() -> dict[str, Any] | NotYet:
            s = status(w)
            if s["expected"] == count and s["running"] == count:
                return s
            return NotYet(f"{s['running']} running, {s['expected']} expected")

        return probe

    held = wait_for("2 tasks under the override", at(2), 60, w.up_log)
    assert held["autoscaling"]["override"]["max"] == 2, held["autoscaling"]
    wait_for("back to 1 once the override expired", at(1), 90, w.up_log)
    assert len(set(hashes(w))) == 1
    said = [e["message"] for e in autoscale_events(w)]
    assert any("override 2..2 until" in m for m in said), said
    assert any("override 2...2 expired" in m for m in said), said
    bad = w.run("autoscale-override", "-s", SERVICE, "-i", "main", "--min", "3", "--max", "2",
                "--until", "1h", check=False)  # fmt: skip
    assert bad.returncode != 0 and bad.stderr.startswith("error: expected 0 <= --min <= --max")
