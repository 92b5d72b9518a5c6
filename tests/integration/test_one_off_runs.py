"""`paasport run` on the real Docker engine: an adhoc instance's one-off task exits with its
code, its output kept and its start and end in the event log, its container removed; --from
main runs with main's env; a running one is listed in status but never counted as main's task,
and Ctrl-C stops it; -t gives a terminal; --detach leaves it to deployd's reaper, which waits
REAP_AFTER seconds after the exit (so a paused CLI still finishes its own run); another cluster
runs it through this cluster's API; and mistakes are one "error:" line.

One e2e_world serves the module (its `up` serves the API and reaps); the tests run in order.
"""

from __future__ import annotations

import json
import os
import pty
import re
import select
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from e2e_world import (
    E2E,
    INSTANCES,
    PAASPORT,
    SERVICE,
    NotYet,
    e2e_world,
    git,
    healthy_in_proxy,
    wait_for,
)

from discovery_support import free_port

pytestmark = pytest.mark.integration

OTHER = "runsother"  # the cluster of the second paasport.yaml, which reaches ours by its API
OUT_LINE, ERR_LINE = "one-off says hi on stdout", "one-off says hi on stderr"
STARTED = re.compile(r"run ([a-z0-9]+) started")
REAP_AFTER = 10  # deployd finishes an adhoc run nobody finished this many seconds after it exited


@dataclass
class RunWorld:
    world: E2E
    sha: str
    api: str  # the API `up` serves for our cluster
    token: str  # an e2e-team token of our cluster
    other_config: Path  # a host of OTHER: our cluster only through `api`


def adhoc_file(cluster: str) -> str:
    group = f"{cluster}.main"
    return json.dumps({
        "report": {"cpus": 0.1, "mem": 32, "deploy_group": group,
                   "cmd": f"echo {OUT_LINE}; echo {ERR_LINE} >&2; exit 3"},
        "sleeper": {"cpus": 0.1, "mem": 32, "deploy_group": group, "cmd": "sleep 120"},
        "brief": {"cpus": 0.1, "mem": 32, "deploy_group": group,
                  "cmd": "echo detached-line; sleep 5; exit 5"},
        "long": {"cpus": 0.1, "mem": 32, "deploy_group": group,
                 "cmd": f"sleep {REAP_AFTER + 1}; echo long-done; exit 3"},
        "later": {"cpus": 0.1, "mem": 32, "deploy_group": f"{cluster}.later", "cmd": "true"},
    }, indent=2) + "\n"  # fmt: skip


@pytest.fixture(scope="module")
def rw() -> Iterator[RunWorld]:
    with tempfile.TemporaryDirectory(prefix="paasport-test-") as tmp, e2e_world(Path(tmp)) as w:
        (w.soa / SERVICE / f"adhoc-{w.cluster}.yaml").write_text(adhoc_file(w.cluster))
        with (w.soa / SERVICE / "deploy.yaml").open("a") as deploy:
            deploy.write(f"  - step: {w.cluster}.later\n")  # a group never marked
        sha = git(w.repo, "rev-parse", "HEAD")
        w.run("cook-image", "-s", SERVICE, "-c", sha)
        w.run("mark-for-deployment", "-s", SERVICE, "-l", f"{w.cluster}.main", "-c", sha)
        port = free_port()
        w.start_up("--api-listen", f"127.0.0.1:{port}")
        token = json.loads(w.run("token", "create", "--team", "e2e", "--json").stdout)["token"]
        other = w.root / OTHER
        other.mkdir()
        (other / "paasport.yaml").write_text(
            f"local_cluster: {OTHER}\n"
            f"clusters:\n  {OTHER}:\n    engine: docker\n"
            f"  {w.cluster}:\n    engine: docker\n    api_url: http://127.0.0.1:{port}\n"
            f"soa_dir: {json.dumps(str(w.soa))}\n"
            f"state_dir: {json.dumps(str(other / 'state'))}\n"
        )
        wait_for("3 healthy tasks", lambda: healthy_in_proxy(w), 90, w.up_log)
        yield RunWorld(w, sha, f"http://127.0.0.1:{port}", token, other / "paasport.yaml")


