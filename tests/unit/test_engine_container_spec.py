"""engine.container_spec: AppSpec -> Docker create arguments, list payload -> AppVersions."""

from __future__ import annotations

import dataclasses
from typing import Any

import pytest

from paasport.engine import container_spec as cs
from paasport.engine.factory import engine_for
from paasport.errors import EngineError
from paasport.types import AppSpec, AppVersion, HealthCheck, Task, Volume

SHA = "0123456789abcdef0123456789abcdef01234567"
HASH = "cafebabe12345678"
SPEC = AppSpec(
    service="web_svc",
    instance="main",
    cluster="local",
    image="services-web:paasta-0123",
    git_sha=SHA,
    config_hash=HASH,
    replicas=3,
    env={"A": "1"},
    cpus=0.5,
    mem=64,
    healthcheck=HealthCheck(mode="tcp", grace_period_seconds=5),
    deploy_group="local.main",
)
MB = 1024 * 1024
NOW = 1700000000.25


@pytest.mark.parametrize(
    ("changes", "field", "expected"),
    [
        ({}, "name", "paasport-web--svc-main-cafebabe-abc123"),
        ({"instance": "Canary_1"}, "name", "paasport-web--svc-canary--1-cafebabe-abc123"),
        ({}, "command", None),
        ({"cmd": "exec httpd -f"}, "command", ("/bin/sh", "-c", "exec httpd -f")),
        ({"args": ("httpd", "-f")}, "command", ("httpd", "-f")),
        ({"cmd": "run", "args": ("x",)}, "command", ("/bin/sh", "-c", "run")),
        ({}, "environment", {"A": "1"}),
        ({}, "nano_cpus", 500_000_000),
        ({"cpus": 0.001}, "nano_cpus", cs.MIN_NANO_CPUS),
        ({"cpus": 0}, "nano_cpus", 0),
        ({}, "mem_limit", 64 * MB),
        ({}, "memswap_limit", 64 * MB),
        ({}, "network_mode", "bridge"),
        ({}, "exposed_ports", (8888,)),
        ({}, "port_bindings", {8888: ("127.0.0.1", None)}),
        ({"container_port": 9000}, "port_bindings", {9000: ("127.0.0.1", None)}),
        ({"net": "host"}, "network_mode", "host"),
        ({"net": "host"}, "port_bindings", {}),
        ({"net": "host"}, "exposed_ports", ()),
        (
            {"volumes": (Volume("/data", "/srv/data", "RW"), Volume("/etc/x", "/etc/x"))},
            "binds",
            {
                "/srv/data": {"bind": "/data", "mode": "rw"},
                "/etc/x": {"bind": "/etc/x", "mode": "ro"},
            },
        ),
    ],
)
def test_container_spec(changes: dict[str, Any], field: str, expected: object) -> None:
    spec = dataclasses.replace(SPEC, **changes)
    assert getattr(cs.container_spec(spec, "abc123", NOW), field) == expected


def test_labels_carry_the_whole_app_version() -> None:
    labels = cs.container_spec(SPEC, "abc123", NOW).labels
    assert labels == {
        "paasport.service": "web_svc",
        "paasport.instance": "main",
        "paasport.cluster": "local",
        "paasport.git_sha": SHA,
        "paasport.config_hash": HASH,
        "paasport.app_id": "web_svc.main.git01234567.configcafebabe",
        "paasport.desired_replicas": "3",
        "paasport.healthcheck": cs.healthcheck_label(SPEC.healthcheck),
        "paasport.deploy_group": "local.main",
        "paasport.image": "services-web:paasta-0123",
        "paasport.cpus": "0.5",
        "paasport.mem": "64.0",
        "paasport.container_port": "8888",
        "paasport.net": "bridge",
        "paasport.created": "1700000000.250000",
    }
    assert cs.healthcheck_from_label(labels["paasport.healthcheck"]) == SPEC.healthcheck


