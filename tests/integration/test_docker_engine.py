"""DockerEngine against the real Docker engine: tasks, ports, resources, stop, exec, logs, OOM.

Each test runs on its own cluster name (``test-<uuid8>``) so it sees only its own containers, and
removes every container of that cluster at the end.
"""

from __future__ import annotations

import dataclasses
import json
import socket
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from functools import partial
from pathlib import Path
from typing import Any, TypeVar

import httpx
import pytest

from paasport.engine.base import LABEL_CLUSTER, LABEL_HEALTHCHECK, LABEL_SERVICE, LogLine
from paasport.engine.docker import EXEC_TIMED_OUT, DockerEngine
from paasport.errors import EngineError, EngineUnavailable, ImageError, NotFoundError
from paasport.types import AppSpec, AppVersion, HealthCheck, Task, Volume

from harness import cluster_config_text

T = TypeVar("T")


def wait_for(what: str, probe: Callable[[], T | None], timeout: float = 20.0) -> T:
    """Poll ``probe`` until it returns something truthy (a readiness wait, not an assertion)."""
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"gave up waiting for {what}")
        time.sleep(0.1)


@pytest.fixture
def engine() -> Iterator[DockerEngine]:
    eng = DockerEngine(f"test-{uuid.uuid4().hex[:8]}")
    try:
        yield eng
    finally:
        api = eng.api
        for c in api.containers(all=True, filters={"label": [f"{LABEL_CLUSTER}={eng.cluster}"]}):
            api.remove_container(c["Id"], force=True)
        eng.close()


def make_spec(engine: DockerEngine, image: str, **changes: Any) -> AppSpec:
    spec = AppSpec(
        service="web_svc",
        instance="main",
        cluster=engine.cluster,
        image=image,
        git_sha="0123456789abcdef0123456789abcdef01234567",
        config_hash=uuid.uuid4().hex,
        replicas=3,
        env={"GREETING": "hello world", "PORT": "8888"},
        cpus=0.25,
        mem=32,
        healthcheck=HealthCheck(mode="http", uri="/status", grace_period_seconds=5),
        deploy_group="local.main",
    )
    return dataclasses.replace(spec, **changes)


def only_version(engine: DockerEngine, **filters: str) -> AppVersion:
    versions = engine.list_app_versions(**filters)
    assert len(versions) == 1, versions
    return versions[0]


def http_get(task: Task, path: str = "/status") -> str | None:
    try:
        response = httpx.get(f"http://{task.host}:{task.port}{path}", timeout=1.0)
    except httpx.HTTPError:
        return None
    return response.text if response.status_code == 200 else None


def test_create_three_tasks_lists_them_back_and_they_serve(
    engine: DockerEngine, busybox_image: str
) -> None:
    spec = make_spec(engine, busybox_image)

    created = engine.create_app_version(spec, 3)

    listed = only_version(engine, service="web_svc", instance="main")
    assert listed == created
    assert (listed.config_hash, listed.git_sha, listed.image) == (
        spec.config_hash,
        spec.git_sha,
        busybox_image,
    )
    assert listed.desired_replicas == 3
    assert len(listed.tasks) == 3
    assert {t.state for t in listed.tasks} == {"running"}
    # each task is reached at its own bridge address (no docker-proxy, which dies with dockerd)
    assert len({t.host for t in listed.tasks}) == 3
    assert "127.0.0.1" not in {t.host for t in listed.tasks}
    assert {t.port for t in listed.tasks} == {8888}
    for task in listed.tasks:
        assert task.name.startswith(f"paasport-web--svc-main-{spec.config_hash[:8]}-")
        assert task.healthcheck == spec.healthcheck
        assert task.container_port == 8888
        assert wait_for(f"{task.name} to serve", partial(http_get, task)) == "ok\n"

    info = engine.api.inspect_container(listed.tasks[0].task_id)
    host_config = info["HostConfig"]
    assert host_config["NanoCpus"] == 250_000_000
    assert host_config["Memory"] == host_config["MemorySwap"] == 32 * 1024 * 1024
    assert host_config["RestartPolicy"]["Name"] == "no"
    assert host_config["PortBindings"]["8888/tcp"][0]["HostIp"] == "127.0.0.1"
    assert "GREETING=hello world" in info["Config"]["Env"]
    labels = info["Config"]["Labels"]
    assert labels[LABEL_SERVICE] == "web_svc"
    assert labels["paasport.app_id"] == spec.app_id
    assert labels["paasport.deploy_group"] == "local.main"
    assert LABEL_HEALTHCHECK in labels


