"""Benchmark: load+validate a generated soa-configs tree, and ``paasport validate -s ONE`` cold.

Usage: ``.venv/bin/python bench/config_load.py [N]`` (default 2000). Generates N services x 3
clusters in a temporary directory with its own generator, then prints services/second for
``load_tree`` over the whole tree and the wall time of a fresh ``paasport validate -s`` process,
with a cold and a warm smartstack facts cache (config.facts_cache). Targets (2 cores): 2,000
services in under 5 s; one service as a fresh process 10x faster than paasta-tools (1.47 s).
"""

from __future__ import annotations

import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from count_arg import count_arg

CLUSTERS = ("local", "prod-east", "prod-west")

SERVICE_YAML = """\
description: generated service {i}
git_url: git@git.example.com:services/{name}.git
env:
  SERVICE_INDEX: "{i}"
"""
DEPLOY_YAML = """\
pipeline:
  - step: itest
  - step: push-to-registry
  - step: local.canary
  - parallel:
    - step: prod-east.main
    - step: prod-west.main
  - step: local.main
"""
SMARTSTACK_YAML = """\
main:
  proxy_port: {port}
  mode: http
  healthcheck_uri: /status
  timeout_server_ms: 2000
internal:
  proxy_port: null
  mode: tcp
"""
MONITORING_YAML = """\
team: team-{team}
page: {page}
runbook: y/runbook-{name}
alert_after: 5m
realert_every: 1h
slack_channels: ["#team-{team}"]
"""
INSTANCES_YAML = """\
_base: &base
  cpus: 0.25
  mem: 256
  disk: 512
  container_port: 8888
  healthcheck_grace_period_seconds: 30
  env:
    LOG_LEVEL: info
main:
  <<: *base
  instances: {n}
  cmd: ./run-server --port 8888
  deploy_group: "{{cluster}}.main"
canary:
  <<: *base
  instances: 1
  cmd: ./run-server --port 8888 --canary
  deploy_group: local.canary
  registrations: ["{name}.main"]
  monitoring:
    alert_after: 15m
worker:
  <<: *base
  cpus: 0.5
  args: ["./run-worker", "--queue", "jobs"]
  deploy_group: "{{cluster}}.main"
  drain_method: noop
"""


def generate(root: Path, n: int) -> None:
    """Write n services x 3 clusters; proxy ports stay unique inside 19000-21000 while n <= 2000."""
    for i in range(n):
        name = f"svc{i:05d}"
        d = root / name
        d.mkdir()
        (d / "service.yaml").write_text(SERVICE_YAML.format(i=i, name=name))
        (d / "deploy.yaml").write_text(DEPLOY_YAML)
        port = 19000 + (i % 2001)
        (d / "smartstack.yaml").write_text(SMARTSTACK_YAML.format(port=port))
        (d / "monitoring.yaml").write_text(
            MONITORING_YAML.format(team=i % 37, page=str(i % 2 == 0).lower(), name=name)
        )
        for c in CLUSTERS:
            (d / f"instances-{c}.yaml").write_text(INSTANCES_YAML.format(n=1 + i % 5, name=name))
    # a checkout's files are older than the 2 s in which the facts cache does not trust a key
    past = time.time_ns() - 3600 * 10**9
    for path in root.rglob("*"):
        if path.is_file():
            os.utime(path, ns=(past, past))


def main() -> int:
    n = count_arg(__doc__, "services", 2000, "services to generate (x 3 clusters)")
    sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
    from paasport.config.system import ClusterConfig, SystemConfig
    from paasport.config.tree import load_tree

    with tempfile.TemporaryDirectory(prefix="paasport-bench-") as tmp:
        root = Path(tmp) / "soa-configs"
        root.mkdir()
        t0 = time.perf_counter()
        generate(root, n)
        print(
            f"generated {n} services x {len(CLUSTERS)} clusters in {time.perf_counter() - t0:.2f} s"
        )
        system = SystemConfig(
            clusters={c: ClusterConfig(c) for c in CLUSTERS}, soa_dir=root, state_dir=root
        )
        runs = []
        for _ in range(3):
            t0 = time.perf_counter()
            tree = load_tree(root, system=system)
            runs.append(time.perf_counter() - t0)
        best = min(runs)
        print(
            f"load+validate whole tree: {len(tree.services)} services, {len(tree.instances)} "
            f"instances, {len(tree.errors)} errors: best {best:.2f} s of {len(runs)} "
            f"-> {n / best:,.0f} services/s (target: {n} in < 5 s)"
        )
        config = Path(tmp) / "paasport.yaml"
        state = Path(tmp) / "state"
        state.mkdir()
        config.write_text(
            "clusters:\n"
            + "".join(f"  {c}: {{engine: docker}}\n" for c in CLUSTERS)
            + f"state_dir: {state}\n"
        )
        paasport = Path(sys.executable).with_name("paasport")
        cmd = [str(paasport), "validate", "-s", "svc00007", "--soa-dir", str(root)]
        env = {**os.environ, "PAASPORT_CONFIG": str(config)}
        for label, cold in (("cold cache", True), ("warm cache", False)):
            walls = []
            for _ in range(7):
                if cold:
                    shutil.rmtree(state / ".paasport-cache", ignore_errors=True)
                t0 = time.perf_counter()
                out = subprocess.run(
                    cmd, capture_output=True, text=True, env=env, check=False, timeout=120
                )
                walls.append(time.perf_counter() - t0)
                if out.returncode != 0:
                    print(out.stdout, out.stderr)
                    return 1
            print(
                f"paasport validate -s ONE (fresh process, tree of {n}, {label}): median "
                f"{statistics.median(walls):.3f} s, best {min(walls):.3f} s "
                f"(paasta-tools 1.47 s; target <= 0.147 s, 10x)"
            )
    return 0


if __name__ == "__main__":
    sys.exit(main())