def test_host_config_args() -> None:
    args = cs.container_spec(SPEC, "abc123", NOW).host_config_args()
    assert args == {
        "network_mode": "bridge",
        "restart_policy": {"Name": "no"},
        "init": True,
        "mem_limit": 64 * MB,
        "memswap_limit": 64 * MB,
        "nano_cpus": 500_000_000,
        "port_bindings": {8888: ("127.0.0.1", None)},
    }
    create = cs.container_spec(SPEC, "abc123", NOW).create_args()
    assert create["ports"] == [8888]
    assert create["detach"] is True


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        (None, None),
        ("", None),
        ("not json", None),
        ("[1]", None),
        (
            '{"mode": "http", "uri": "/health", "future_field": 1}',
            HealthCheck(uri="/health", mode="http"),
        ),
    ],
)
def test_healthcheck_from_label(text: str | None, expected: HealthCheck | None) -> None:
    assert cs.healthcheck_from_label(text) == expected


@pytest.mark.parametrize(
    ("cluster", "service", "instance", "config_hash", "expected"),
    [
        ("c1", None, None, None, ["paasport.cluster=c1"]),
        ("c1", "web", None, None, ["paasport.cluster=c1", "paasport.service=web"]),
        (
            "c1",
            "web",
            "main",
            "abc",
            [
                "paasport.cluster=c1",
                "paasport.service=web",
                "paasport.instance=main",
                "paasport.config_hash=abc",
            ],
        ),
        (None, None, None, None, ["paasport.service"]),
    ],
)
def test_label_filters(
    cluster: str | None,
    service: str | None,
    instance: str | None,
    config_hash: str | None,
    expected: list[str],
) -> None:
    assert cs.label_filters(cluster, service, instance, config_hash) == {"label": expected}


@pytest.mark.parametrize(
    ("status", "expected"),
    [
        ("Exited (137) 5 seconds ago", 137),
        ("Exited (0) About a minute ago", 0),
        ("Restarting (1) 2 seconds ago", 1),
        ("Up 3 seconds", None),
        ("Created", None),
        ("", None),
    ],
)
def test_exit_code_from_status(status: str, expected: int | None) -> None:
    assert cs.exit_code_from_status(status) == expected


@pytest.mark.parametrize(
    ("docker_state", "expected"),
    [
        ("created", "starting"),
        ("restarting", "starting"),
        ("running", "running"),
        ("paused", "running"),
        ("exited", "exited"),
        ("dead", "dead"),
        ("removing", "dead"),
        ("something-new", "dead"),
    ],
)
def test_task_state(docker_state: str, expected: str) -> None:
    assert cs.task_state(docker_state) == expected


def summary(
    cid: str,
    *,
    state: str = "running",
    status: str = "Up 1 second",
    created: int = 100,
    config_hash: str = HASH,
    ports: list[dict[str, Any]] | None = None,
    replicas: str = "3",
    net: str = "bridge",
    labels: dict[str, str] | None = None,
) -> dict[str, Any]:
    return {
        "Id": cid,
        "Names": [f"/paasport-web-main-{config_hash[:8]}-{cid}"],
        "State": state,
        "Status": status,
        "Created": created,
        "Ports": ports if ports is not None else [],
        "Labels": {
            "paasport.service": "web",
            "paasport.instance": "main",
            "paasport.cluster": "local",
            "paasport.config_hash": config_hash,
            "paasport.git_sha": SHA,
            "paasport.image": "img:1",
            "paasport.desired_replicas": replicas,
            "paasport.container_port": "8888",
            "paasport.net": net,
            "paasport.healthcheck": cs.healthcheck_label(HealthCheck(mode="http")),
            "paasport.cpus": "0.5",
            "paasport.mem": "64.0",
            **(labels or {}),
        },
    }


