"""Automatic rollback against doing it by hand, on the real Docker engine and HAProxy.

One `paasport up` runs a busybox httpd service (3 tasks, crossover bounce) whose
/cgi-bin/app a client calls through the proxy without pause. Each round marks a bad version,
then measures from the first failing signal to the previous version serving all traffic again:

- ``500s``: the bad version passes its health check but answers 500 on /cgi-bin/app. The first
  failing signal is the client's first 500; "all traffic again" is its last failed request.
  ``auto``: deploy.yaml's ``auto_rollback: true`` (default settings); ``by hand``: no
  auto_rollback, and `paasport rollback -c GOOD` is run the moment the first 500 arrives (a
  person with a zero reaction time: the fastest a human can be).
- ``crash loop``: the bad version's tasks exit 1 at once (the old ones keep serving: crossover
  never stops them). From the first crash event to the rollback's deploy tag and the good
  version alone running again.

Prints each round and the medians, and the requests that failed meanwhile.

    .venv/bin/python bench/rollback.py [--rounds 3]
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

from e2e_world import E2E, SERVICE, NotYet, e2e_world, healthy_in_proxy, wait_for
from rollback_world import BAD_CGI, Traffic, commit_version


def deploy_yaml(world: E2E, auto: bool) -> None:
    extra = "    auto_rollback: true\n" if auto else ""
    (world.soa / SERVICE / "deploy.yaml").write_text(
        f"pipeline:\n  - step: {world.cluster}.main\n{extra}"
    )


def only(world: E2E, sha: str) -> Any:
    s = world.status()
    ok = s["git_sha"] == sha and s["healthy"] == 3 and len(s["app_versions"]) == 1
    return s if ok else NotYet(f"{s['git_sha'][:8]}: {s['healthy']} healthy")


def mark(world: E2E, sha: str) -> None:
    world.run("mark-for-deployment", "-s", SERVICE, "-l", f"{world.cluster}.main", "-c", sha,
              "--force")  # fmt: skip


def round_500s(world: E2E, good: str, n: int, auto: bool) -> tuple[float, int]:
    deploy_yaml(world, auto)
    time.sleep(1)  # the store reads deploy.yaml again
    bad = commit_version(world, f"500s {n} {'auto' if auto else 'hand'}", cgi=BAD_CGI)
    with Traffic(world.proxy_port) as traffic:
        time.sleep(1)
        mark(world, bad)
        first = wait_for("the first 500", lambda: traffic.failed_at[:1], 60, world.up_log)[0]
        if not auto:
            world.run("rollback", "-s", SERVICE, "-l", f"{world.cluster}.main", "-c", good)
        wait_for("the good version alone", lambda: only(world, good), 90, world.up_log)
        time.sleep(2)  # nothing fails after the last old task went
    last = traffic.failed_at[-1]
    return last - first, len(traffic.failed_at)


def round_crash(world: E2E, good: str, n: int) -> float:
    deploy_yaml(world, True)
    time.sleep(1)
    bad = commit_version(world, f"crashes {n}", www="COPY Dockerfile /www\n")
    mark(world, bad)

    def first_crash() -> Any:
        out = world.run("events", "-s", SERVICE, "--kind", "crash", "--json", "-n", "20")
        crashes = [e for e in json.loads(out.stdout) if e["data"].get("git_sha") == bad]
        return crashes[:1] or NotYet("no crash yet")

    crash = wait_for("the first crash", first_crash, 60, world.up_log)[0]
    wait_for("the good version alone", lambda: only(world, good), 90, world.up_log)
    return time.time() - crash["time"]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--verbose", action="store_true", help="paasport up --verbose")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="paasport-bench-") as tmp, e2e_world(Path(tmp)) as w:
        deploy_yaml(w, True)
        good = commit_version(w, "good")
        w.run("mark-for-deployment", "-s", SERVICE, "-l", f"{w.cluster}.main", "-c", good)
        w.start_up(*(["--verbose"] if args.verbose else []))
        wait_for("3 healthy tasks", lambda: healthy_in_proxy(w), 90, w.up_log)
        wait_for("good serving", lambda: only(w, good), 90, w.up_log)
        results: dict[str, list[tuple[float, int]]] = {"auto": [], "by hand": []}
        for n in range(args.rounds):
            for how in ("auto", "by hand"):
                seconds, failed = round_500s(w, good, n, how == "auto")
                results[how].append((seconds, failed))
                print(f"500s, {how:7} round {n + 1}: first 500 -> all good again {seconds:5.2f} s, "
                      f"{failed} request(s) failed", flush=True)  # fmt: skip
        crash = []
        for n in range(args.rounds):
            seconds = round_crash(w, good, n)
            crash.append(seconds)
            print(f"crash loop, round {n + 1}: first crash -> good alone {seconds:5.2f} s",
                  flush=True)  # fmt: skip
        print()
        for how, rows in results.items():
            secs = statistics.median(r[0] for r in rows)
            failed = statistics.median(r[1] for r in rows)
            print(f"500s {how:7}: median {secs:5.2f} s to all good again (target < 30 s), "
                  f"median {failed:.0f} failed requests")  # fmt: skip
        print(f"crash loop auto: median {statistics.median(crash):5.2f} s from the first crash to "
              "the good version alone (0 failed requests: the old tasks kept serving)")  # fmt: skip


if __name__ == "__main__":
    main()
