"""deployd against the real Docker engine: deploys, every bounce method, replacement of killed
tasks, stop/start, removal, and SIGKILL of deployd in the middle of a bounce.

Each test runs its own cluster (``test-<uuid8>``) and soa-configs tree, and removes every
container carrying its cluster label at the end.
"""

from __future__ import annotations

import json
import os
import re
import signal
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import pytest

from paasport.config.system import SystemConfig
from paasport.engine.docker import DockerEngine
from paasport.monitoring.events import EventLog
from paasport.types import AppVersion

from harness import (
    DeploydThread,
    answers,
    cluster_config_text,
    cluster_containers,
    cluster_system,
    deployments_json,
    fast_settings,
    remove_cluster,
    replace_file,
    write_service,
)

HTTPD = "httpd -f -p 8888 -h /www"
SLOW_HTTPD = "sleep 2; httpd -f -p 8888 -h /www"  # new tasks need ~2 s before they serve


def instance_yaml(**fields: object) -> str:
    base: dict[str, object] = {
        "instances": 3,
        "cpus": 0.1,
        "mem": 32,
        "cmd": HTTPD,
        "healthcheck_mode": "http",
        "healthcheck_uri": "/status",
        "healthcheck_grace_period_seconds": 30,
        "healthcheck_interval_seconds": 1,
        "healthcheck_timeout_seconds": 1,
        "drain_method": "noop",
        "backoff_seconds": 1,
    }
    base.update(fields)
    return json.dumps({"main": base})  # JSON is YAML


@dataclass
class Sample:
    old_live: int
    new_live: int
    new_serving: int
    serving: int
    versions: int


@dataclass
class World:
    cluster: str
    root: Path
    image: str
    engine: DockerEngine
    runner: DeploydThread | None = None
    events: EventLog | None = None

    @property
    def soa_dir(self) -> Path:
        return self.root / "soa"

    @property
    def state_dir(self) -> Path:
        return self.root / "state"

    @property
    def system(self) -> SystemConfig:
        return cluster_system(self.cluster, self.soa_dir, self.state_dir)

    def write_service(self, instance_file: str, state: str = "start") -> None:
        svc = write_service(
            self.soa_dir, "web", "description: test service\n", [f"{self.cluster}.main"]
        )
        (svc / f"instances-{self.cluster}.yaml").write_text(instance_file)
        self.write_deployments(state)

    def write_deployments(self, state: str = "start") -> None:
        replace_file(
            self.soa_dir / "web" / "deployments.json",
            deployments_json(self.cluster, self.image, state=state),
        )

    def start_deployd(self) -> None:
        self.state_dir.mkdir(parents=True, exist_ok=True)
        self.events = EventLog(self.state_dir / "events.sqlite")
        self.runner = DeploydThread(
            self.system,
            self.engine,
            self.events,
            fast_settings(stop_grace_seconds=1.0, recheck_seconds=0.3),
            startup_interval_seconds=0.2,
            daemon=False,
        ).start()

    def stop_deployd(self) -> None:
        if self.runner is not None:
            self.runner.stop()
        if self.events is not None:
            self.events.close()

    def versions(self) -> list[AppVersion]:
        return list(self.engine.list_app_versions("web", "main"))

    def live(self) -> list[AppVersion]:
        return [
            AppVersion(
                **{**av.__dict__, "tasks": tuple(t for t in av.tasks if t.state == "running")}
            )
            for av in self.versions()
        ]

    def hashes(self) -> set[str]:
        return {av.config_hash for av in self.live() if av.tasks}

    def sample(self, old_hashes: set[str]) -> Sample:
        versions = self.live()
        old = [t for av in versions if av.config_hash in old_hashes for t in av.tasks]
        new = [t for av in versions if av.config_hash not in old_hashes for t in av.tasks]
        new_serving = sum(1 for t in new if answers(t.port, host=t.host))
        serving = new_serving + sum(1 for t in old if answers(t.port, host=t.host))
        return Sample(
            len(old), len(new), new_serving, serving, len([v for v in versions if v.tasks])
        )

    def wait_for(self, what: str, cond: Callable[[], bool], timeout: float = 45.0) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if cond():
                return
            time.sleep(0.2)
        raise AssertionError(f"timed out waiting for {what}; versions: {self.versions()}")

    def converged(self, n: int = 3) -> bool:
        live = self.live()
        tasks = [t for av in live for t in av.tasks]
        all_versions = self.versions()
        return (
            len(all_versions) == 1
            and len(tasks) == n
            and len(all_versions[0].tasks) == n
            and all(answers(t.port, host=t.host) for t in tasks)
        )

    def cli(self, verb: str, *args: str) -> list[str]:
        """argv of ``paasport VERB ARGS`` on this world's cluster, soa-configs and state."""
        config = self.root / "paasport.yaml"
        config.write_text(cluster_config_text(self.cluster))
        dirs = ["--soa-dir", str(self.soa_dir), "--state-dir", str(self.state_dir)]
        return [sys.executable, "-m", "paasport", verb, "--config", str(config), *dirs, *args]

    def deploy(self, instance_file: str) -> None:
        """Write the service, start deployd and wait until the first deploy serves."""
        self.write_service(instance_file)
        self.start_deployd()
        self.wait_for("first deploy", self.converged)

    def deploy_then_bounce(self, **fields: object) -> tuple[set[str], list[Sample]]:
        """Deploy ``instance_yaml(**fields)``, then bounce to tasks that need ~2 s before they
        serve; the old config hashes and the samples taken until the bounce finished."""
        self.deploy(instance_yaml(**fields))
        old = self.hashes()
        self.write_service(instance_yaml(**fields, cmd=SLOW_HTTPD, env={"V": "2"}))
        return old, self.sample_until_converged(old)

    def sample_until_converged(self, old: set[str], timeout: float = 60.0) -> list[Sample]:
        samples: list[Sample] = []
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            s = self.sample(old)
            samples.append(s)
            if s.old_live == 0 and s.new_serving == 3 and s.versions == 1 and self.converged():
                return samples
            time.sleep(0.05)
        raise AssertionError(f"bounce did not finish: last samples {samples[-5:]}")