@pytest.mark.parametrize(
    ("ports", "expected"),
    [
        ([], None),
        ([{"PrivatePort": 8888, "Type": "tcp"}], None),
        ([{"IP": "127.0.0.1", "PrivatePort": 8888, "PublicPort": 49153, "Type": "tcp"}], 49153),
        ([{"IP": "127.0.0.1", "PrivatePort": 9999, "PublicPort": 49153, "Type": "tcp"}], None),
        ([{"IP": "127.0.0.1", "PrivatePort": 8888, "PublicPort": 49153, "Type": "udp"}], None),
        (
            [
                {"IP": "::", "PrivatePort": 8888, "PublicPort": 40000, "Type": "tcp"},
                {"IP": "127.0.0.1", "PrivatePort": 8888, "PublicPort": 40001, "Type": "tcp"},
            ],
            40001,
        ),
    ],
)
def test_published_port(ports: list[dict[str, Any]], expected: int | None) -> None:
    assert cs.published_port({"Ports": ports}, 8888) == expected


def test_task_from_running_container() -> None:
    port = [{"IP": "127.0.0.1", "PrivatePort": 8888, "PublicPort": 49153, "Type": "tcp"}]
    task = cs.task_from_container(summary("c1", ports=port), node="host1")
    assert (task.task_id, task.state, task.host, task.port, task.node) == (
        "c1",
        "running",
        "127.0.0.1",
        49153,
        "host1",
    )
    assert (task.started_at, task.exit_code, task.oom_killed) == (100.0, None, False)
    assert task.name == f"paasport-web-main-{HASH[:8]}-c1"
    assert task.healthcheck == HealthCheck(mode="http")
    assert task.container_port == 8888


@pytest.mark.parametrize(
    ("labels", "started_at"),
    [
        ({}, 100.0),
        ({"paasport.created": "1700000000.250000"}, 1700000000.25),
        ({"paasport.created": "garbage"}, 100.0),
    ],
)
def test_started_at_prefers_the_precise_label(labels: dict[str, str], started_at: float) -> None:
    assert cs.task_from_container(summary("c1", labels=labels)).started_at == started_at


@pytest.mark.parametrize(
    ("status", "details", "exit_code", "oom"),
    [
        ("Exited (137) 1 second ago", None, 137, False),
        ("Exited (137) 1 second ago", cs.ExitDetails(137, True), 137, True),
        ("Exited (1) 1 second ago", cs.ExitDetails(None, False, 2), 1, False),
    ],
)
def test_task_from_exited_container(
    status: str, details: cs.ExitDetails | None, exit_code: int, oom: bool
) -> None:
    task = cs.task_from_container(summary("c1", state="exited", status=status), "", details)
    assert (task.state, task.port, task.exit_code, task.oom_killed) == (
        "exited",
        None,
        exit_code,
        oom,
    )


@pytest.mark.parametrize(("state", "port"), [("running", 8123), ("exited", None)])
def test_host_network_task_port_is_the_container_port(state: str, port: int | None) -> None:
    s = summary("c1", state=state, net="host", labels={"paasport.container_port": "8123"})
    assert cs.task_from_container(s).port == port


def test_app_versions_group_by_config_hash_oldest_first() -> None:
    containers = [
        summary("new1", created=300, config_hash="bbbb0000", replicas="2"),
        summary("old2", created=120, replicas="3"),
        summary("old1", created=110, replicas="3"),
        summary(
            "new2",
            created=310,
            config_hash="bbbb0000",
            replicas="4",
            labels={"paasport.git_sha": "f" * 40},
        ),
        {"Id": "foreign", "Labels": {"paasport.service": "web"}, "State": "running"},
        {"Id": "nolabels", "Labels": None, "State": "running"},
    ]
    versions = cs.app_versions_from_containers(containers, node="n")
    assert [(v.config_hash, [t.task_id for t in v.tasks]) for v in versions] == [
        (HASH, ["old1", "old2"]),
        ("bbbb0000", ["new1", "new2"]),
    ]
    newer = versions[1]
    assert (newer.desired_replicas, newer.git_sha, newer.created_at) == (4, "f" * 40, 300.0)
    assert (newer.service, newer.instance, newer.cluster, newer.image) == (
        "web",
        "main",
        "local",
        "img:1",
    )


