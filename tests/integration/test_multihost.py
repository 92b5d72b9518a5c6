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


# -- one-off runs and scheduled jobs on Swarm ---------------------------------------------------

RUN_PREFIX = "paasport-run-"  # engine/swarm.py: the Swarm service of a one-off task
LOCK_HELD = "holding the cluster lock"  # platform/lock.py: a deployd that acts


def deployd_acting_on(web: Web, host: str = "lab1") -> None:
    """Make ``host``'s deployd the one holding the cluster lock (an earlier test leaves it on
    lab2): the reaper and the job scheduler record in their own host's event log."""
    others = {h: p for h, p in web.deployds.items() if h != host and p.poll() is None}
    mine = web.deployds.get(host)
    log = web.root / f"{web.cluster}-{host}-deployd.log"
    start = 0
    if mine is None or mine.poll() is not None:
        start = log.stat().st_size if log.exists() else 0
    for proc in others.values():
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while any(p.poll() is None for p in others.values()) and time.monotonic() < deadline:
        time.sleep(0.2)
    for h, proc in others.items():
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
        del web.deployds[h]
    if mine is None or mine.poll() is not None:
        web.start_deployd(host)

    def holding() -> bool:
        with log.open("rb") as f:
            f.seek(start)
            said = [ln for ln in f.read().decode(errors="replace").splitlines() if "lock" in ln]
        return bool(said) and LOCK_HELD in said[-1]

    web.wait(f"{host}'s deployd to hold the cluster lock", holding, 30)


def run_services(web: Web) -> list[str]:
    out = web.lab.exec("lab1", "docker", "service", "ls", "--format", "{{.Name}}")
    return [n for n in out.stdout.split() if n.startswith(RUN_PREFIX)]


def remove_run_services(web: Web) -> None:
    names = run_services(web)
    if names:
        web.lab.exec("lab1", "docker", "service", "rm", *names, check=False, timeout=120)


def main_and_runs(web: Web) -> tuple[dict[str, Any], list[dict[str, Any]]]:
    """``status -s web --json`` on lab1: main's entry and the one-off runs it lists."""
    entries = json.loads(web.paasport("lab1", "status", "-s", SERVICE, "--json", check=False))
    [main] = [e for e in entries if e["instance"] == "main" and not e.get("run")]
    return main, [e["run"] for e in entries if e.get("run")]


def assert_six_tasks_of_main(main: dict[str, Any]) -> None:
    tasks = main["tasks"]
    assert len(tasks) == INSTANCES, tasks
    assert all(t["state"] == "running" and t["health"] == "healthy" for t in tasks), tasks


def run_events(web: Web, host: str, run_id: str) -> dict[str, dict[str, Any]]:
    """The ``run`` events of ``run_id`` in ``host``'s event log, by state (started, finished)."""
    out = web.paasport(host, "events", "-s", SERVICE, "--kind", "run", "--json", check=False)
    return {e["data"]["state"]: e for e in json.loads(out) if e["data"].get("run_id") == run_id}


def kept(web: Web, path: str) -> list[str]:
    return web.lab.exec("lab1", "cat", path).stdout.splitlines()


def run_id_in(said: str) -> str:
    """The run id in `paasport run`'s "run 5757977f started (...)" line."""
    for words in (line.split() for line in said.splitlines()):
        if len(words) >= 3 and words[0] == "run" and words[2] == "started":
            return words[1]
    pytest.fail(f"no 'run ID started' line in:\n{said}")


def test_a_run_from_main_prints_its_output_exits_with_its_code_and_leaves_no_service(
    web: Web,
) -> None:
    deployd_acting_on(web, "lab1")
    t0 = time.monotonic()
    out = web.lab.exec("lab1", "paasport", "run", "-s", SERVICE, "-c", web.cluster, "--from",
                       "main", "--cmd", "echo from-swarm; echo $PAASTA_SERVICE; exit 3",
                       check=False)  # fmt: skip
    took = time.monotonic() - t0
    assert out.returncode == 3, out
    assert out.stdout.splitlines() == ["from-swarm", SERVICE], out  # main's env: PAASTA_SERVICE
    run_id = run_id_in(out.stderr)
    assert run_services(web) == []
    events = run_events(web, "lab1", run_id)
    assert events.keys() == {"started", "finished"}, events
    assert events["finished"]["data"]["exit_code"] == 3
    assert kept(web, events["finished"]["data"]["log"]) == ["from-swarm", SERVICE]
    main, runs = main_and_runs(web)
    assert_six_tasks_of_main(main)
    assert runs == []
    assert len(web.services()) == INSTANCES
    print(f"paasport run on swarm: exit 3 in {took:.1f}s")