@pytest.fixture
def world(busybox_image: str, tmp_dir: Path) -> Iterator[World]:
    cluster = f"test-{uuid.uuid4().hex[:8]}"
    w = World(cluster=cluster, root=tmp_dir, image=busybox_image, engine=DockerEngine(cluster))
    try:
        yield w
    finally:
        w.stop_deployd()
        remove_cluster(cluster)
        w.engine.close()


def test_a_three_task_service_deploys_and_serves(world: World) -> None:
    world.write_service(instance_yaml())
    world.start_deployd()
    world.wait_for("3 serving tasks", world.converged)
    assert len(world.versions()) == 1
    av = world.versions()[0]
    assert {t.cluster for t in av.tasks} == {world.cluster}
    assert len({(t.host, t.port) for t in av.tasks}) == 3


def test_crossover_bounce_never_drops_below_the_margin(world: World) -> None:
    old, samples = world.deploy_then_bounce()
    assert any(s.new_live > 0 and s.old_live > 0 for s in samples), "no overlap seen"
    assert min(s.serving for s in samples) >= 3, [s.serving for s in samples]
    assert world.hashes().isdisjoint(old)


def test_upthendown_keeps_every_old_task_until_all_new_are_healthy(world: World) -> None:
    _, samples = world.deploy_then_bounce(bounce_method="upthendown")
    for s in samples:
        if s.old_live < 3:
            assert s.new_serving == 3, s
    assert any(s.old_live == 3 and s.new_live == 3 for s in samples)


def test_downthenup_never_runs_old_and_new_together(world: World) -> None:
    _, samples = world.deploy_then_bounce(bounce_method="downthenup")
    assert not any(s.old_live and s.new_live for s in samples), samples
    assert any(s.serving == 0 for s in samples)  # the downtime downthenup accepts


def test_brutal_kills_old_tasks_without_waiting_for_new_ones(world: World) -> None:
    _, samples = world.deploy_then_bounce(bounce_method="brutal")
    assert any(s.old_live == 0 and s.new_live > 0 and s.new_serving < 3 for s in samples), samples


