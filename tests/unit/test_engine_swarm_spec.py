# ruff: noqa: E501  (the case tables read best one case per line)
"""The Swarm mapping (engine.swarm_spec) as tables: names, service specs, task states, pending
reasons, node capacity and the node view's task ids."""

from __future__ import annotations

from typing import Any

import pytest

from paasport.engine.base import NodeCapacity
from paasport.engine.swarm_spec import (
    LABEL_TASK,
    SWARM_SERVICE_ID,
    SwarmState,
    app_versions,
    capacities,
    constraints_of,
    human_rule,
    node_tasks,
    pending_reason,
    service_name,
    service_spec,
    services_on_lost_nodes,
    swarm_constraint,
)
from paasport.types import AppSpec, HealthCheck, Volume

SPEC = AppSpec(
    "web", "main", "lab", "reg:5000/services-web:paasta-abc", "a" * 40, "c0ffee" * 6, 3,
    cmd="httpd -f", env={"B": "2", "A": "1"}, cpus=0.5, mem=64,
    volumes=(Volume("/data", "/srv/data", "RW"),),
)  # fmt: skip


def test_service_names_are_swarm_safe_and_bounded() -> None:
    assert service_name(SPEC, "x1y2z3") == "pp-web-main-c0ffeec0-x1y2z3"
    long = AppSpec("s" * 60, "i_n.st", "lab", "img", "a", "h" * 40, 1)
    name = service_name(long, "abcdef")
    assert len(name) <= 63 and name.endswith("-hhhhhhhh-abcdef")
    assert all(c.isalnum() or c == "-" for c in name)


def test_service_spec_carries_labels_resources_env_cmd_and_binds() -> None:
    s = service_spec(SPEC, "abcdef", now=100.0)
    assert s.labels[LABEL_TASK] == "1" and s.labels["paasport.config_hash"] == SPEC.config_hash
    assert (s.nano_cpus, s.mem_bytes) == (500_000_000, 64 * 1024 * 1024)
    assert s.env == ("A=1", "B=2")
    assert s.args == ("/bin/sh", "-c", "httpd -f")
    assert s.mounts == (("/data", "/srv/data", False),)
    assert (s.container_port, s.host_network, s.healthcheck_cmd) == (8888, False, None)


PLACEMENT_CASES = [
    # AppSpec.placement, the Swarm constraints of its services, each shown back as
    ((), (), ()),
    (("pool==batch",), ("node.labels.pool==batch",), ("pool=batch",)),
    (("hostname!=lab2",), ("node.hostname!=lab2",), ("hostname!=lab2",)),
    (("pool==batch", "hostname!=lab2.example.com", "rack!=r1"),
     ("node.labels.pool==batch", "node.hostname!=lab2.example.com", "node.labels.rack!=r1"),
     ("pool=batch", "hostname!=lab2.example.com", "rack!=r1")),
    (("hostname==lab1",), ("node.hostname==lab1",), ("hostname=lab1",)),
]  # fmt: skip


@pytest.mark.parametrize(("placement", "swarm", "human"), PLACEMENT_CASES)
def test_placement_becomes_swarm_constraints_and_reads_back_as_written(
    placement: tuple[str, ...], swarm: tuple[str, ...], human: tuple[str, ...]
) -> None:
    from dataclasses import replace

    s = service_spec(replace(SPEC, placement=placement), "abcdef", now=0)
    assert s.constraints == swarm
    assert tuple(swarm_constraint(r) for r in placement) == swarm
    assert tuple(human_rule(c) for c in swarm) == human


def test_human_rule_keeps_constraints_paasport_did_not_write() -> None:
    assert human_rule("node.role==manager") == "role=manager"
    assert human_rule("node.labels.pool == batch") == "pool=batch"
    assert human_rule("engine.labels.x") == "engine.labels.x"


def test_a_cmd_health_check_becomes_dockers_own() -> None:
    check = HealthCheck(mode="cmd", cmd="test -f /ok", interval_seconds=2, grace_period_seconds=5)
    s = service_spec(AppSpec("w", "m", "lab", "i", "a", "h" * 8, 1, healthcheck=check), "x", 0)
    assert s.healthcheck_cmd == "test -f /ok"
    assert (s.healthcheck_interval_ns, s.healthcheck_start_ns) == (2_000_000_000, 5_000_000_000)