def paasport_run(world: E2E, *args: str, config: Path | None = None,
                 timeout: float = 60) -> subprocess.CompletedProcess[str]:  # fmt: skip
    return subprocess.run(
        [*PAASPORT, "run", "-s", SERVICE, *args, "--config", str(config or world.config)],
        capture_output=True, text=True, env=world.env, timeout=timeout, check=False,
    )  # fmt: skip


def run_id_of(stderr: str) -> str:
    found = STARTED.search(stderr)
    assert found, stderr
    return found.group(1)


def run_containers(cluster: str, run_id: str | None = None) -> list[str]:
    """Every container (running or not) labelled as a one-off of ``cluster`` (and ``run_id``)."""
    labels = [f"label=paasport.run.cluster={cluster}"]
    if run_id is not None:
        labels.append(f"label=paasport.run={run_id}")
    argv = ["docker", "ps", "-aq"]
    for label in labels:
        argv += ["--filter", label]
    return subprocess.run(argv, capture_output=True, text=True, timeout=60,
                          check=True).stdout.split()  # fmt: skip


def run_events(world: E2E, run_id: str) -> list[dict[str, Any]]:
    """The `run` events of ``run_id`` as `paasport events --json` gives them, oldest first."""
    out = world.run("events", "-s", SERVICE, "--json", "--kind", "run", "-n", "1000")
    found = json.loads(out.stdout)
    assert isinstance(found, list), out.stdout
    return [e for e in found if e["data"].get("run_id") == run_id]


def finished_event(world: E2E, run_id: str) -> Any:  # its event, or NotYet
    ended = [e for e in run_events(world, run_id) if e["data"].get("state") == "finished"]
    return ended[0] if ended else NotYet(f"no finished event of run {run_id} yet")


def log_file(world: E2E, run_id: str) -> Path:
    return world.state / "runs" / SERVICE / f"{run_id}.log"


def status_json(world: E2E) -> list[dict[str, Any]]:
    out = world.run("status", "-s", SERVICE, "-c", world.cluster, "--json", check=False)
    found = json.loads(out.stdout)
    assert isinstance(found, list), out.stdout + out.stderr
    return found


def test_an_adhoc_run_exits_with_its_code_and_leaves_its_output(rw: RunWorld) -> None:
    world = rw.world
    before = time.time()
    out = paasport_run(world, "-c", world.cluster, "-i", "report")
    assert out.returncode == 3, out.stdout + out.stderr
    assert OUT_LINE in out.stdout.splitlines() and ERR_LINE in out.stdout.splitlines(), out
    assert "Traceback" not in out.stderr
    run_id = run_id_of(out.stderr)
    [started, ended] = run_events(world, run_id)
    assert started["kind"] == ended["kind"] == "run"
    assert (started["service"], started["instance"], started["cluster"]) == (
        SERVICE, "report", world.cluster)  # fmt: skip
    assert started["message"].startswith(f"one-off run {run_id} started by "), started
    assert started["data"]["state"] == "started" and started["data"]["git_sha"] == rw.sha
    assert f"one-off run {run_id} exited 3 after " in ended["message"], ended
    assert ended["level"] == "warning" and ended["data"]["exit_code"] == 3, ended
    assert before <= started["time"] <= ended["time"] <= time.time()
    kept = log_file(world, run_id)
    assert ended["data"]["log"] == str(kept)
    assert {OUT_LINE, ERR_LINE} <= set(kept.read_text().splitlines())
    assert f"output kept in {kept}" in out.stderr, out.stderr
    assert run_containers(world.cluster, run_id) == []