def test_a_killed_task_is_replaced_and_recorded(world: World) -> None:
    world.deploy(instance_yaml())
    victim = world.versions()[0].tasks[0]
    subprocess.run(["docker", "kill", victim.task_id], capture_output=True, check=True, timeout=120)
    world.wait_for(
        "a replacement",
        lambda: (
            victim.task_id not in {t.task_id for av in world.versions() for t in av.tasks}
            and world.converged()
        ),
    )
    assert world.events is not None
    crashes = world.events.query(service="web", instance="main", kinds=["crash"])
    assert crashes and crashes[0].data.get("exit_code") == 137


def test_a_task_that_keeps_failing_its_health_check_is_replaced(world: World) -> None:
    world.deploy(instance_yaml(healthcheck_max_consecutive_failures=2))
    victim = world.versions()[0].tasks[0]
    # the task keeps running but its /status is gone: only its health check can tell
    subprocess.run(
        ["docker", "exec", victim.task_id, "rm", "/www/status"],
        capture_output=True,
        check=True,
        timeout=120,
    )
    world.wait_for(
        "a replacement",
        lambda: (
            victim.task_id not in {t.task_id for av in world.versions() for t in av.tasks}
            and world.converged()
        ),
    )
    assert len(world.hashes()) == 1  # replaced inside the same app version, no bounce
    assert world.events is not None
    failed = world.events.query(service="web", instance="main", kinds=["unhealthy"])
    assert any("health check(s) in a row; replacing it" in e.message for e in failed), failed


def test_stop_then_start(world: World) -> None:
    world.deploy(instance_yaml())
    world.write_deployments("stop")
    world.wait_for("no task left", lambda: not world.versions())
    world.write_deployments("start")
    world.wait_for("3 tasks again", world.converged)


def test_removing_the_instance_removes_its_containers(world: World) -> None:
    world.deploy(instance_yaml())
    (world.soa_dir / "web" / f"instances-{world.cluster}.yaml").write_text("{}\n")
    world.wait_for("every container gone", lambda: not world.versions())


def _deployd_process(world: World, log: IO[bytes]) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        world.cli("deployd", "--stop-grace-seconds", "1", "--full-pass-seconds", "5"),
        stdout=log,
        stderr=log,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )


def test_sigkill_mid_bounce_then_restart_converges_without_orphans(world: World) -> None:
    world.write_service(instance_yaml())
    log = (world.root / "deployd.log").open("ab")
    proc = _deployd_process(world, log)
    try:
        world.wait_for("first deploy", world.converged, timeout=60)
        old = world.hashes()
        world.write_service(instance_yaml(cmd=SLOW_HTTPD, env={"V": "2"}))
        # kill it as soon as the bounce has started (both versions exist)
        world.wait_for("the bounce to start", lambda: len(world.versions()) >= 2)
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        mid = world.versions()
        assert len(mid) >= 2  # really mid-bounce
        proc = _deployd_process(world, log)
        time.sleep(1.0)  # a second kill right after a restart, while it re-lists everything
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        proc = _deployd_process(world, log)
        world.wait_for("convergence after restarts", world.converged, timeout=60)
        versions = world.versions()
        assert len(versions) == 1 and versions[0].config_hash not in old
        everything = cluster_containers(world.cluster)
        assert len(everything) == 3, "orphaned containers left behind"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait(timeout=10)
        log.close()