def test_needs_inspect_only_finished_containers() -> None:
    assert [
        cs.needs_inspect(summary("c", state=s)) for s in ("running", "created", "exited", "dead")
    ] == [
        False,
        False,
        True,
        True,
    ]


def test_reservations_count_live_paasport_tasks_only() -> None:
    containers = [
        summary("a"),
        summary("b", state="created"),
        summary("c", state="exited"),
        {"Id": "x", "Labels": {}, "State": "running"},
    ]
    assert cs.reservations(containers) == (1.0, 128.0)


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2024-05-01T10:00:00.1Z", "2024-05-01T10:00:00.100000000Z"),
        ("2024-05-01T10:00:00.123456789Z", "2024-05-01T10:00:00.123456789Z"),
        ("2024-05-01T10:00:00Z", "2024-05-01T10:00:00.000000000Z"),
        ("2024-05-01T12:00:00.5+02:00", "2024-05-01T10:00:00.500000000Z"),
        ("garbage", "garbage"),
    ],
)
def test_normalize_timestamp(text: str, expected: str) -> None:
    assert cs.normalize_timestamp(text) == expected


def test_normalized_timestamps_sort_in_time_order() -> None:
    raw = ["2024-05-01T10:00:00.12Z", "2024-05-01T10:00:00.1Z", "2024-05-01T10:00:00.2Z"]
    ordered = sorted(raw, key=cs.normalize_timestamp)
    assert ordered == [
        "2024-05-01T10:00:00.1Z",
        "2024-05-01T10:00:00.12Z",
        "2024-05-01T10:00:00.2Z",
    ]


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("", []),
        (
            "2024-05-01T10:00:00.1Z hello world\n",
            [("2024-05-01T10:00:00.100000000Z", "hello world")],
        ),
        (
            "2024-05-01T10:00:00Z a\r\n2024-05-01T10:00:01Z \n",
            [("2024-05-01T10:00:00.000000000Z", "a"), ("2024-05-01T10:00:01.000000000Z", "")],
        ),
        ("no timestamp here\n", [("", "no timestamp here")]),
    ],
)
def test_log_lines(text: str, expected: list[tuple[str, str]]) -> None:
    assert cs.log_lines(text) == expected


@dataclasses.dataclass(frozen=True)
class Cluster:
    name: str
    engine: str
    docker_host: str | None = None


def test_engine_for_docker_builds_a_lazy_docker_engine() -> None:
    from paasport.engine.docker import DockerEngine

    engine = engine_for(Cluster("prod", "docker", "unix:///run/other.sock"))
    assert isinstance(engine, DockerEngine)
    assert (engine.cluster, engine.base_url) == ("prod", "unix:///run/other.sock")


def test_engine_for_swarm_builds_the_cluster_and_node_views() -> None:
    from paasport.engine.factory import node_engine_for
    from paasport.engine.swarm import SwarmEngine, SwarmNodeEngine

    cluster = Cluster("lab", "swarm", "unix:///run/manager.sock")
    engine = engine_for(cluster)
    assert isinstance(engine, SwarmEngine) and engine.base_url == "unix:///run/manager.sock"
    assert isinstance(node_engine_for(cluster), SwarmNodeEngine)


@pytest.mark.parametrize(
    ("engine", "message"),
    [
        ("kubernetes", "cluster c: unknown engine 'kubernetes'"),
    ],
)
def test_engine_for_refuses_engines_it_cannot_run(engine: str, message: str) -> None:
    with pytest.raises(EngineError, match=message):
        engine_for(Cluster("c", engine))


PUBLISHED = [{"IP": "127.0.0.1", "PrivatePort": 8888, "PublicPort": 49153, "Type": "tcp"}]


def _networks(mode: str, **addresses: str) -> dict[str, Any]:
    return {
        "HostConfig": {"NetworkMode": mode},
        "NetworkSettings": {"Networks": {n: {"IPAddress": ip} for n, ip in addresses.items()}},
    }