def test_from_main_runs_with_mains_env(rw: RunWorld) -> None:
    world = rw.world
    cmd = "echo greeting=$GREETING; env | grep ^PAASTA_ | sort"
    out = paasport_run(world, "-c", world.cluster, "--from", "main", "--cmd", cmd)
    assert out.returncode == 0, out.stdout + out.stderr
    lines = set(out.stdout.splitlines())
    expected = {
        "greeting=hello",
        f"PAASTA_SERVICE={SERVICE}",
        "PAASTA_INSTANCE=main",
        f"PAASTA_CLUSTER={world.cluster}",
        f"PAASTA_DEPLOY_GROUP={world.cluster}.main",
        f"PAASTA_GIT_SHA={rw.sha[:8]}",
    }
    assert expected <= lines, out.stdout
    assert any(ln.startswith("PAASTA_DOCKER_IMAGE=") and rw.sha in ln for ln in lines), lines
    assert run_containers(world.cluster, run_id_of(out.stderr)) == []


def test_a_running_run_is_listed_never_counted_and_ctrl_c_stops_it(rw: RunWorld) -> None:
    world = rw.world
    proc = subprocess.Popen(
        [*PAASPORT, "run", "-s", SERVICE, "-c", world.cluster, "-i", "sleeper",
         "--config", str(world.config)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=world.env,
        start_new_session=True,
    )  # fmt: skip
    try:

        def listed() -> list[dict[str, Any]] | NotYet:
            entries = status_json(world)
            runs = [e for e in entries if e.get("run") and e["instance"] == "sleeper"]
            if runs and runs[0]["run"]["state"] == "running":
                return entries
            return NotYet(f"no running sleeper in status: {entries!r}"[:600])

        entries = wait_for("the run in status", listed, 30, world.up_log)
        [run] = [e for e in entries if e.get("run")]
        [main] = [e for e in entries if not e.get("run")]
        assert run["ok"] is True and run["run"]["kind"] == "adhoc", run
        assert run["run"]["command"] == "sleep 120" and run["tasks"] == [], run
        assert main["instance"] == "main" and main["ok"], main
        assert (main["expected"], main["running"], main["healthy"]) == (INSTANCES,) * 3, main
        assert len(main["tasks"]) == INSTANCES
        assert run["run"]["task_id"] not in {t["id"] for t in main["tasks"]}
        run_id = run["run"]["run_id"]
        text = world.run("status", "-s", SERVICE, "-c", world.cluster).stdout
        assert f"one-off run {run_id} running for " in text, text
        assert f"{INSTANCES}/{INSTANCES} healthy, {INSTANCES} running" in text, text
        proc.send_signal(signal.SIGINT)
        assert proc.wait(30) == 130
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.stderr is not None and proc.stdout is not None
    said = proc.stderr.read()
    proc.stderr.close()
    proc.stdout.close()
    assert "Traceback" not in said and f"stopping run {run_id}" in said, said
    assert run_containers(world.cluster, run_id) == []
    ended = finished_event(world, run_id)
    assert ended, run_events(world, run_id)
    assert f"one-off run {run_id} was stopped after " in ended["message"], ended
    assert log_file(world, run_id).exists()
    assert not [e for e in status_json(world) if e.get("run")]


def pty_session(argv: list[str], env: dict[str, str], typed: bytes,
                timeout: float = 60) -> tuple[str, int]:  # fmt: skip
    """Run ``argv`` on a pseudo-terminal; once it has shown the shell's prompt (busybox ash
    follows it with a cursor-position query nobody answers), type ``typed``.
    Returns everything it wrote and its exit code; every read and the wait are bounded."""
    pid, fd = pty.fork()
    if pid == 0:  # the child: exec, never return into pytest
        try:
            os.execvpe(argv[0], argv, env)
        finally:
            os._exit(127)
    seen = b""
    sent = False
    code: int | None = None
    deadline = time.monotonic() + timeout
    try:
        while time.monotonic() < deadline:
            ready, _, _ = select.select([fd], [], [], 0.2)
            if ready:
                try:
                    chunk = os.read(fd, 4096)
                except OSError:  # EIO: the child closed the terminal
                    chunk = b""
                if not chunk:
                    break
                seen += chunk
            shown = seen.split(b"exit the shell to end", 1)
            if not sent and len(shown) == 2 and re.search(rb"[#$] ", shown[1]):
                os.write(fd, typed)
                sent = True
        while code is None and time.monotonic() < deadline:
            done, status = os.waitpid(pid, os.WNOHANG)
            if done:
                code = os.waitstatus_to_exitcode(status)
            else:
                time.sleep(0.1)
    finally:
        if code is None:
            os.kill(pid, signal.SIGKILL)
            os.waitpid(pid, 0)
        os.close(fd)
    text = seen.decode(errors="replace")
    assert code is not None, f"no exit within {timeout}s (typed: {sent}):\n{text}"
    return text, code


def test_tty_gives_a_terminal(rw: RunWorld) -> None:
    world = rw.world
    argv = [*PAASPORT, "run", "-s", SERVICE, "-c", world.cluster, "--from", "main", "--cmd", "sh",
            "-t", "--config", str(world.config)]  # fmt: skip
    text, code = pty_session(argv, {**world.env, "TERM": "dumb"}, b"echo tty=$(tty); exit 4\r")
    assert code == 4, text
    assert "tty=/dev/pts/" in text, text
    assert "Traceback" not in text
    run_id = re.search(r"run ([a-z0-9]+): a terminal", text)
    assert run_id, text
    assert run_containers(world.cluster, run_id.group(1)) == []
    ended = finished_event(world, run_id.group(1))
    assert ended and ended["data"]["exit_code"] == 4, ended


def container_state(cluster: str, run_id: str) -> str:
    """The docker state of the run's container ("" once it is removed)."""
    return subprocess.run(
        ["docker", "ps", "-a", "--filter", f"label=paasport.run.cluster={cluster}",
         "--filter", f"label=paasport.run={run_id}", "--format", "{{.State}}"],
        capture_output=True, text=True, timeout=60, check=True,
    ).stdout.strip()  # fmt: skip


def test_a_detached_run_is_finished_by_the_reaper(rw: RunWorld) -> None:
    """Its exit is recorded with the task's own duration, no sooner than REAP_AFTER seconds
    after it exited (an attached caller gets that long to finish its run itself)."""
    world = rw.world
    out = paasport_run(world, "-c", world.cluster, "-i", "brief", "--detach")
    assert out.returncode == 0, out.stderr
    run_id = out.stdout.strip()
    assert re.fullmatch(r"[a-z0-9]{6,20}", run_id), out.stdout
    assert run_id_of(out.stderr) == run_id

    def exited() -> float | NotYet:
        state = container_state(world.cluster, run_id)
        return time.time() if state == "exited" else NotYet(f"container state {state!r}")

    exited_at = wait_for("the detached run to exit", exited, 30, world.up_log)
    ended = wait_for("the reaper to finish the run", lambda: finished_event(world, run_id), 60,
                     world.up_log)  # fmt: skip
    assert f"one-off run {run_id} exited 5 after " in ended["message"], ended
    assert ended["data"]["exit_code"] == 5
    assert 4 <= ended["data"]["seconds"] < 10, ended  # it ran for 5 s
    assert ended["time"] - exited_at >= REAP_AFTER - 1, (ended, exited_at)
    assert run_containers(world.cluster, run_id) == []
    assert "detached-line" in log_file(world, run_id).read_text()


def test_a_paused_attached_run_keeps_its_exit_code(rw: RunWorld) -> None:
    """A run longer than REAP_AFTER whose CLI is paused (Ctrl-Z, a full pipe) for a few
    seconds as the task exits: the reaper leaves it to the CLI, which exits with its code."""
    world = rw.world
    proc = subprocess.Popen(
        [*PAASPORT, "run", "-s", SERVICE, "-c", world.cluster, "-i", "long",
         "--config", str(world.config)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=world.env,
        start_new_session=True,
    )  # fmt: skip
    try:

        def started() -> str | NotYet:
            out = subprocess.run(
                ["docker", "ps", "--filter", f"label=paasport.run.cluster={world.cluster}",
                 "--filter", "label=paasport.run.instance=long",
                 "--format", '{{.Label "paasport.run"}}'],
                capture_output=True, text=True, timeout=60, check=True,
            ).stdout.split()  # fmt: skip
            return out[0] if out else NotYet("no running container of the long run")

        run_id = wait_for("the long run to start", started, 30, world.up_log)
        time.sleep(1)  # the CLI follows the output by now
        proc.send_signal(signal.SIGSTOP)
        try:
            wait_for(
                "the long run to exit",
                lambda: container_state(world.cluster, run_id) != "running",
                REAP_AFTER + 15,
                world.up_log,
            )
            time.sleep(3)  # paused on: well inside the reaper's grace
        finally:
            proc.send_signal(signal.SIGCONT)
        code = proc.wait(30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(10)
    assert proc.stderr is not None and proc.stdout is not None
    out, said = proc.stdout.read(), proc.stderr.read()
    proc.stdout.close()
    proc.stderr.close()
    assert code == 3, out + said
    assert "long-done" in out.splitlines() and f"run {run_id} exited 3" in said, said
    [ended] = [e for e in run_events(world, run_id) if e["data"]["state"] == "finished"]
    assert ended["data"]["exit_code"] == 3
    assert run_containers(world.cluster, run_id) == []


def test_another_cluster_runs_it_through_the_api(rw: RunWorld) -> None:
    world = rw.world
    args = ("-c", world.cluster, "-i", "report")
    out = paasport_run(world, *args, "--token", rw.token, config=rw.other_config)
    assert out.returncode == 3, out.stdout + out.stderr
    assert OUT_LINE in out.stdout.splitlines() and ERR_LINE in out.stdout.splitlines(), out
    run_id = run_id_of(out.stderr)
    assert f"run {run_id} exited 3" in out.stderr, out.stderr
    ended = finished_event(world, run_id)  # recorded in our cluster's event log
    assert ended and ended["data"]["exit_code"] == 3, ended
    assert "(token " in run_events(world, run_id)[0]["message"]
    assert {OUT_LINE, ERR_LINE} <= set(log_file(world, run_id).read_text().splitlines())
    assert run_containers(world.cluster, run_id) == []

    unknown = ("-c", world.cluster, "-i", "nosuch", "--token", rw.token)
    for argv, said in (
        (args, "needs a token: pass --token or set PAASPORT_API_TOKEN"),
        ((*args, "-t", "--token", rw.token), "is run through its API, which has no terminal"),
        (unknown, f"no adhoc instance 'nosuch' on cluster {world.cluster} (in e2eweb/adhoc-"),
    ):
        before = run_containers(world.cluster)
        refused = paasport_run(world, *argv, config=rw.other_config)
        assert refused.returncode != 0, refused
        lines = refused.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("error:"), refused.stderr
        assert said in lines[0] and world.cluster in lines[0], lines[0]
        assert run_containers(world.cluster) == before  # nothing started


ERRORS = {  # id: (arguments after -s SERVICE [-c CLUSTER], what the one line says)
    "unknown-adhoc-instance": (("-i", "nosuch"), "(in e2eweb/adhoc-{cluster}.yaml)"),
    "neither-i-nor-from": ((), "give one of -i ADHOC_INSTANCE"),
    "both-i-and-from": (("-i", "report", "--from", "main"), "give one of -i"),
    "group-never-marked": (("-i", "later"), "deploy group {cluster}.later was never marked"),
    "tty-and-detach": (("-i", "report", "-t", "--detach"), "--tty and --detach do not go"),
    "unknown-cluster": (("-i", "report", "-c", "nosuch"), "unknown cluster 'nosuch'"),
}


@pytest.mark.parametrize(("args", "said"), ERRORS.values(), ids=ERRORS.keys())
def test_mistakes_are_one_line(rw: RunWorld, args: tuple[str, ...], said: str) -> None:
    world = rw.world
    cluster_args = () if "-c" in args else ("-c", world.cluster)
    before = run_containers(world.cluster)
    out = paasport_run(world, *cluster_args, *args)
    assert out.returncode != 0, out
    lines = [ln for ln in out.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: "), out.stderr
    assert said.format(cluster=world.cluster) in lines[0], lines[0]
    assert "Traceback" not in out.stderr
    assert run_containers(world.cluster) == before