def test_a_running_one_off_is_listed_but_never_counted_as_a_task_of_main(web: Web) -> None:
    deployd_acting_on(web, "lab1")
    command = "echo background-run; sleep 5; exit 0"
    log = web.root / "run-background.log"
    proc = web.lab.spawn("lab1", "paasport", "run", "-s", SERVICE, "-c", web.cluster, "--from",
                         "main", "--cmd", command, log=log)  # fmt: skip
    t0 = time.monotonic()
    try:
        seen: list[tuple[dict[str, Any], list[dict[str, Any]]]] = []
        while time.monotonic() - t0 < 15:
            main, runs = main_and_runs(web)
            seen.append((main, runs))
            if any(r["state"] != "pending" for r in runs) or proc.poll() is not None:
                break
            time.sleep(0.5)
        listed = [(m, r) for m, r in seen if r]
        assert listed, f"status never listed the run; the CLI said:\n{log.read_text()}"
        for main, runs in listed:  # a one-off is never one of main's tasks
            assert_six_tasks_of_main(main)
            [run] = runs
            assert (run["command"], run["kind"], run["instance"]) == (command, "adhoc", "main")
        [run] = listed[-1][1]
        assert run["state"] == "running", run  # Swarm runs it: where, the status says
        assert run["node"] in web.lab.hosts, run
        while proc.poll() is None and time.monotonic() - t0 < 25:
            time.sleep(0.2)
        took = time.monotonic() - t0
        said = log.read_text(errors="replace")
        assert proc.poll() == 0, f"paasport run of a task that exits 0 ended {proc.poll()}:\n{said}"
        assert "background-run" in said.splitlines(), said
        assert run_services(web) == []
        main, runs = main_and_runs(web)
        assert_six_tasks_of_main(main)
        assert runs == []
        print(f"paasport run 'sleep 5; exit 0' on swarm ended in {took:.1f}s")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGINT)  # the CLI's Ctrl-C: it stops and removes its run
            with contextlib.suppress(Exception):
                proc.wait(timeout=15)
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        remove_run_services(web)


def test_a_detached_run_is_listed_then_finished_by_deployds_reaper(web: Web) -> None:
    deployd_acting_on(web, "lab1")
    out = web.lab.exec("lab1", "paasport", "run", "-s", SERVICE, "-c", web.cluster, "--from",
                       "main", "--cmd", "echo detached-run; exit 0", "--detach")  # fmt: skip
    run_id = out.stdout.strip()
    t0 = time.monotonic()
    try:
        assert f"{RUN_PREFIX}{SERVICE}-{run_id}" in run_services(web)
        main, runs = main_and_runs(web)
        assert_six_tasks_of_main(main)
        assert [r["run_id"] for r in runs] == [run_id], runs

        # it ends at once; status lists it exited until the reaper finishes it
        deadline = time.monotonic() + 15
        while runs and runs[0]["state"] != "exited" and time.monotonic() < deadline:
            time.sleep(0.5)
            main, runs = main_and_runs(web)
            assert_six_tasks_of_main(main)
        if runs:  # else the reaper was already there
            assert (runs[0]["state"], runs[0]["exit_code"]) == ("exited", 0), runs[0]

        def reaped() -> dict[str, Any] | None:
            finished = run_events(web, "lab1", run_id).get("finished")
            return finished if finished and not run_services(web) else None

        finished = web.wait(f"deployd's reaper to finish run {run_id}", reaped, 60, every=1)
        took = time.monotonic() - t0
        assert finished["data"]["exit_code"] == 0, finished
        assert kept(web, finished["data"]["log"]) == ["detached-run"]
        main, runs = main_and_runs(web)
        assert_six_tasks_of_main(main)
        assert runs == []
        print(f"detached run reaped {took:.1f}s after it started")
    finally:
        remove_run_services(web)


