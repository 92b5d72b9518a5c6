"""One deployd per cluster: two ``paasport deployd`` processes on the docker engine with a
ZooKeeper registry (the real one on 127.0.0.1), each with its own state dir.

The second stands by and does nothing while the first lives; the first SIGKILLed mid-bounce,
the second takes over when its session ends and finishes the bounce with no orphan and no
duplicate app version. Each test uses its own cluster and ZooKeeper path and removes both.
"""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from test_reconciler import SLOW_HTTPD, World, instance_yaml, world  # noqa: F401 (fixture)

from paasport.engine.docker import DockerEngine
from paasport.monitoring.events import EventLog

from discovery_support import Relay
from harness import cluster_containers, remove_cluster


def _zk_port(zk_hosts: str) -> int:
    return int(zk_hosts.rsplit(":", 1)[1])


def _config_text(cluster: str, zk_hosts: str, zk_path: str) -> str:
    return (
        f"local_cluster: {cluster}\n"
        f"clusters:\n  {cluster}:\n    engine: docker\n"
        f"discovery:\n  registry: zookeeper\n  zookeeper_hosts: '{zk_hosts}'\n"
        f"  zookeeper_path: {zk_path}\n"
    )


class LockWorld(World):
    config: Path
    procs: list[subprocess.Popen[bytes]]

    def argv(self, name: str, *args: str) -> list[str]:
        dirs = ["--soa-dir", str(self.soa_dir), "--state-dir", str(self.root / f"state-{name}")]
        return [sys.executable, "-m", "paasport", "deployd", "--config", str(self.config), *dirs,
                "--stop-grace-seconds", "1", "--full-pass-seconds", "3", *args]  # fmt: skip

    def spawn(self, name: str) -> subprocess.Popen[bytes]:
        log = (self.root / f"deployd-{name}.log").open("ab")
        proc = subprocess.Popen(
            self.argv(name),
            stdout=log,
            stderr=log,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        log.close()
        self.procs.append(proc)
        return proc

    def log_of(self, name: str) -> str:
        return (self.root / f"deployd-{name}.log").read_text(errors="replace")

    def events_of(self, name: str) -> list[tuple[str, str]]:
        path = self.root / f"state-{name}" / "events.sqlite"
        if not path.exists():
            return []
        log = EventLog(path)
        try:
            return [(str(e.kind), e.message) for e in log.query()]
        finally:
            log.close()


def _delete_zk_path(hosts: str, path: str) -> None:
    from kazoo.client import KazooClient
    from kazoo.exceptions import NoNodeError

    client = KazooClient(hosts=hosts, timeout=5.0)
    client.start(timeout=10)
    try:
        client.delete(path, recursive=True)  # a test's leftovers: a few nodes, answered at once
    except NoNodeError:
        pass
    finally:
        client.stop()
        client.close()


@pytest.fixture
def relay(zk_hosts: str) -> Iterator[Relay]:
    r = Relay("127.0.0.1", _zk_port(zk_hosts))
    try:
        yield r
    finally:
        r.close()


@pytest.fixture
def lock_world(
    busybox_image: str, tmp_dir: Path, zk_hosts: str, relay: Relay
) -> Iterator[LockWorld]:
    """Both deployds reach ZooKeeper through ``relay`` (a test may cut it)."""
    cluster = f"lock-{uuid.uuid4().hex[:8]}"
    zk_path = f"/paasport-test-{cluster}"
    w = LockWorld(cluster=cluster, root=tmp_dir, image=busybox_image, engine=DockerEngine(cluster))
    w.config = tmp_dir / "paasport.yaml"
    w.config.write_text(_config_text(cluster, f"127.0.0.1:{relay.port}", zk_path))
    w.procs = []
    try:
        yield w
    finally:
        for proc in w.procs:
            if proc.poll() is None:
                proc.send_signal(signal.SIGKILL)
                proc.wait(timeout=10)
        remove_cluster(cluster)
        w.engine.close()
        _delete_zk_path(zk_hosts, zk_path)


def _wait(what: str, cond: object, timeout: float, w: LockWorld) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if cond():  # type: ignore[operator]
            return
        time.sleep(0.2)
    raise AssertionError(
        f"timed out waiting for {what}\n--- a\n{w.log_of('a')[-3000:]}\n--- b\n"
        f"{w.log_of('b')[-3000:]}"
    )


def test_the_second_deployd_stands_by_and_takes_over_a_bounce_mid_way(
    lock_world: LockWorld,
) -> None:
    w = lock_world
    w.write_service(instance_yaml())
    first = w.spawn("a")
    _wait("the first deploy", w.converged, 60, w)
    holder = f"{socket.gethostname()}/{first.pid}"
    second = w.spawn("b")
    standby = f"standby: deployd {holder} holds the cluster lock; taking over when it stops"
    _wait("the second to stand by", lambda: standby in w.log_of("b"), 30, w)

    # --no-wait: exit 1 with that line instead of standing by
    refused = subprocess.run(
        w.argv("c", "--no-wait"), capture_output=True, text=True, timeout=60, check=False
    )
    assert refused.returncode == 1, refused.stderr
    assert standby in refused.stderr

    old = w.hashes()
    w.write_service(instance_yaml(cmd=SLOW_HTTPD, env={"V": "2"}))
    _wait("the bounce to start", lambda: len(w.versions()) >= 2, 30, w)
    first.send_signal(signal.SIGKILL)
    first.wait(timeout=10)
    mid = w.versions()
    assert len(mid) >= 2, mid  # really mid-bounce
    # while the first lived the second did nothing: no step of its own in its event log
    acted = [e for e in w.events_of("b") if e[0] in ("app_version", "bounce")]
    assert acted == [], acted
    assert "holding the cluster lock" not in w.log_of("b")

    # its session ends after the session timeout; the second takes over and converges
    _wait("the takeover", lambda: "holding the cluster lock" in w.log_of("b"), 40, w)
    _wait("convergence after the takeover", w.converged, 60, w)
    versions = w.versions()
    assert len(versions) == 1 and versions[0].config_hash not in old
    assert len(cluster_containers(w.cluster)) == 3, "orphaned or duplicate containers"
    assert second.poll() is None


def _containers(w: LockWorld) -> set[str]:
    return set(cluster_containers(w.cluster))


def test_a_deployd_cut_from_zookeeper_stops_acting_and_finishes_the_bounce_when_it_returns(
    lock_world: LockWorld, relay: Relay
) -> None:
    w = lock_world
    w.write_service(instance_yaml())
    w.spawn("a")
    _wait("the first deploy", w.converged, 60, w)
    old = w.hashes()
    w.write_service(instance_yaml(cmd=SLOW_HTTPD, env={"V": "2"}))
    _wait("the bounce to start", lambda: len(w.versions()) >= 2, 30, w)
    relay.cut()  # longer than the 10 s session timeout: the session expires meanwhile
    _wait("the lock to be given up", lambda: "lost the cluster lock" in w.log_of("a"), 10, w)
    time.sleep(1.5)  # an action already under way finishes (bounded by its grace)
    frozen = _containers(w)
    assert len({av.config_hash for av in w.versions()}) == 2, "the bounce went on without lock"
    time.sleep(11)  # the new tasks are healthy long since: only the gate holds the old ones
    assert _containers(w) == frozen, "deployd acted without holding the cluster lock"
    relay.restore()
    _wait("the lock again", lambda: w.log_of("a").count("holding the cluster lock") >= 2, 40, w)
    _wait("the bounce to finish", w.converged, 60, w)
    versions = w.versions()
    assert len(versions) == 1 and versions[0].config_hash not in old
    assert len(cluster_containers(w.cluster)) == 3


def test_a_task_created_but_never_started_is_replaced(world: World) -> None:  # noqa: F811
    """A deployd killed between a container's create and start leaves it "created": the next
    deployd must replace it (not wait for ever on a task that never starts, nor add a second
    app version)."""
    world.engine.never_started_seconds = 1.0
    client = world.engine.api
    real_start = client.start
    skipped: list[str] = []

    def start_all_but_the_first(container: str, *args: object, **kwargs: object) -> object:
        if not skipped:
            skipped.append(container)
            return None  # as if the creator died right after creating it
        return real_start(container, *args, **kwargs)

    client.start = start_all_but_the_first
    world.write_service(instance_yaml(instances=2))
    world.start_deployd()
    world.wait_for("convergence", lambda: world.converged(2), timeout=60)
    assert skipped
    assert skipped[0] not in cluster_containers(world.cluster)
    assert len(cluster_containers(world.cluster)) == 2
