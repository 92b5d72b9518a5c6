"""Autoscaling with the default settings, on the real Docker engine and HAProxy.

One `paasport up` (autoscaler every 10 s, its default) runs a busybox httpd instance with
``min_instances: 1``, ``max_instances: 2`` and no ``autoscaling`` block: cpu at PaaSTA's setpoint
0.8, a 60 s moving average, the 300 s stabilization window. Its tasks (0.1 cpus) spin a busy
loop while a host file is absent. Each round measures:

- load arriving (the file removed) -> the second task healthy and up in this host's proxy;
- load leaving (the file back) -> the instance back at one task.

Prints each round and the medians.

    .venv/bin/python bench/autoscale.py [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

from e2e_world import E2E, SERVICE, NotYet, e2e_world, git, wait_for

BURNER = (
    "sh -c '(while :; do while [ ! -f /ctl/stop ]; do :; done; sleep 1; done) & "
    "exec httpd -f -p 8888 -h /www'"
)


def entry(world: E2E) -> dict[str, Any]:
    out = world.run("status", "-s", SERVICE, "-c", world.cluster, "--json", check=False)
    return dict(next(e for e in json.loads(out.stdout) if e.get("instance") == "main"))


def serving(world: E2E, count: int) -> Any:
    s = entry(world)
    up = [
        t
        for t in s["tasks"]
        if t.get("health") == "healthy"
        and all(v == "up" for v in (t.get("proxy") or {}).values())
        and t.get("proxy")
    ]
    if s["running"] == count and len(up) == count:
        return s
    return NotYet(f"{len(up)} serving, {s['running']} running: {s.get('autoscaling')}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=2)
    args = parser.parse_args()
    ups: list[float] = []
    downs: list[float] = []
    with tempfile.TemporaryDirectory(prefix="paasport-bench-") as tmp, e2e_world(Path(tmp)) as w:
        ctl = Path(tmp) / "ctl"
        ctl.mkdir()
        (ctl / "stop").write_text("")
        with w.config.open("a") as config:
            config.write(f"allowed_host_paths: [{json.dumps(str(ctl))}]\n")
        w.write_instance(instances=1, min_instances=1, max_instances=2, cpus=0.1, cmd=BURNER,
                         extra_volumes=[{"containerPath": "/ctl", "hostPath": str(ctl),
                                         "mode": "RO"}])  # fmt: skip
        sha = git(w.repo, "rev-parse", "HEAD")
        w.run("cook-image", "-s", SERVICE, "-c", sha)
        w.run("mark-for-deployment", "-s", SERVICE, "-l", f"{w.cluster}.main", "-c", sha)
        w.start_up()
        wait_for("one task serving", lambda: serving(w, 1), 120, w.up_log)
        for n in range(1, args.rounds + 1):
            (ctl / "stop").unlink()
            t0 = time.perf_counter()
            wait_for("the second task serving", lambda: serving(w, 2), 600, w.up_log)
            ups.append(time.perf_counter() - t0)
            (ctl / "stop").write_text("")
            t1 = time.perf_counter()
            wait_for("back at one task", lambda: serving(w, 1), 900, w.up_log)
            downs.append(time.perf_counter() - t1)
            print(
                f"round {n}: load arriving -> 2 tasks serving {ups[-1]:.1f} s; "
                f"load leaving -> 1 task {downs[-1]:.1f} s",
                flush=True,
            )
    print(
        f"median of {args.rounds}: scale-up to serving {statistics.median(ups):.1f} s, "
        f"scale-down {statistics.median(downs):.1f} s (defaults: pass 10 s, cpu setpoint "
        "0.8, 60 s average, 300 s stabilization window)"
    )


if __name__ == "__main__":
    main()