def node(nid: str, name: str, state: str = "ready", **labels: str) -> dict[str, Any]:
    return {
        "ID": nid,
        "Description": {"Hostname": name, "Resources": {"NanoCPUs": 2_000_000_000,
                                                        "MemoryBytes": 1024 * 1024 * 1024}},
        "Spec": {"Availability": "active", "Role": "worker", "Labels": labels},
        "Status": {"State": state, "Addr": f"10.0.0.{nid[-1]}"},
    }  # fmt: skip


def service(sid: str, config: str = "c1", cpus: float = 0.5, mem: float = 64) -> dict[str, Any]:
    labels = {
        LABEL_TASK: "1", "paasport.service": "web", "paasport.instance": "main",
        "paasport.cluster": "lab", "paasport.config_hash": config, "paasport.git_sha": "s",
        "paasport.cpus": str(cpus), "paasport.mem": str(mem), "paasport.created": "10",
    }  # fmt: skip
    return {"ID": sid, "Spec": {"Name": f"pp-{sid}", "Labels": labels}}


def task(sid: str, node_id: str, state: str, err: str = "", port: int = 30001, **kw: Any) -> Any:
    status: dict[str, Any] = {"State": state, "Err": err}
    status["PortStatus"] = {"Ports": [{"TargetPort": 8888, "PublishedPort": port}]}
    if "exit" in kw:
        status["ContainerStatus"] = {"ExitCode": kw["exit"]}
    return {"ServiceID": sid, "NodeID": node_id, "DesiredState": "running", "Status": status,
            "CreatedAt": kw.get("created", "2026-01-01T00:00:00Z")}  # fmt: skip


NODES = [node("n1", "lab1"), node("n2", "lab2"), node("n3", "lab3", state="down")]
TASK_CASES = [
    # name, task, expected (state, host, port, exit code, message contains)
    ("running", task("s1", "n1", "running"), ("running", "10.0.0.1", 30001, None, "")),
    ("starting", task("s1", "n2", "preparing"), ("starting", "10.0.0.2", 30001, None, "")),
    ("crashed", task("s1", "n1", "failed", "exit 3", exit=3), ("exited", "10.0.0.1", 30001, 3, "exit 3")),
    ("host down", task("s1", "n3", "running"), ("dead", "10.0.0.3", 30001, None, "host lab3 is down")),
    ("bad image", task("s1", "n2", "rejected", "No such image: x"), ("dead", "10.0.0.2", 30001, None, "cannot be pulled on lab2")),
]  # fmt: skip


@pytest.mark.parametrize("name,payload,expected", TASK_CASES, ids=[c[0] for c in TASK_CASES])
def test_a_services_task_as_a_paasport_task(name: str, payload: Any, expected: Any) -> None:
    state = SwarmState([service("s1")], [payload], NODES)
    [version] = app_versions(state, "lab", now=20.0, constraints_of={})
    [t] = version.tasks
    assert (t.task_id, t.config_hash) == ("s1", "c1")
    assert (t.state, t.host, t.port, t.exit_code) == expected[:4]
    assert expected[4] in t.status_message
    assert t.host_lost == (name == "host down")  # lost with its host: no crash, no backoff


def test_the_newest_task_of_a_service_counts_and_other_clusters_are_ignored() -> None:
    other = service("s9")
    other["Spec"]["Labels"]["paasport.cluster"] = "prod"
    tasks = [
        task("s1", "n1", "failed", exit=1, created="2026-01-01T00:00:00Z"),
        task("s1", "n2", "running", created="2026-01-01T00:01:00Z"),
    ]
    [version] = app_versions(SwarmState([service("s1"), other], tasks, NODES), "lab", 0, {})
    assert [(t.task_id, t.state, t.node) for t in version.tasks] == [("s1", "running", "lab2")]


