"""paasport on the 3-host lab (scripts/lab.sh): the swarm engine, an agent and HAProxy on every
host, deployd on lab1, all started by the test as a user would (`paasport agent`, `paasport
deployd`, `paasport mark-for-deployment` run on the lab's hosts).

One service ``web`` of 6 tasks, routed as web.main on every host's proxy port. The tests run in
file order and each leaves the service converged and healthy for the next: spread over the 3
hosts, a host whose dockerd dies, a host cut off, a crossover bounce under load, ZooKeeper away
for 30 s, and a second deployd taking over from a SIGKILLed first. Load runs inside lab1
(tests/integration/lab_load.py) because the lab's subnet is unreachable from here.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import signal
import time
from collections.abc import Iterator
from typing import Any

import pytest

from harness import new_repo
from lab import Lab, lab, stop_spawned  # noqa: F401  (the session fixture)
from lab_service import LabService as Web
from lab_service import Load, hosts_of, instances_yaml

SERVICE = "web"
INSTANCES = 6
PROXY_PORT = 19301
SESSION_TIMEOUT = 4  # scripts/lab.sh: zookeeper_session_timeout_seconds
INSTANCES_YAML = instances_yaml(INSTANCES)


@pytest.fixture(scope="module")
def web(lab: Lab, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Web]:  # noqa: F811
    root = tmp_path_factory.mktemp("multihost")
    w = Web(lab, root, new_repo(root / "web-repo"), lab.soa_dir, SERVICE, instances=INSTANCES,
            proxy_port=PROXY_PORT)  # fmt: skip
    w.write()
    try:
        sha = w.new_version()
        for host in lab.hosts:
            w.start_agent(host)
        w.start_deployd("lab1")
        w.mark(sha)
        w.wait("6 healthy tasks of the first version", lambda: w.converged(sha), 120)
        yield w
    finally:
        stop_spawned()
        names = w.services() if lab.exec("lab1", "true", check=False).returncode == 0 else []
        if names:
            lab.exec("lab1", "docker", "service", "rm", *names, check=False, timeout=120)
        shutil.rmtree(w.folder, ignore_errors=True)


def test_six_tasks_spread_over_the_three_hosts_and_answer_through_every_proxy(web: Web) -> None:
    st = web.status()
    assert hosts_of(st) == {"lab1": 2, "lab2": 2, "lab3": 2}, st["tasks"]
    assert {t["host"] for t in st["tasks"]} == set(web.lab.address.values())
    assert len(web.services()) == INSTANCES  # one Swarm service per task
    for host in web.lab.hosts:

        def up_in(h: str = host) -> list[dict[str, Any]]:
            return [b for b in web.backends(h) if b["state"] == "up"]

        up = web.wait(f"6 backends up in {host}'s proxy", up_in, 30)
        assert len(up) == INSTANCES
        status, body = web.lab.get(host, PROXY_PORT)
        assert status == 200 and body.startswith("web "), body
    text = web.paasport("lab1", "status", "-s", SERVICE, "-v")
    assert all(h in text for h in web.lab.hosts), text
    hosts = json.loads(web.paasport("lab1", "hosts", "--json"))
    assert sorted(n["node"] for n in hosts["hosts"]) == ["lab1", "lab2", "lab3"]


def _replaced_without(web: Web, lost: str, sha: str) -> dict[str, Any] | None:
    st = web.converged(sha)
    if st is None or lost in hosts_of(st):
        return None
    return st


def _names_down(text: str, lost: str) -> bool:
    """Whether a ``status -v`` says the instance is short because ``lost`` went down."""
    return "Host down" in text and (f"{lost}, which" in text or f"{lost} (down)" in text)


def _routes_to(web: Web, host: str, address: str) -> bool:
    return any(
        b["addr"].startswith(f"{address}:") and b["state"] != "not in proxy"
        for b in web.backends(host)
    )


def lose_a_host(web: Web, fault: str) -> None:
    """Take lab3 down by ``fault`` under load through lab1: its backends leave lab1's and
    lab2's proxies, its tasks come back on lab1/lab2, status names it; it heals and rejoins."""
    sha = web.status()["git_sha"]
    lost, address = "lab3", web.lab.address["lab3"]
    assert lost in hosts_of(web.status()), "lab3 runs none of the tasks: nothing to lose"
    with Load(web, name=f"lost-{fault}") as load:
        time.sleep(2)
        web.lab.fail(lost, fault)
        t0, failed_at = time.monotonic(), time.time()
        try:
            for host in ("lab1", "lab2"):
                web.wait(f"{host}'s proxy to stop routing to {lost}",
                         lambda h=host: not _routes_to(web, h, address), 30)  # fmt: skip
            left = time.monotonic() - t0
            st = web.wait(f"6 healthy tasks on lab1/lab2 after {lost} died",
                          lambda: _replaced_without(web, lost, sha), 90)  # fmt: skip
            replaced = time.monotonic() - t0
        finally:
            web.lab.heal(lost)
        time.sleep(2)
    assert hosts_of(st).keys() == {"lab1", "lab2"}
    # status -vv's recent events say where the tasks went (while they are being replaced its
    # verdict says "Host down: 2 tasks on lab3, which is down")
    recent = web.paasport("lab1", "status", "-s", SERVICE, "-vv", check=False)
    assert f"lost with its host (host {lost} is down)" in recent, recent
    failed = load.result["failed"]
    print(f"{fault}: backends left both proxies in {left:.1f}s, replicated in {replaced:.1f}s; "
          f"{load.result['ok']} ok, {failed} failed")  # fmt: skip
    assert load.result["ok"] > 100
    assert left < SESSION_TIMEOUT + 3  # within the ZooKeeper session timeout (and a pass)
    # no request lost beyond that window: every failure came before the backends had left
    late = [f for f in load.result["failures"] if float(f.split()[0]) > failed_at + left + 1]
    assert late == [], late
    web.wait(f"{lost} Ready again", lambda: json_node_state(web, lost) == "ready", 60)
    assert web.agents[lost].poll() is None, f"the agent on {lost} stopped"


