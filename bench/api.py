"""The API under load and the dashboard's reaction time, on the real Docker engine.

One `paasport up` (a busybox httpd service with 3 tasks, plus a service of 100 instances that
are configured but not deployed, so the catalog holds 101 instances) serves the API on a free
port. wrk (-t2 -c20, 20 concurrent connections) then drives, for ``--seconds`` each:

- ``GET /v1/services/{service}/main/status`` (one instance: engine, health, proxy, registry)
- ``GET /v1/services`` (the catalog of 101 instances)
- ``GET /v1/status`` (every instance of the cluster: 101 entries), for reference

and prints p50/p99 latency and requests per second (targets: status p99 < 50 ms, the catalog
p99 < 300 ms). Then the service page is opened in Chromium (Playwright) and one task is killed
with ``docker kill``, ``--kills`` times: the time from the kill to the page no longer listing
that task as running (target < 1 s; the page updates from the event stream, it does not poll).

    .venv/bin/python bench/api.py [--seconds 10] [--kills 5]
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

from e2e_world import SERVICE, e2e_world, git, healthy_in_proxy, wait_for

from discovery_support import free_port

CATALOG_SERVICE = "catalogbench"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]  # fmt: skip


def write_catalog(soa: Path, cluster: str, n: int = 100) -> None:
    svc = soa / CATALOG_SERVICE
    svc.mkdir()
    (svc / "service.yaml").write_text("description: 100 configured instances, none deployed\n")
    (svc / "deploy.yaml").write_text(f"pipeline:\n  - step: {cluster}.catalog\n")
    lines = ["_base: &base", "  instances: 1", "  cpus: 0.01", "  mem: 32",
             f"  deploy_group: {cluster}.catalog"]  # fmt: skip
    lines += [f"i{i:03d}:\n  <<: *base" for i in range(n)]
    (svc / f"instances-{cluster}.yaml").write_text("\n".join(lines) + "\n")


def to_ms(text: str) -> float:
    m = re.fullmatch(r"([\d.]+)(us|ms|s)", text)
    if not m:
        raise ValueError(f"wrk latency {text!r}")
    return float(m.group(1)) * {"us": 0.001, "ms": 1.0, "s": 1000.0}[m.group(2)]


def wrk(url: str, seconds: int) -> dict[str, float]:
    out = subprocess.run(
        ["wrk", "-t2", "-c20", f"-d{seconds}s", "--timeout", "5s", "--latency", url],
        capture_output=True, text=True, check=True, timeout=seconds + 60,
    ).stdout  # fmt: skip
    latency = dict(re.findall(r"^\s+(50|99)%\s+(\S+)$", out, re.MULTILINE))
    rps = re.search(r"Requests/sec:\s+([\d.]+)", out)
    errors = re.search(r"Non-2xx or 3xx responses: (\d+)", out)
    socket_errors = re.search(r"Socket errors: (.*)", out)
    assert rps and "50" in latency and "99" in latency, out
    return {
        "p50_ms": to_ms(latency["50"]),
        "p99_ms": to_ms(latency["99"]),
        "rps": float(rps.group(1)),
        "non_2xx": float(errors.group(1)) if errors else 0.0,
        "socket_errors": 0.0 if socket_errors is None else 1.0,
    }


def running_ids(cluster: str) -> list[str]:
    out = subprocess.run(
        ["docker", "ps", "-q", "--no-trunc", "--filter", f"label=paasport.cluster={cluster}"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    return out.split()


def dashboard_reaction(url: str, cluster: str, kills: int, log: Path) -> list[float]:
    """Seconds from ``docker kill`` of one task to the page no longer showing it running."""
    from playwright.sync_api import sync_playwright

    times = []
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path="/usr/bin/chromium", args=CHROMIUM_ARGS)
        page = browser.new_page()
        page.set_default_timeout(30_000)
        page.goto(f"{url}/services/{SERVICE}")
        page.wait_for_selector("#live-state.ok")
        for _ in range(kills):
            wait_for(
                "3 running tasks on the page",
                lambda: len(page.eval_on_selector_all(
                    "tr.task", "rows => rows.filter(r => r.cells[2].textContent === 'running')"
                    ".map(r => r.dataset.taskId)")) == 3 and len(running_ids(cluster)) == 3,
                60,
                log,
            )  # fmt: skip
            victim = running_ids(cluster)[0]
            started = time.perf_counter()
            subprocess.run(["docker", "kill", victim], capture_output=True, check=True, timeout=30)
            page.wait_for_function(
                """id => ![...document.querySelectorAll('tr.task')].some(
                    r => r.dataset.taskId === id && r.cells[2].textContent === 'running')""",
                arg=victim,
                polling=20,
            )
            times.append(time.perf_counter() - started)
        browser.close()
    return times


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=10)
    parser.add_argument("--kills", type=int, default=5)
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="paasport-bench-") as tmp, e2e_world(Path(tmp)) as w:
        write_catalog(w.soa, w.cluster)
        sha = git(w.repo, "rev-parse", "HEAD")
        w.run("cook-image", "-s", SERVICE, "-c", sha)
        w.run("mark-for-deployment", "-s", SERVICE, "-l", f"{w.cluster}.main", "-c", sha)
        port = free_port()
        w.start_up("--api-listen", f"127.0.0.1:{port}")
        url = f"http://127.0.0.1:{port}"
        wait_for("3 healthy tasks", lambda: healthy_in_proxy(w), 90, w.up_log)
        catalog = json.loads(w.run("list", "--json").stdout)
        instances = sum(len(s["instances"]) for s in catalog)
        print(f"cluster {w.cluster}: {instances} instances configured, 3 tasks running")
        print(f"wrk -t2 -c20 -d{args.seconds}s (20 concurrent clients) against {url}")
        for label, path, target in (
            ("status of one instance", f"/v1/services/{SERVICE}/main/status", 50),
            (f"catalog, {instances} instances", "/v1/services", 300),
            (f"status of all {instances} instances", "/v1/status", None),
        ):
            r = wrk(url + path, args.seconds)
            goal = f" (target p99 < {target} ms)" if target else ""
            print(
                f"  GET {path:<42} p50 {r['p50_ms']:7.1f} ms  p99 {r['p99_ms']:7.1f} ms  "
                f"{r['rps']:7.0f} req/s  non-2xx {r['non_2xx']:.0f}{goal}  [{label}]"
            )
        times = dashboard_reaction(url, w.cluster, args.kills, w.up_log)
        print(
            f"task killed -> dashboard shows it, {len(times)} kills: median "
            f"{statistics.median(times):.2f} s, max {max(times):.2f} s (target < 1 s)"
        )


if __name__ == "__main__":
    main()