TRON_YAML = """\
nightly:
  schedule: "daily 04:00"
  enabled: false
  deploy_group: lab.main
  actions:
    first: {command: "echo first-action of $PAASTA_SERVICE", cpus: 0.1, mem: 32}
    second: {command: "echo second-action", requires: [first], cpus: 0.1, mem: 32}
"""


def test_job_run_now_runs_a_tron_jobs_two_actions_in_order_on_swarm(web: Web) -> None:
    deployd_acting_on(web, "lab1")
    tron = web.folder / f"tron-{web.cluster}.yaml"
    tron.write_text(TRON_YAML)
    try:
        listed = json.loads(web.paasport("lab1", "jobs", "-s", SERVICE, "--json"))
        assert [j["job"] for j in listed] == ["nightly"], listed
        t0 = time.monotonic()
        out = web.lab.exec("lab1", "paasport", "job-run-now", "-s", SERVICE, "-j", "nightly",
                           "--json")  # fmt: skip
        run_id = json.loads(out.stdout)["run_id"]
        assert "no action of run" not in out.stderr, out.stderr  # the scheduler picked it up

        def ended() -> dict[str, Any]:
            args = ("job-runs", "-s", SERVICE, "-j", "nightly", "--json")
            doc = json.loads(web.paasport("lab1", *args))
            [run] = [r for r in doc["runs"] if r["run_id"] == run_id]
            return dict(run)

        deadline = time.monotonic() + 30
        while (run := ended())["state"] == "running" and time.monotonic() < deadline:
            time.sleep(1)
        took = time.monotonic() - t0
        assert run["state"] == "succeeded", run
        attempts = {a["action"]: a["attempts"] for a in run["actions"]}
        assert attempts.keys() == {"first", "second"}, run
        [first], [second] = attempts["first"], attempts["second"]
        assert first["exit_code"] == 0 and second["exit_code"] == 0, run
        assert second["started"] >= first["finished"], run  # second requires first
        assert kept(web, first["log"]) == [f"first-action of {SERVICE}"]
        assert kept(web, second["log"]) == ["second-action"]
        assert run_services(web) == []
        main, runs = main_and_runs(web)
        assert_six_tasks_of_main(main)
        assert runs == []
        print(f"job run of two actions on swarm took {took:.1f}s")
    finally:
        tron.unlink(missing_ok=True)
        remove_run_services(web)


# -- autoscaling across hosts -------------------------------------------------------------------

HOT_PORT = 19311
BURN_SECONDS = 25  # every task of "hot" burns its CPU until the same instant, then only serves
HOT_YAML = """\
main:
  cpus: 0.1
  mem: 32
  instances: 1
  min_instances: 1
  max_instances: 3
  cmd: {cmd}
  container_port: 8888
  healthcheck_grace_period_seconds: 3
  healthcheck_interval_seconds: 1
  constraints: [[hostname, UNLIKE, lab1]]
  autoscaling:
    metrics_providers: [{{type: cpu, setpoint: 0.5, moving_average_window_seconds: 6}}]
    scaledown_policies: {{stabilizationWindowSeconds: 10}}
"""


def hot_cmd(end: int) -> str:
    """Serve /status, and busy-loop (a 0.1-cpu task's whole allotment) until epoch ``end``."""
    return (
        "mkdir -p /www && echo hot > /www/index.html && echo ok > /www/status;"
        f" (while [ $(date +%s) -lt {end} ]; do :; done) &"
        " trap 'exit 0' TERM; httpd -f -p 8888 -h /www & wait"
    )


def restart_deployd(web: Web, host: str, *flags: str) -> None:
    """Stop every deployd, start ``host``'s with ``flags``; wait until it holds the lock."""
    running = [p for p in web.deployds.values() if p.poll() is None]
    for proc in running:
        os.killpg(proc.pid, signal.SIGTERM)
    deadline = time.monotonic() + 15
    while any(p.poll() is None for p in running) and time.monotonic() < deadline:
        time.sleep(0.2)
    for proc in running:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait(timeout=10)
    web.deployds.clear()
    log = web.root / f"{web.cluster}-{host}-deployd.log"
    start = log.stat().st_size if log.exists() else 0
    web.start_deployd(host, *flags)

    def holding() -> bool:
        with log.open("rb") as f:
            f.seek(start)
            said = [ln for ln in f.read().decode(errors="replace").splitlines() if "lock" in ln]
        return bool(said) and LOCK_HELD in said[-1]

    web.wait(f"{host}'s deployd to hold the cluster lock", holding, 30)