@pytest.mark.parametrize(
    ("state", "net", "extra", "address"),
    [
        # bridge: the container's own address, reachable with dockerd (and docker-proxy) down
        ("running", "bridge", _networks("bridge", bridge="172.17.0.5"), ("172.17.0.5", 8888)),
        ("created", "bridge", _networks("bridge", bridge="172.17.0.5"), ("172.17.0.5", 8888)),
        (
            "running",
            "bridge",
            _networks("mynet", bridge="172.17.0.5", mynet="10.1.0.7"),
            ("10.1.0.7", 8888),
        ),
        ("running", "bridge", _networks("default", bridge="172.17.0.5"), ("172.17.0.5", 8888)),
        # no address (yet): the published port on 127.0.0.1 is the fallback
        ("running", "bridge", _networks("bridge", bridge=""), ("127.0.0.1", 49153)),
        ("running", "bridge", {}, ("127.0.0.1", 49153)),
        ("running", "bridge", {"NetworkSettings": {"Networks": None}}, ("127.0.0.1", 49153)),
        # a finished task is reached nowhere: no port Docker still publishes for it
        ("exited", "bridge", _networks("bridge", bridge="172.17.0.5"), ("127.0.0.1", None)),
        ("running", "host", _networks("host", host=""), ("127.0.0.1", 8888)),
        ("exited", "host", {}, ("127.0.0.1", None)),
    ],
)
def test_task_address_survives_the_daemon(
    state: str, net: str, extra: dict[str, Any], address: tuple[str, int | None]
) -> None:
    s = summary("c1", state=state, net=net, ports=[] if state == "exited" else PUBLISHED)
    task = cs.task_from_container({**s, **extra})
    assert (task.host, task.port) == address


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("2023-11-14T22:13:20.25Z", 1700000000.25),
        ("2023-11-14T22:13:20Z", 1700000000.0),
        ("2023-11-14T23:13:20.5+01:00", 1700000000.5),
        ("0001-01-01T00:00:00Z", None),
        ("", None),
        (None, None),
        ("garbage", None),
    ],
)
def test_docker_time(text: object, expected: float | None) -> None:
    got = cs.docker_time(text)
    assert got == expected if expected is None or got is None else abs(got - expected) < 1e-6


OUTAGE = [(1000.0, 1015.0)]


@pytest.mark.parametrize(
    ("finished_at", "outages", "expected"),
    [
        (1000.5, OUTAGE, True),  # stopped by the daemon's shutdown (no live-restore)
        (1015.4, OUTAGE, True),  # killed by the daemon's restore, just before it answered
        (999.0, OUTAGE, False),  # crashed before the engine went away
        (1030.0, OUTAGE, False),  # crashed after it came back: a crash
        (None, OUTAGE, False),
        (1005.0, [], False),
    ],
)
def test_exited_during_outage(
    finished_at: float | None, outages: list[tuple[float, float]], expected: bool
) -> None:
    assert cs.exited_during_outage(finished_at, outages) is expected


def _created(tid: str, started_at: float) -> Task:
    return Task(tid, "web", "main", "c", "h", "a" * 40, "starting", started_at=started_at)


@pytest.mark.parametrize(
    ("created_ids", "now", "dead"),
    [
        ([], 1000.0, set()),
        (["old", "young"], 1000.0, {"old"}),  # created 40 s ago: its creator died
        (["young"], 1000.0, set()),  # 5 s: still being started
        (["old"], 950.0, set()),
    ],
)
def test_containers_left_created_become_dead_tasks(
    created_ids: list[str], now: float, dead: set[str]
) -> None:
    av = AppVersion("web", "main", "c", "h", "a" * 40, "img",
                    tasks=(_created("old", 960.0), _created("young", 995.0)))  # fmt: skip
    (out,) = cs.never_started([av], created_ids, now, after=30.0)
    assert {t.task_id for t in out.tasks if t.state == "dead"} == dead
    assert all(t.status_message == cs.NEVER_STARTED for t in out.tasks if t.state == "dead")