CAPS = [
    NodeCapacity("lab1", 2, 1024, 1.8, 100, labels={"pool": "default"}),
    NodeCapacity("lab2", 2, 1024, 0.5, 1000, labels={"pool": "batch"}),
]
PENDING_CASES = [
    ("no room", "no suitable node (insufficient resources on 2 nodes)", (),
     "no node with 1 cpus and 512 MB free (lab1 0.2 cpus/924 MB free, lab2 1.5 cpus/24 MB free)"),
    ("no pool", "no suitable node (scheduling constraints not satisfied on 2 nodes)",
     ("node.labels.pool==batch",), "constraint pool=batch matches no node"),
    ("no host", "no suitable node (scheduling constraints not satisfied on 2 nodes)",
     ("node.labels.pool==batch", "node.hostname!=lab2"), "constraint pool=batch and hostname!=lab2 matches no node"),
    ("no room in the pool", "no suitable node (scheduling constraints not satisfied on 1 node; insufficient resources on 1 node)",
     ("node.labels.pool==batch",), "no node matching pool=batch with 1 cpus and 512 MB free (lab2 1.5 cpus/24 MB free)"),
    ("no room beside lab2", "no suitable node (scheduling constraints not satisfied on 1 node; insufficient resources on 1 node)",
     ("node.hostname!=lab2",), "no node matching hostname!=lab2 with 1 cpus and 512 MB free (lab1 0.2 cpus/924 MB free)"),
    ("room only off the pool", "no suitable node (insufficient resources on 2 nodes)",
     ("node.labels.pool==gpu",), "constraint pool=gpu matches no node"),
    ("no constraints given", "no suitable node (scheduling constraints not satisfied on 2 nodes)",
     (), "the placement constraints match no node"),
    ("other", "no suitable node (1 node not available for new tasks)", (),
     "no suitable node (1 node not available for new tasks)"),
]  # fmt: skip


@pytest.mark.parametrize(
    "name,err,constraints,expected", PENDING_CASES, ids=[c[0] for c in PENDING_CASES]
)
def test_pending_reasons_in_words(name: str, err: str, constraints: Any, expected: str) -> None:
    assert pending_reason(err, 1, 512, constraints, CAPS) == expected


def test_a_pending_task_names_the_rules_of_its_service() -> None:
    placed = service("s1")
    placed["Spec"]["TaskTemplate"] = {
        "Placement": {"Constraints": ["node.labels.pool==batch", "node.hostname!=lab2"]}
    }
    err = "no suitable node (scheduling constraints not satisfied on 3 nodes)"
    state = SwarmState([placed], [task("s1", "", "pending", err)], NODES)
    assert constraints_of(placed) == ("node.labels.pool==batch", "node.hostname!=lab2")
    [version] = app_versions(state, "lab", 20.0, {"s1": constraints_of(placed)})
    [t] = version.tasks
    assert (t.state, t.status_message) == (
        "starting",
        "constraint pool=batch and hostname!=lab2 matches no node",
    )


def test_capacities_count_what_live_tasks_reserve_per_node() -> None:
    state = SwarmState(
        [service("s1"), service("s2"), service("s3")],
        [task("s1", "n1", "running"), task("s2", "n1", "starting"), task("s3", "n2", "failed")],
        NODES,
    )
    by_node = {c.node: c for c in capacities(state)}
    assert (
        by_node["lab1"].cpus_reserved,
        by_node["lab1"].mem_reserved_mb,
        by_node["lab1"].tasks,
    ) == (1.0, 128.0, 2)
    assert (by_node["lab2"].tasks, by_node["lab3"].state, by_node["lab1"].cpus) == (0, "down", 2.0)


def test_the_node_view_reports_the_cluster_views_task_ids() -> None:
    labels = dict(service("s1")["Spec"]["Labels"])
    labels["paasport.container_port"] = "8888"
    container = {
        "Id": "c" * 64, "Names": ["/pp-s1.1.x"], "State": "running", "Status": "Up 1 second",
        "Labels": {**labels, SWARM_SERVICE_ID: "s1"}, "Created": 10,
        "Ports": [{"PrivatePort": 8888, "PublicPort": 30007, "Type": "tcp", "IP": "0.0.0.0"}],
    }  # fmt: skip
    [version] = node_tasks([container], "lab2", "10.0.0.2")
    [t] = version.tasks
    assert (t.task_id, t.host, t.port, t.node, t.state) == (
        "s1",
        "10.0.0.2",
        30007,
        "lab2",
        "running",
    )


def test_services_whose_newest_task_is_on_a_down_node_are_named_with_the_node() -> None:
    tasks = [
        task("s1", "n1", "running"),
        task("s2", "n3", "running"),
        task("s3", "n3", "failed", created="2026-01-01T00:00:00Z"),
        task("s3", "n2", "running", created="2026-01-01T00:01:00Z"),  # moved off lab3
    ]
    state = SwarmState([service("s1"), service("s2"), service("s3")], tasks, NODES)
    assert services_on_lost_nodes(state) == {"s2": "lab3"}
