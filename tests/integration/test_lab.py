"""The 3-host lab itself (scripts/lab.sh): three Swarm nodes in their own namespaces, routed
nowhere outside the machine, with ZooKeeper and a registry reachable from every host, plain
Swarm tasks reachable across hosts, and the faults the multi-host tests inject."""

from __future__ import annotations

import json
import subprocess
import time

import pytest

from lab import Lab, lab, lab_sh  # noqa: F401  (the session fixture)


def nodes(lab: Lab) -> dict[str, tuple[str, str]]:  # noqa: F811
    out = lab.exec("lab1", "docker", "node", "ls", "--format", "{{.Hostname}} {{.Status}} {{.ID}}")
    rows = [line.split() for line in out.stdout.splitlines()]
    return {name: (status, node_id) for name, status, node_id in rows}


def test_three_ready_nodes_named_and_labelled(lab: Lab) -> None:  # noqa: F811
    found = nodes(lab)
    assert {name: status for name, (status, _) in found.items()} == {
        "lab1": "Ready",
        "lab2": "Ready",
        "lab3": "Ready",
    }
    labels = lab.exec(
        "lab1", "docker", "node", "inspect", "-f", "{{json .Spec.Labels}}",
        *(node_id for _, node_id in found.values()),
    ).stdout.split()  # fmt: skip
    assert all(json.loads(doc).get("pool") == "default" for doc in labels)


def test_the_lab_subnet_is_unreachable_from_the_root_namespace(lab: Lab) -> None:  # noqa: F811
    routes = subprocess.run(["ip", "route"], capture_output=True, text=True, timeout=10).stdout
    assert f"unreachable 10.251.{lab.lab_id}.0/24" in routes
    out = subprocess.run(
        ["curl", "-s", "-m", "2", f"http://{lab.registry}/v2/"], capture_output=True, timeout=10
    )
    assert out.returncode != 0


def test_exec_runs_on_the_host_with_its_env_and_exit_code(lab: Lab) -> None:  # noqa: F811
    out = lab.exec("lab2", "sh", "-c", 'hostname; echo "$DOCKER_HOST"; exit 3', check=False)
    assert out.returncode == 3
    assert out.stdout.split() == ["lab2", lab.socket("lab2")]
    addr = lab.exec("lab3", "docker", "info", "-f", "{{.Swarm.NodeAddr}}").stdout.strip()
    assert addr == lab.address["lab3"]


def test_zookeeper_and_the_registry_answer_from_another_host(lab: Lab) -> None:  # noqa: F811
    zk_host, zk_port = lab.zk_hosts.split(":")
    out = lab.exec(
        "lab2", "bash", "-c", f"exec 3<>/dev/tcp/{zk_host}/{zk_port}; printf srvr >&3; cat <&3",
        timeout=10,
    )  # fmt: skip
    assert "Mode:" in out.stdout
    catalog = lab.exec("lab3", "curl", "-fsS", "-m", "5", f"http://{lab.registry}/v2/_catalog")
    assert "paasport-lab/busybox" in json.loads(catalog.stdout)["repositories"]


def wait_for(what: str, predicate, timeout: float) -> None:  # type: ignore[no-untyped-def]
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            pytest.fail(f"{what}: not within {timeout:g}s")
        time.sleep(0.5)


def test_a_swarm_task_per_node_answers_from_another_host(lab: Lab) -> None:  # noqa: F811
    name = "labcheck"
    lab.exec(
        "lab1", "docker", "service", "create", "-d", "-q", "--name", name, "--mode", "global",
        "--endpoint-mode", "dnsrr", "--publish", "mode=host,target=8888",
        "--restart-condition", "none", lab.base_image, "httpd", "-f", "-p", "8888", "-h", "/",
    )  # fmt: skip
    try:

        def running() -> list[tuple[str, int]]:
            ps = lab.exec("lab1", "docker", "service", "ps", "-q", name, check=False).stdout.split()
            if len(ps) < 3:
                return []
            fmt = (
                "{{.Status.State}} {{.NodeID}} {{(index .Status.PortStatus.Ports 0).PublishedPort}}"
            )
            out = lab.exec("lab1", "docker", "inspect", "-f", fmt, *ps, check=False).stdout
            rows = [line.split() for line in out.splitlines()]
            if len(rows) < 3 or any(r[0] != "running" for r in rows):
                return []
            by_id = {node_id: host for host, (_, node_id) in nodes(lab).items()}
            return [(by_id[r[1]], int(r[2])) for r in rows]

        wait_for("a running task on each node", lambda: len(running()) == 3, 60)
        for host, port in running():
            other = "lab1" if host != "lab1" else "lab2"
            out = lab.exec(
                other, "curl", "-s", "-m", "3", "-o", "/dev/null", "-w", "%{http_code}",
                f"http://{lab.address[host]}:{port}/bin/", check=False,
            )  # fmt: skip
            assert out.stdout in ("200", "404"), f"{host}:{port} from {other}: {out.stderr}"
    finally:
        lab.exec("lab1", "docker", "service", "rm", name, check=False)


def test_a_host_cut_off_goes_down_and_comes_back(lab: Lab) -> None:  # noqa: F811
    lab.fail("lab3", "network")
    try:
        wait_for("lab3 Down", lambda: nodes(lab)["lab3"][0] == "Down", 40)
        out = lab.exec(
            "lab1", "curl", "-s", "-m", "2", f"http://{lab.address['lab3']}:1/", check=False
        )
        assert out.returncode != 0
    finally:
        lab.heal("lab3")
    assert nodes(lab)["lab3"][0] == "Ready"


def test_env_prints_the_labs_facts(lab: Lab) -> None:  # noqa: F811
    out = lab_sh(lab.lab_id, "env")
    assert f"LAB_CONFIG={lab.config}" in out.stdout
    assert lab.config.read_text().count("engine: swarm") == 1
    assert lab.soa_dir.is_dir()