def test_status_says_why_an_instance_is_not_healthy(world: World) -> None:
    cluster = world.cluster
    world.write_service(instance_yaml())
    svc = world.soa_dir / "web"
    (svc / "deploy.yaml").write_text(
        f"pipeline:\n  - step: {cluster}.main\n  - step: {cluster}.other\n"
    )
    healthy = json.loads(instance_yaml(instances=1))["main"]
    broken = {
        **healthy,
        "deploy_group": f"{cluster}.main",
        "healthcheck_uri": "/nope",
        "healthcheck_grace_period_seconds": 0,
        "healthcheck_max_consecutive_failures": 1,
    }
    missing = {**healthy, "deploy_group": f"{cluster}.other"}
    (svc / f"instances-{cluster}.yaml").write_text(
        json.dumps({"main": healthy, "broken": broken, "missing": missing})
    )
    (svc / "deployments.json").write_text(
        json.dumps(
            {
                "v2": {
                    "deployments": {
                        f"{cluster}.main": {"docker_image": world.image, "git_sha": "a" * 40},
                        f"{cluster}.other": {
                            "docker_image": "paasport-test-nope:latest",
                            "git_sha": "b" * 40,
                        },
                    },
                    "controls": {},
                }
            }
        )
    )
    world.start_deployd()
    world.wait_for(
        "main and broken to run",
        lambda: sum(len(av.tasks) for av in world.engine.list_app_versions("web")) == 2,
    )
    world.wait_for(
        "main and broken to serve",
        lambda: all(
            answers(t.port, host=t.host)
            for av in world.engine.list_app_versions("web")
            for t in av.tasks
        ),
    )
    args = world.cli("status", "-s", "web")
    out = subprocess.run(
        [*args, "--json"], capture_output=True, text=True, check=False, timeout=120
    )
    assert out.returncode == 1, out.stderr
    by_instance = {v["instance"]: v for v in json.loads(out.stdout)}
    assert by_instance["main"]["ok"], by_instance["main"]
    assert by_instance["main"]["state"] == "Running"
    assert by_instance["main"]["healthy"] == 1
    assert not by_instance["broken"]["ok"]
    assert by_instance["broken"]["why"].startswith("health check failing on "), by_instance
    assert "404" in by_instance["broken"]["why"]
    assert not by_instance["missing"]["ok"]
    assert "image paasport-test-nope:latest does not exist" in by_instance["missing"]["why"]
    human = subprocess.run([*args, "-v"], capture_output=True, text=True, check=False, timeout=120)
    assert human.returncode == 1
    assert "why: health check failing" in human.stdout
    assert re.search(r"\b\d+\.\d+\.\d+\.\d+:8888\b", human.stdout)  # -v: tasks as host:port


def test_a_task_that_always_exits_restarts_only_as_the_backoff_allows(world: World) -> None:
    """instances: 1 whose task exits after 1 s: every task is dead, so the plan creates; the
    backoff (1 s doubling: 1, 2, 4, 8 s) holds that create back, corpses stay bounded, and
    status reads Crashing throughout, also while a restarted task briefly runs."""
    fields = json.loads(instance_yaml(instances=1, cmd="sleep 1; exit 3"))["main"]
    del fields["healthcheck_mode"], fields["healthcheck_uri"]
    world.write_service(json.dumps({"main": fields}))
    world.start_deployd()
    seen: set[str] = set()
    most_exited = 0
    states: list[tuple[str, int]] = []  # (status state, live tasks seen just before)
    deadline = time.monotonic() + 22.0
    while time.monotonic() < deadline:
        tasks = [t for av in world.versions() for t in av.tasks]
        seen.update(t.task_id for t in tasks)
        most_exited = max(most_exited, sum(1 for t in tasks if t.state in ("exited", "dead")))
        if len(seen) >= 4:  # two delayed restarts made: the instance crash-loops
            out = subprocess.run(
                [*world.cli("status", "-s", "web"), "--json"],
                capture_output=True,
                text=True,
                check=False,
                timeout=30,
            )
            live = sum(1 for t in tasks if t.state == "running")
            states.append((json.loads(out.stdout)[0]["state"], live))
        time.sleep(0.2)
    # restarted every ~1.5 s without the backoff (~13 tasks in 20 s); with it about 5
    assert 3 <= len(seen) <= 7, len(seen)
    assert most_exited <= 2, most_exited
    assert world.events is not None
    crashes = world.events.query(service="web", instance="main", kinds=["crash"])
    assert crashes and all(e.data.get("exit_code") == 3 for e in crashes)
    assert states and {state for state, _ in states} == {"Crashing"}, states
    waited = subprocess.run(
        [*world.cli("wait-for-deployment", "-s", "web", "-l", f"{world.cluster}.main"),
         "-c", "a" * 40, "--timeout", "2"],
        capture_output=True,
        text=True,
        check=False,
        timeout=60,
    )  # fmt: skip
    assert waited.returncode == 1, waited.stderr
    failed = world.events.query(service="web", kinds=["deploy"])
    assert [(e.level, e.data.get("outcome")) for e in failed] == [("error", "timeout")], failed