def test_a_host_whose_dockerd_dies_is_replaced_left_by_every_proxy_and_rejoins(web: Web) -> None:
    lose_a_host(web, "docker")


def json_node_state(web: Web, host: str) -> str:
    hosts = json.loads(web.paasport("lab1", "hosts", "--json"))
    [node] = [n for n in hosts["hosts"] if n["node"] == host]
    return str(node["state"])


def test_a_crossover_bounce_under_load_loses_no_request_and_uses_every_host(web: Web) -> None:
    sha = web.new_version()
    with Load(web, name="crossover") as load:
        time.sleep(1)
        web.mark(sha)
        st = web.wait("the crossover to converge", lambda: web.converged(sha), 120)
        time.sleep(1)
    assert load.result["failed"] == 0, load.result["failures"]
    assert load.result["ok"] > 200
    assert hosts_of(st).keys() == {"lab1", "lab2", "lab3"}  # the rejoined host is used again
    assert len(web.services()) == INSTANCES


def test_a_host_cut_off_is_replaced_left_by_every_proxy_and_rejoins(web: Web) -> None:
    lose_a_host(web, "network")


def test_zookeeper_away_30s_fails_no_request_and_the_waiting_bounce_finishes(web: Web) -> None:
    sha = web.new_version()
    with Load(web, name="zookeeper") as load:
        time.sleep(1)
        web.lab.fail("lab1", "zookeeper")
        try:
            web.mark(sha)
            time.sleep(30)
            st = web.status()
            assert st["git_sha"] == sha and not web.converged(sha)  # waiting, not done
            for host in web.lab.hosts:
                assert web.agents[host].poll() is None, f"the agent on {host} stopped"
        finally:
            web.lab.heal("lab1")
        web.wait("the bounce to finish after ZooKeeper returned", lambda: web.converged(sha), 120)
        time.sleep(1)
    assert load.result["failed"] == 0, load.result["failures"]
    assert load.result["ok"] > 200


def test_a_second_deployd_stands_by_then_takes_over_a_sigkilled_first(web: Web) -> None:
    standby = web.start_deployd("lab2")
    time.sleep(3)
    assert standby.poll() is None
    first = web.deployds["lab1"]
    sha = web.new_version()
    web.mark(sha)

    def bouncing() -> bool:
        st = web.status()
        return any(t["new"] and t["state"] == "running" for t in st["tasks"])

    web.wait("the bounce to start", bouncing, 60)
    os.killpg(first.pid, signal.SIGKILL)
    first.wait(timeout=10)
    st = web.wait("the standby to finish the bounce", lambda: web.converged(sha), 120)
    assert len(web.services()) == INSTANCES  # no orphan
    assert [v["git_sha"] for v in st["app_versions"]] == [sha]  # no duplicate app version
    log = (web.root / "lab-lab2-deployd.log").read_text(errors="replace")
    assert "lock" in log.lower(), log[-2000:]
    with contextlib.suppress(KeyError):
        del web.deployds["lab1"]


PLACED_YAML = """
batch:
  cpus: 0.1
  mem: 32
  instances: 2
  cmd: "trap 'exit 0' TERM; sleep 3600 & wait"
  deploy_group: lab.main
  pool: batch
gpu:
  cpus: 0.1
  mem: 32
  instances: 1
  cmd: "trap 'exit 0' TERM; sleep 3600 & wait"
  deploy_group: lab.main
  pool: gpu
"""


def test_pool_places_tasks_on_the_nodes_labelled_so_and_names_a_pool_no_node_has(web: Web) -> None:
    instances = web.lab.soa_dir / SERVICE / "instances-lab.yaml"
    web.lab.exec("lab1", "docker", "node", "update", "--label-add", "pool=batch", "lab2")
    try:
        instances.write_text(INSTANCES_YAML + PLACED_YAML)

        def placed() -> dict[str, Any] | None:
            out = web.paasport("lab1", "status", "-s", SERVICE, "--json", check=False)
            by = {e["instance"]: e for e in json.loads(out)}
            batch, gpu = by.get("batch"), by.get("gpu")
            if not batch or not gpu or batch["healthy"] != 2 or not gpu["tasks"]:
                return None
            return by

        by = web.wait("batch on lab2 and gpu pending", placed, 60)
        assert hosts_of(by["batch"]) == {"lab2": 2}
        [pending] = by["gpu"]["tasks"]
        assert pending["state"] == "starting"
        assert pending["status_message"] == "constraint pool=gpu matches no node", pending
        text = web.paasport("lab1", "status", "-s", SERVICE, "-i", "gpu", check=False)
        assert "constraint pool=gpu matches no node" in text, text
    finally:
        instances.write_text(INSTANCES_YAML)
        web.lab.exec("lab1", "docker", "node", "update", "--label-add", "pool=default", "lab2")
    web.wait("the batch and gpu tasks removed", lambda: len(web.services()) == INSTANCES, 60)