def test_scale_adds_tasks_only_up_to_the_count(engine: DockerEngine, busybox_image: str) -> None:
    spec = make_spec(engine, busybox_image)
    engine.create_app_version(spec, 1)

    engine.scale_app_version(spec, 3)
    assert len(only_version(engine).tasks) == 3

    engine.scale_app_version(spec, 2)  # surplus tasks are drained by the reconciler, not here
    assert len(only_version(engine).tasks) == 3


def test_versions_are_grouped_by_config_hash_and_filtered(
    engine: DockerEngine, busybox_image: str
) -> None:
    old = make_spec(engine, busybox_image)
    new = make_spec(engine, busybox_image)
    worker = make_spec(engine, busybox_image, instance="worker")
    engine.create_app_version(old, 2)
    engine.create_app_version(new, 1)
    engine.create_app_version(worker, 1)

    main = engine.list_app_versions(service="web_svc", instance="main")
    assert [(v.config_hash, len(v.tasks)) for v in main] == [
        (old.config_hash, 2),
        (new.config_hash, 1),
    ]
    assert len(engine.list_app_versions()) == 3
    assert engine.list_app_versions(service="other") == ()

    engine.delete_app_version("web_svc", "main", old.config_hash)

    assert [v.config_hash for v in engine.list_app_versions()] == [
        new.config_hash,
        worker.config_hash,
    ]


def test_stop_task_sends_term_then_kills_after_grace(
    engine: DockerEngine, busybox_image: str, tmp_dir: Path
) -> None:
    data = Volume(container_path="/data", host_path=str(tmp_dir), mode="RW")
    polite = make_spec(
        engine,
        busybox_image,
        instance="polite",
        cmd="trap 'echo term > /data/polite; exit 0' TERM; "
        "echo up > /data/ready-polite; while true; do sleep 0.1; done",
        volumes=(data,),
    )
    stubborn = make_spec(
        engine,
        busybox_image,
        instance="stubborn",
        cmd="trap '' TERM; echo up > /data/ready-stubborn; while true; do sleep 0.1; done",
        volumes=(data,),
    )
    polite_task = engine.create_app_version(polite, 1).tasks[0]
    stubborn_task = engine.create_app_version(stubborn, 1).tasks[0]
    wait_for("both tasks to set their traps", lambda: len(list(tmp_dir.glob("ready-*"))) == 2)

    started = time.monotonic()
    engine.stop_task(polite_task.task_id, grace_seconds=30)
    polite_took = time.monotonic() - started
    assert (tmp_dir / "polite").read_text() == "term\n"
    assert polite_took < 30  # it exited on SIGTERM, long before the grace period ran out

    started = time.monotonic()
    engine.stop_task(stubborn_task.task_id, grace_seconds=1)
    stubborn_took = time.monotonic() - started
    assert stubborn_took >= 1  # SIGKILL only once the grace period is over
    assert engine.list_app_versions() == ()

    engine.stop_task(stubborn_task.task_id, grace_seconds=1)  # already gone: nothing to do


def test_a_pid1_service_without_a_term_handler_still_stops_on_sigterm(
    engine: DockerEngine, busybox_image: str
) -> None:
    # busybox httpd installs no SIGTERM handler; as PID 1 the kernel would ignore the signal and
    # every stop would wait out the grace period. The engine runs an init that forwards it.
    spec = make_spec(engine, busybox_image, instance="plainhttpd")
    task = engine.create_app_version(spec, 1).tasks[0]
    wait_for("httpd to run", lambda: _task_running(engine, task.task_id))

    started = time.monotonic()
    engine.stop_task(task.task_id, grace_seconds=30)
    assert time.monotonic() - started < 30  # SIGTERM ended it; no SIGKILL after the grace
    assert engine.list_app_versions() == ()


def _task_running(engine: DockerEngine, task_id: str) -> bool:
    return any(
        t.task_id == task_id and t.state == "running"
        for v in engine.list_app_versions()
        for t in v.tasks
    )


def test_read_only_volume_cannot_be_written(
    engine: DockerEngine, busybox_image: str, tmp_dir: Path
) -> None:
    spec = make_spec(
        engine,
        busybox_image,
        cmd="sleep 60",
        volumes=(Volume(container_path="/data", host_path=str(tmp_dir), mode="RO"),),
    )
    task = engine.create_app_version(spec, 1).tasks[0]

    result = engine.exec_in_task(task.task_id, "echo x > /data/file", timeout=10)

    assert result.exit_code != 0
    assert "Read-only file system" in result.output
    assert not (tmp_dir / "file").exists()