def autoscale_events(svc: Web) -> list[dict[str, Any]]:
    out = svc.paasport("lab1", "events", "-s", svc.service, "--kind", "autoscale", "--json")
    return sorted(json.loads(out), key=lambda e: e["time"])


def test_an_instance_off_the_manager_scales_on_its_agents_cpu_reports_and_back(web: Web) -> None:
    repo = new_repo(web.root / "hot-repo")
    hot = Web(web.lab, web.root, repo, web.lab.soa_dir, "hot", instances=1, proxy_port=HOT_PORT)
    restart_deployd(web, "lab1", "--autoscale-seconds", "2")
    t0 = time.time()
    end = int(t0) + BURN_SECONDS
    try:
        hot.write(HOT_YAML.format(cmd=json.dumps(hot_cmd(end))))
        hot.mark(hot.new_version())

        def at_max() -> dict[str, Any] | None:
            st = hot.status()
            auto = st.get("autoscaling") or {}
            return st if auto.get("target") == 3 and st["expected"] == 3 else None

        st = hot.wait("hot scaled up to 3 on its burning tasks", at_max, end - time.time(), 1)
        up_at = time.time() - t0
        # lab1, the manager, runs none of them: its engine has no stats of them, so the only
        # CPU readings the autoscaler had were the lab2/lab3 agents' reports (without any, a
        # task counts at the setpoint and the count holds)
        assert set(hosts_of(st)) <= {"lab2", "lab3"}, st["tasks"]
        local = web.lab.exec("lab1", "docker", "ps", "-q", "--filter", "label=paasport.service=hot")
        assert local.stdout.split() == []
        assert st["autoscaling"]["metric"] > 0.5, st["autoscaling"]
        said = autoscale_events(hot)
        ups = [e for e in said if e["data"].get("to", 0) > e["data"].get("from", 9)]
        assert [e["data"]["to"] for e in ups][-1] == 3, ups
        assert ups[0]["data"]["from"] == 1 and ups[0]["data"]["metric"] > 0.5, ups
        assert all(e["message"].startswith("cpu ") and "-> " in e["message"] for e in ups), ups

        hot.wait("the burn to end", lambda: time.time() >= end, BURN_SECONDS + 5)

        def scaled_down() -> dict[str, Any] | None:
            st = hot.status()
            return st if (st.get("autoscaling") or {}).get("target", 3) < 3 else None

        st = hot.wait("hot to scale down once the burn ended", scaled_down, 45, 1)
        down_after = time.time() - end
        assert down_after >= 10, f"scaled down {down_after:.1f}s after the burn ended (window 10s)"
        [down] = [e for e in autoscale_events(hot) if e["data"].get("from") == 3
                  and e["data"]["to"] < 3]  # fmt: skip
        assert down["message"].startswith("cpu ") and down["data"]["metric"] < 0.5, down
        # PaaSTA's HPA rule: at most 30% of 3 tasks a minute, so 3 -> 2 first
        assert down["message"].endswith("3 -> 2"), down
        hot.wait("2 hot tasks running", lambda: hot.status()["running"] == 2, 30, 1)
        print(f"autoscaling off the manager: 1 -> 3 in {up_at:.1f}s from the config, "
              f"3 -> 2 {down_after:.1f}s after the burn ended")  # fmt: skip
        for e in [*ups, down]:
            print(f"  {e['message']}")
    finally:
        shutil.rmtree(hot.folder, ignore_errors=True)
        names = hot.services()
        if names:
            web.lab.exec("lab1", "docker", "service", "rm", *names, check=False, timeout=120)
        restart_deployd(web, "lab1")
    assert_six_tasks_of_main(main_and_runs(web)[0])