def test_exec_in_task_returns_exit_code_output_and_times_out(
    engine: DockerEngine, busybox_image: str
) -> None:
    task = engine.create_app_version(make_spec(engine, busybox_image), 1).tasks[0]

    result = engine.exec_in_task(task.task_id, "echo hi $GREETING; exit 3", timeout=10)
    assert (result.exit_code, result.output) == (3, "hi hello world\n")

    slow = engine.exec_in_task(task.task_id, "sleep 5", timeout=0.3)
    assert slow.exit_code == EXEC_TIMED_OUT

    with pytest.raises(NotFoundError):
        engine.exec_in_task("0" * 64, "true", timeout=1)


def test_logs_merge_tasks_with_streams(engine: DockerEngine, busybox_image: str) -> None:
    spec = make_spec(
        engine,
        busybox_image,
        cmd='echo "out $HOSTNAME"; echo "err $HOSTNAME" >&2; exec sleep 60',
    )
    version = engine.create_app_version(spec, 2)
    names = {t.name for t in version.tasks}

    def four_lines() -> list[LogLine] | None:
        got = list(engine.logs("web_svc", "main"))
        return got if len(got) == 4 else None

    lines = wait_for("both tasks to log two lines", four_lines)

    assert {line.task_name for line in lines} == names
    assert sorted((ln.stream, ln.message.split()[0]) for ln in lines) == [
        ("stderr", "err"),
        ("stderr", "err"),
        ("stdout", "out"),
        ("stdout", "out"),
    ]
    assert [ln.timestamp for ln in lines] == sorted(ln.timestamp for ln in lines)
    assert list(engine.logs("web_svc", "main", tail=0)) == []
    assert list(engine.logs("web_svc", "other")) == []


def test_logs_command_prints_each_line_with_its_task(
    engine: DockerEngine, busybox_image: str, tmp_dir: Path
) -> None:
    spec = make_spec(engine, busybox_image, cmd='echo "hello $HOSTNAME"; exec sleep 60')
    names = {t.name for t in engine.create_app_version(spec, 2).tasks}
    wait_for("both tasks to log", lambda: len(list(engine.logs("web_svc", "main"))) == 2)
    config = tmp_dir / "paasport.yaml"
    config.write_text(cluster_config_text(engine.cluster))
    argv = [sys.executable, "-m", "paasport", "logs", "-s", "web_svc", "--config", str(config)]

    text = subprocess.run(argv, capture_output=True, text=True, check=True, timeout=120).stdout
    assert {line.split(" | ")[0] for line in text.splitlines()} == names
    assert all(line.split(" | ")[1].startswith("hello ") for line in text.splitlines())

    out = subprocess.run(
        [*argv, "--json"], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    records = [json.loads(line) for line in out.splitlines()]
    assert {r["task"] for r in records} == names
    assert {r["stream"] for r in records} == {"stdout"}
    assert all(r["message"].startswith("hello ") for r in records)


def test_logs_follow_picks_up_new_tasks(engine: DockerEngine, busybox_image: str) -> None:
    spec = make_spec(
        engine,
        busybox_image,
        cmd="i=0; while true; do echo tick $i; i=$((i+1)); sleep 0.2; done",
    )
    first = engine.create_app_version(spec, 1).tasks[0]
    follow = engine.logs("web_svc", "main", follow=True)
    try:
        seen: dict[str, list[str]] = {}
        deadline = time.monotonic() + 30
        scaled = False
        for line in follow:
            seen.setdefault(line.task_name, []).append(line.message)
            if not scaled and len(seen[first.name]) >= 3:
                engine.scale_app_version(spec, 2)
                scaled = True
            if len(seen) == 2 or time.monotonic() > deadline:
                break
    finally:
        follow.close()  # type: ignore[attr-defined]

    assert seen[first.name][:3] == ["tick 0", "tick 1", "tick 2"]
    assert len(seen) == 2, f"the task started during --follow was not picked up: {seen}"


def test_logs_follow_of_a_quiet_task_ends_soon_after_stop(
    engine: DockerEngine, busybox_image: str
) -> None:
    spec = make_spec(engine, busybox_image, cmd="echo one line; exec sleep 600")
    engine.create_app_version(spec, 1)
    stop = threading.Event()
    seen: list[str] = []

    def follow() -> None:
        for line in engine.logs("web_svc", "main", follow=True, stop=stop):
            seen.append(line.message)

    reader = threading.Thread(target=follow, daemon=True)
    reader.start()
    wait_for("the one line", lambda: seen == ["one line"])
    stop.set()  # nothing more will be written: only stop can end the follow
    reader.join(10)
    assert not reader.is_alive(), "logs(follow=True) did not return after stop"


def test_oom_kill_is_reported(engine: DockerEngine, busybox_image: str) -> None:
    spec = make_spec(engine, busybox_image, mem=8, cmd="x=a; while true; do x=$x$x; done")
    engine.create_app_version(spec, 1)

    task = wait_for(
        "the task to be OOM-killed",
        lambda: next((t for t in only_version(engine).tasks if t.state == "exited"), None),
    )

    assert task.oom_killed is True
    assert task.exit_code == 137
    assert task.port is None


def test_exited_task_keeps_its_exit_code(engine: DockerEngine, busybox_image: str) -> None:
    engine.create_app_version(make_spec(engine, busybox_image, cmd="exit 3"), 1)

    task = wait_for(
        "the task to exit",
        lambda: next((t for t in only_version(engine).tasks if t.state == "exited"), None),
    )

    assert (task.exit_code, task.oom_killed) == (3, False)


def test_missing_image_is_an_image_error_and_nothing_is_left(engine: DockerEngine) -> None:
    image = f"paasport-test-missing-{uuid.uuid4().hex[:8]}:nope"
    assert engine.image_exists(image) is False

    with pytest.raises(ImageError, match=r"does not exist on this host \(run cook-image"):
        engine.create_app_version(make_spec(engine, image), 2)

    assert engine.list_app_versions() == ()


def test_refused_create_is_an_engine_error_naming_the_instance(
    engine: DockerEngine, busybox_image: str
) -> None:
    with pytest.raises(EngineError, match=r"web_svc\.main: the Docker engine refused: .*memory"):
        engine.create_app_version(make_spec(engine, busybox_image, mem=1), 2)

    assert engine.list_app_versions() == ()


def test_image_exists(engine: DockerEngine, busybox_image: str) -> None:
    assert engine.image_exists(busybox_image) is True


def test_listing_is_one_docker_call(engine: DockerEngine, busybox_image: str) -> None:
    engine.create_app_version(make_spec(engine, busybox_image), 3)
    engine.create_app_version(make_spec(engine, busybox_image, instance="worker"), 2)
    engine.create_app_version(make_spec(engine, busybox_image, instance="batch", cmd="exit 1"), 1)
    wait_for(
        "the batch task to exit",
        lambda: any(t.state == "exited" for v in engine.list_app_versions() for t in v.tasks),
    )
    calls: list[str] = []
    engine.api.hooks["response"].append(
        lambda response, *args, **kwargs: calls.append(
            f"{response.request.method} {httpx.URL(response.request.url).path}"
        )
    )

    for _ in range(3):
        versions = engine.list_app_versions()
        assert sum(len(v.tasks) for v in versions) == 6

    assert len(calls) == 3
    assert all(call.endswith("/containers/json") for call in calls), calls


def test_host_network(engine: DockerEngine, busybox_image: str) -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    spec = make_spec(
        engine,
        busybox_image,
        net="host",
        container_port=port,
        cmd=f"exec httpd -f -p 127.0.0.1:{port} -h /www",
    )

    task = engine.create_app_version(spec, 1).tasks[0]

    assert (task.host, task.port) == ("127.0.0.1", port)
    assert wait_for("the host-network task to serve", lambda: http_get(task)) == "ok\n"


def test_node_capacity_counts_reservations(engine: DockerEngine, busybox_image: str) -> None:
    engine.create_app_version(make_spec(engine, busybox_image, cpus=0.5, mem=64), 2)

    (node,) = engine.node_capacity()

    assert node.cpus >= 1
    assert node.mem_mb > 64
    assert node.cpus_reserved >= 1.0
    assert node.mem_reserved_mb >= 128


@pytest.mark.parametrize(
    "base_url", ["unix://{tmp}/no-such.sock", "unix://{tmp}/stale.sock", "tcp://127.0.0.1:1"]
)
def test_unreachable_daemon_is_engine_unavailable(tmp_dir: Path, base_url: str) -> None:
    with socket.socket(socket.AF_UNIX) as stale:  # a socket file nobody listens on
        stale.bind(str(tmp_dir / "stale.sock"))
    engine = DockerEngine("test-nodaemon", base_url=base_url.format(tmp=tmp_dir))

    with pytest.raises(EngineUnavailable, match="did not answer"):
        engine.list_app_versions()
