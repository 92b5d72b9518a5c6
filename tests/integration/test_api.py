"""The HTTP API against a running platform on the real Docker engine: `paasport up` serving it
on a free port, its reads equal to the CLI's --json, tokens and ownership (another team's token
gets 403 and no tag is made), a restart through the API whose bounce arrives on the SSE stream,
mark + rollback through the API, an engine that is down as a 503 naming it, and one
`status -s S` across two clusters (the second one's API a `paasport api` of its own) where a
stopped API is one line and the other cluster still prints.

The world (repo, soa-configs, paasport.yaml, cleanup) is e2e_world's; one world serves the
module's tests, in order.
"""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
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
from harness import running_containers, write_to_task_log

pytestmark = pytest.mark.integration

OTHER = "apitwo"  # the second cluster's name


@dataclass
class ApiWorld:
    world: E2E
    api: str  # base URL of the API `up` serves
    other_api: str  # the second cluster's API (`paasport api` started by a test)
    sha: str
    tokens: dict[str, str] = field(default_factory=dict)

    def client(self, team: str | None = None) -> httpx.Client:
        headers = {"Authorization": f"Bearer {self.tokens[team]}"} if team else {}
        return httpx.Client(base_url=self.api, timeout=20, headers=headers)

    def get(self, path: str, **params: Any) -> Any:
        with self.client() as c:
            r = c.get(path, params=params)
        assert r.status_code == 200, f"GET {path}: {r.status_code} {r.text}"
        return r.json()

    def cli_json(self, *args: str) -> Any:
        return json.loads(self.world.run(*args, "--json", check=False).stdout)

    def tags(self) -> list[str]:
        return sorted(git(self.world.repo, "tag", "-l").split())


def add_other_cluster(world: E2E, other_port: int) -> None:
    """The second cluster in our paasport.yaml (reached through its API) with one instance of
    the service, so `status -s S` without -c shows both clusters."""
    text = world.config.read_text()
    ours = f"clusters:\n  {world.cluster}:\n    engine: docker\n"
    assert ours in text
    world.config.write_text(
        text.replace(
            ours,
            ours + f"  {OTHER}:\n    engine: docker\n    api_url: http://127.0.0.1:{other_port}\n",
        )
    )
    (world.soa / SERVICE / f"instances-{OTHER}.yaml").write_text("main:\n  instances: 1\n")
    with (world.soa / SERVICE / "deploy.yaml").open("a") as deploy:
        deploy.write(f"  - step: {OTHER}.main\n")


@pytest.fixture(scope="module")
def api_world() -> Iterator[ApiWorld]:
    with tempfile.TemporaryDirectory(prefix="paasport-test-") as tmp, e2e_world(Path(tmp)) as world:
        port, other_port = free_port(), free_port()
        add_other_cluster(world, other_port)
        sha = git(world.repo, "rev-parse", "HEAD")
        world.run("cook-image", "-s", SERVICE, "-c", sha)
        world.run("mark-for-deployment", "-s", SERVICE, "-l", f"{world.cluster}.main", "-c", sha)
        world.start_up("--api-listen", f"127.0.0.1:{port}")
        aw = ApiWorld(world, f"http://127.0.0.1:{port}", f"http://127.0.0.1:{other_port}", sha)
        for team in ("e2e", "payments"):
            out = world.run("token", "create", "--team", team, "--json")
            aw.tokens[team] = json.loads(out.stdout)["token"]
        wait_for("3 healthy tasks", lambda: healthy_in_proxy(world), 60, world.up_log)
        yield aw


def api_status(aw: ApiWorld) -> dict[str, Any]:
    [entry] = aw.get(f"/v1/services/{SERVICE}/main/status")
    return dict(entry)


def healthy_through_api(aw: ApiWorld, sha: str) -> dict[str, Any] | NotYet:
    s = api_status(aw)
    ok = s["git_sha"] == sha and s["healthy"] == INSTANCES and len(s["app_versions"]) == 1
    if ok and all(t["proxy"] == {f"{SERVICE}.main": "up"} for t in s["tasks"]):
        return s
    return NotYet(  # what wait_for prints when it gives up
        f"git {s['git_sha']}, {s['healthy']} healthy, versions {s['app_versions']}, "
        f"proxy {[t['proxy'] for t in s['tasks']]}, why {s.get('why')!r}"
    )


STABLE = ("instance", "cluster", "state", "expected", "running", "healthy", "git_sha",
          "config_hash", "desired_state", "ok")  # fmt: skip


def test_reads_are_the_clis_json(api_world: ApiWorld) -> None:
    aw, world = api_world, api_world.world
    assert aw.get("/v1/version")["cluster"] == world.cluster
    assert aw.get("/v1/services") == aw.cli_json("list")
    assert aw.get(f"/v1/services/{SERVICE}") == aw.cli_json("info", "-s", SERVICE)
    assert aw.get("/v1/clusters") == aw.cli_json("list-clusters")

    api = api_status(aw)
    [cli] = aw.cli_json("status", "-s", SERVICE, "-c", world.cluster, "-i", "main")
    assert {k: api[k] for k in STABLE} == {k: cli[k] for k in STABLE}
    assert api["healthy"] == INSTANCES and api["git_sha"] == aw.sha
    assert sorted(t["id"] for t in api["tasks"]) == sorted(t["id"] for t in cli["tasks"])
    assert all(t["host"] and t["proxy"] == {f"{SERVICE}.main": "up"} for t in api["tasks"])
    [whole] = aw.get(f"/v1/services/{SERVICE}/status")
    assert whole["instance"] == "main"

    mesh = aw.get(f"/v1/services/{SERVICE}/mesh")
    [ns] = mesh["namespaces"]
    assert {b["task_id"] for b in ns["backends"]} == {t["id"] for t in api["tasks"]}
    assert [b["state"] for b in ns["backends"]] == ["up"] * INSTANCES

    ours, theirs = aw.get(f"/v1/services/{SERVICE}/deployments")  # deploy.yaml's order
    group = f"{world.cluster}.main"
    assert ours == aw.cli_json("get-latest-deployment", "-s", SERVICE, "-l", group)
    assert ours["git_sha"] == aw.sha and ours["docker_image"].endswith(aw.sha)
    assert (theirs["deploy_group"], theirs["git_sha"]) == (f"{OTHER}.main", None)
    history = aw.get(f"/v1/services/{SERVICE}/history")
    assert history == aw.cli_json("deploy-history", "-s", SERVICE)
    assert any(row["git_sha"] == aw.sha for row in history), history

    bounces = aw.get("/v1/events", service=SERVICE, kind="app_version")
    assert bounces and all(e["service"] == SERVICE for e in bounces), bounces
    [host] = aw.get("/v1/hosts")["hosts"]
    assert host["state"] == "ready"
    assert aw.get("/v1/alerts", team="e2e") == []
    with aw.client() as c:
        metrics = c.get("/metrics")
    assert metrics.status_code == 200 and "paasport_" in metrics.text


@pytest.mark.parametrize(
    ("team", "path", "body", "status", "message"),
    [
        ("payments", "/v1/services/{s}/main/restart", None, 403, "belongs to team e2e"),
        ("payments", "/v1/services/{s}/deployments/{c}.main", {"sha": "{sha}"}, 403, "team e2e"),
        (None, "/v1/services/{s}/main/stop", None, 401, "this needs a token"),
        ("e2e", "/v1/services/{s}/deployments/{c}.main", {"sha": "nothex"}, 422, "body: sha"),
        ("e2e", "/v1/services/{s}/deployments/{c}.main", {"sha": "ab" * 20}, 404, "ab" * 20),
        ("e2e", "/v1/services/{s}/deployments/nogroup", {"sha": "{sha}"}, 404, "nogroup"),
        ("e2e", "/v1/services/nosuch/main/restart", None, 404, "no service nosuch"),
    ],
)
def test_refused_mutations_change_nothing(
    api_world: ApiWorld,
    team: str | None,
    path: str,
    body: dict[str, str] | None,
    status: int,
    message: str,
) -> None:
    aw = api_world
    before, events_before = aw.tags(), len(aw.get("/v1/events", kind="mark", limit=10_000))
    path = path.format(s=SERVICE, c=aw.world.cluster)
    if body:
        body = {k: v.format(sha=aw.sha) for k, v in body.items()}
    with aw.client(team) as c:
        r = c.post(path, json=body)
    assert r.status_code == status, r.text
    assert set(r.json()) == {"error"} and message in r.json()["error"]["message"], r.text
    assert aw.tags() == before
    assert len(aw.get("/v1/events", kind="mark", limit=10_000)) == events_before


@dataclass
class Stream:
    """The SSE stream of our service read in a thread into ``events`` (bounded by ``stop``)."""

    url: str
    events: list[dict[str, Any]] = field(default_factory=list)
    connected: threading.Event = field(default_factory=threading.Event)
    stop: threading.Event = field(default_factory=threading.Event)
    thread: threading.Thread | None = None

    def read(self) -> None:
        with httpx.stream("GET", self.url, timeout=httpx.Timeout(5, read=20)) as r:
            assert r.headers["content-type"].startswith("text/event-stream")
            kind = None
            for line in r.iter_lines():
                self.connected.set()
                if self.stop.is_set():
                    return
                if line.startswith("event: "):
                    kind = line.removeprefix("event: ")
                elif line.startswith("data: "):
                    event = json.loads(line.removeprefix("data: "))
                    assert event["kind"] == kind
                    self.events.append(event)

    def __enter__(self) -> Stream:
        self.thread = threading.Thread(target=self.read, daemon=True)
        self.thread.start()
        assert self.connected.wait(10), "the event stream did not start"
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        assert self.thread is not None
        self.thread.join(25)

    def messages(self, kind: str) -> list[str]:
        return [e["message"] for e in list(self.events) if e["kind"] == kind]


def test_a_restart_through_the_api_bounces_and_streams_its_events(api_world: ApiWorld) -> None:
    aw, world = api_world, api_world.world
    before = {t["id"] for t in api_status(aw)["tasks"]}
    with Stream(f"{aw.api}/v1/events/stream?service={SERVICE}") as stream:
        with aw.client("e2e") as c:
            r = c.post(f"/v1/services/{SERVICE}/main/restart")
        assert r.status_code == 200, r.text
        tag = r.json()["tag"]
        # PaaSTA's restart: a new start tag
        assert tag.startswith(f"paasta-{world.cluster}.main-") and tag.endswith("-start")
        assert f"{tag}" in " ".join(aw.tags())

        def restarted() -> dict[str, Any] | None:
            s = healthy_through_api(aw, aw.sha)
            return s if s and before.isdisjoint(t["id"] for t in s["tasks"]) else None

        wait_for("new tasks after the restart", restarted, 60, world.up_log)
        wait_for(
            "the bounce's end on the stream",
            lambda: any("finished" in m for m in stream.messages("bounce")),
            15,
            world.up_log,
        )
    [mark] = [e for e in stream.events if e["kind"] == "mark"]
    assert mark["data"]["token"] == "e2e-1" and mark["data"]["team"] == "e2e"
    assert mark["data"]["action"] == "restart" and mark["data"]["tag"] == tag
    assert any("started" in m for m in stream.messages("bounce")), stream.events


def test_mark_and_rollback_through_the_api(api_world: ApiWorld) -> None:
    aw, world = api_world, api_world.world
    (world.repo / "www" / "index.html").write_text("hello from the end-to-end test, v2\n")
    git(world.repo, "add", "-A")
    git(world.repo, "-c", "user.name=e2e", "-c", "user.email=e2e@localhost", "commit", "-qm", "v2")
    sha2 = git(world.repo, "rev-parse", "HEAD")
    world.run("cook-image", "-s", SERVICE, "-c", sha2)
    group = f"{world.cluster}.main"
    with aw.client("e2e") as c:
        r = c.post(f"/v1/services/{SERVICE}/deployments/{group}", json={"sha": sha2})
        assert r.status_code == 200, r.text
        assert r.json()["git_sha"] == sha2 and r.json()["tag"].startswith(f"paasta-{group}-")
        wait_for("v2 healthy", lambda: healthy_through_api(aw, sha2), 60, world.up_log)
        r = c.post(f"/v1/services/{SERVICE}/deployments/{group}/rollback")
        assert r.status_code == 200, r.text
        assert r.json()["git_sha"] == aw.sha
    wait_for("back on v1", lambda: healthy_through_api(aw, aw.sha), 60, world.up_log)
    deployments = aw.get(f"/v1/services/{SERVICE}/deployments")
    assert json.dumps(deployments).count(aw.sha) >= 1
    marks = aw.get("/v1/events", kind="mark", service=SERVICE)
    assert [m["data"]["action"] for m in marks][-2:] == ["deploy", "rollback"], marks


def api_answers(url: str) -> bool:
    try:
        return httpx.get(f"{url}/v1/version", timeout=1).status_code == 200
    except httpx.HTTPError:
        return False


@contextlib.contextmanager
def paasport_api(config: Path, port: int, env: dict[str, str]) -> Iterator[subprocess.Popen[bytes]]:
    """`paasport api --config CONFIG` on 127.0.0.1:PORT once it answers; stopped by PID after."""
    log_file = config.with_name("api.log")
    with log_file.open("wb") as log:
        proc = subprocess.Popen(
            [*PAASPORT, "api", "--config", str(config), "--listen", f"127.0.0.1:{port}"],
            stdout=log, stderr=subprocess.STDOUT, env=env, start_new_session=True,
        )  # fmt: skip
    try:
        wait_for(
            f"the API of {config}", lambda: api_answers(f"http://127.0.0.1:{port}"), 30, log_file
        )
        yield proc
    finally:
        if proc.poll() is None:
            interrupt(proc)


def interrupt(proc: subprocess.Popen[Any]) -> None:
    """Ctrl-C ``proc``; killed when it is not gone in 15 s."""
    proc.send_signal(signal.SIGINT)
    try:
        proc.wait(15)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(5)


def other_cluster_config(aw: ApiWorld) -> Path:
    """The second cluster's paasport.yaml (its own state dir; ours reached by our API)."""
    world = aw.world
    root = world.root / OTHER
    root.mkdir(exist_ok=True)
    config = root / "paasport.yaml"
    config.write_text(
        f"local_cluster: {OTHER}\n"
        f"clusters:\n  {OTHER}:\n    engine: docker\n"
        f"  {world.cluster}:\n    engine: docker\n    api_url: {aw.api}\n"
        f"soa_dir: {json.dumps(str(world.soa))}\nstate_dir: {json.dumps(str(root / 'state'))}\n"
    )
    return config


def other_cli(aw: ApiWorld, *args: str) -> subprocess.CompletedProcess[str]:
    """The CLI on a host of the second cluster (its paasport.yaml)."""
    return subprocess.run(
        [*PAASPORT, *args, "--config", str(other_cluster_config(aw))],
        capture_output=True, text=True, env=aw.world.env, timeout=60, check=False,
    )  # fmt: skip


def other_token(aw: ApiWorld, team: str) -> str:
    made = other_cli(aw, "token", "create", "--team", team, "--json")
    assert made.returncode == 0, made.stderr
    return str(json.loads(made.stdout)["token"])


def test_status_across_two_clusters_and_one_stopped(api_world: ApiWorld) -> None:
    aw, world = api_world, api_world.world
    other_port = int(aw.other_api.rsplit(":", 1)[1])
    with paasport_api(other_cluster_config(aw), other_port, world.env) as proc:
        both = aw.cli_json("status", "-s", SERVICE)
        assert sorted(e["cluster"] for e in both) == sorted([world.cluster, OTHER]), both
        [theirs] = [e for e in both if e["cluster"] == OTHER]
        assert (theirs["instance"], theirs["running"]) == ("main", 0), theirs
        text = world.run("status", "-s", SERVICE, check=False).stdout
        assert f"{SERVICE}.main ({world.cluster})  Running" in text, text
        assert f"{SERVICE}.main ({OTHER})  Not deployed" in text, text
        # the other cluster's CLI reads ours through our API
        mine = json.loads(
            other_cli(aw, "status", "-s", SERVICE, "-c", world.cluster, "--json").stdout
        )
        [ours] = mine
        assert ours["healthy"] == INSTANCES and ours["cluster"] == world.cluster
        # the other read verbs across both clusters
        mesh = aw.cli_json("mesh-status", "-s", SERVICE)
        assert [m["cluster"] for m in mesh] == [world.cluster, OTHER], mesh
        assert [b["state"] for b in mesh[0]["namespaces"][0]["backends"]] == ["up"] * INSTANCES
        assert mesh[1]["proxy_error"], mesh[1]  # the other cluster runs no HAProxy here
        events = aw.cli_json("events", "-s", SERVICE, "--kind", "mark")
        assert events and {e["cluster"] for e in events} <= {world.cluster, OTHER, None}
        logs = world.run("logs", "-s", SERVICE, check=False)
        assert logs.returncode == 0, logs.stderr
        theirs_mesh = aw.cli_json("mesh-status", "-s", SERVICE, "-c", OTHER)
        assert theirs_mesh["cluster"] == OTHER and theirs_mesh["namespaces"]
        history = aw.cli_json("deploy-history", "-s", SERVICE, "-c", OTHER)
        assert all(h["target"].startswith(OTHER) for h in history), history
        assert aw.cli_json("deploy-history", "-s", SERVICE, "-c", world.cluster)
        # wait-for-deployment follows the other cluster through its API: marked there (through
        # its API, the group runs only there), but no deployd runs it, so it times out naming
        # that cluster's instance and why
        aw.tokens[OTHER] = other_token(aw, "e2e")
        marked = world.run(
            "mark-for-deployment", "-s", SERVICE, "-l", f"{OTHER}.main", "-c", aw.sha,
            "--token", aw.tokens[OTHER],
        )  # fmt: skip
        assert f"through cluster {OTHER}'s API at {aw.other_api}" in marked.stdout, marked.stdout
        waited = world.run(
            "wait-for-deployment", "-s", SERVICE, "-l", f"{OTHER}.main", "-c", aw.sha, "-t", "4",
            check=False,
        )  # fmt: skip
        assert waited.returncode == 1, waited.stderr
        assert f"timed out: {OTHER} {SERVICE}.main: " in waited.stderr, waited.stderr
        assert f"{OTHER}/state/haproxy/admin.sock" in waited.stderr  # the other cluster's why
        ours_done = world.run(
            "wait-for-deployment", "-s", SERVICE, "-l", f"{world.cluster}.main", "-c", aw.sha,
            "-t", "30", check=False,
        )  # fmt: skip
        assert ours_done.returncode == 0, ours_done.stderr
        proc.send_signal(signal.SIGINT)
        assert proc.wait(15) == 0
    started = time.monotonic()
    out = world.run("status", "-s", SERVICE, check=False)
    assert time.monotonic() - started < 30
    lines = [ln for ln in out.stdout.splitlines() + out.stderr.splitlines() if OTHER in ln]
    assert len(lines) == 1 and f"API at {aw.other_api}" in lines[0], out.stdout + out.stderr
    assert "did not answer" in lines[0]
    assert f"{SERVICE}.main ({world.cluster})  Running  3/3 healthy" in out.stdout, out.stdout
    for verb in ("events", "logs", "mesh-status"):
        out = world.run(verb, "-s", SERVICE, check=False)
        assert out.returncode == 1, (verb, out.stdout, out.stderr)
        said = f"cluster {OTHER}: API at {aw.other_api} did not answer"
        assert len([ln for ln in out.stderr.splitlines() if said in ln]) == 1, (verb, out.stderr)


def test_the_cli_changes_another_cluster_through_its_api(api_world: ApiWorld) -> None:
    """start/stop/restart -c OTHER and rollback of OTHER's group go to OTHER's API with the
    token: its ownership check applies and its event log names the token; refused changes make
    no tag."""
    aw, world = api_world, api_world.world
    other_port = int(aw.other_api.rsplit(":", 1)[1])
    with paasport_api(other_cluster_config(aw), other_port, world.env):
        token = aw.tokens.get(OTHER) or other_token(aw, "e2e")
        stranger = other_token(aw, "payments")
        control = ("-s", SERVICE, "-c", OTHER, "-i", "main")
        before = aw.tags()
        no_token = world.run("restart", *control, check=False)
        assert no_token.returncode != 0 and "Traceback" not in no_token.stderr
        assert f"cluster {OTHER} is changed through its API at {aw.other_api}" in no_token.stderr
        assert "PAASPORT_API_TOKEN" in no_token.stderr, no_token.stderr
        theirs = world.run("restart", *control, "--token", stranger, check=False)
        assert theirs.returncode != 0 and "answered 403" in theirs.stderr, theirs.stderr
        ours_token = world.run("restart", *control, "--token", aw.tokens["e2e"], check=False)
        assert "answered 401" in ours_token.stderr, ours_token.stderr  # tokens are per cluster
        assert aw.tags() == before  # nothing refused made a tag

        env = {**world.env, "PAASPORT_API_TOKEN": token}  # the variable works like --token
        out = subprocess.run(
            [*PAASPORT, "stop", *control, "--json", "--config", str(world.config)],
            capture_output=True, text=True, env=env, timeout=60, check=False,
        )  # fmt: skip
        assert out.returncode == 0, out.stderr
        stopped = json.loads(out.stdout)
        assert stopped["cluster"] == OTHER
        assert stopped["tag"].startswith(f"paasta-{OTHER}.main-") and stopped["tag"].endswith(
            "-stop"
        )
        assert stopped["tag"] not in before
        assert stopped["tag"] in aw.tags()
        started = world.run("start", *control, "--token", token)
        assert f"through cluster {OTHER}'s API" in started.stdout, started.stdout

        marks = json.loads(
            other_cli(aw, "events", "-s", SERVICE, "-c", OTHER, "--kind", "mark", "--json").stdout
        )
        by_token = [e for e in marks if e["data"].get("via") == "api"]
        assert {e["data"]["action"] for e in by_token} >= {"stop", "start"}, marks
        assert all(e["data"]["team"] == "e2e" and e["data"]["token"] for e in by_token)

        # the group runs only on OTHER: a rollback there goes through its API too
        back = world.run(
            "rollback", "-s", SERVICE, "-l", f"{OTHER}.main", "-c", aw.sha[:10], "--token", token,
            "--json",
        )  # fmt: skip
        rolled = json.loads(back.stdout)
        assert rolled["cluster"] == OTHER and rolled["git_sha"] == aw.sha, rolled
        assert rolled["tag"].startswith(f"paasta-{OTHER}.main-"), rolled
    down = world.run("restart", *control, "--token", token, check=False)
    assert down.returncode != 0 and f"API at {aw.other_api} did not answer" in down.stderr


class Lines:
    """Every line a pipe gives, read by a thread (so a test waits with a deadline)."""

    def __init__(self, pipe: Any) -> None:
        self.lines: list[str] = []
        self.thread = threading.Thread(target=self._read, args=(pipe,), daemon=True)
        self.thread.start()

    def _read(self, pipe: Any) -> None:
        for line in pipe:
            self.lines.append(line.rstrip("\n"))

    def having(self, text: str) -> list[str]:
        return [ln for ln in self.lines if text in ln]


@contextlib.contextmanager
def following(world: E2E, *args: str) -> Iterator[tuple[Lines, Lines]]:
    """`paasport ARGS` (a -f verb) running, its stdout and stderr lines; Ctrl-C'd after."""
    proc = subprocess.Popen(
        [*PAASPORT, *args, "--config", str(world.config)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, env=world.env,
        start_new_session=True,
    )  # fmt: skip
    out, err = Lines(proc.stdout), Lines(proc.stderr)
    try:
        yield out, err
    finally:
        interrupt(proc)
        for lines, pipe in ((out, proc.stdout), (err, proc.stderr)):
            lines.thread.join(10)  # the pipe is at its end: the process is gone
            if pipe is not None:
                pipe.close()


def test_the_log_stream_delivers_new_lines(api_world: ApiWorld) -> None:
    aw, world = api_world, api_world.world
    [task, *_] = running_containers(world.cluster)
    got: list[dict[str, Any]] = []
    stop = threading.Event()

    def read() -> None:
        with (
            httpx.Client(base_url=aw.api, timeout=httpx.Timeout(5, read=30)) as c,
            c.stream("GET", f"/v1/services/{SERVICE}/logs/stream", params={"tail": "0"}) as r,
        ):
            assert r.status_code == 200 and r.headers["content-type"].startswith(
                "text/event-stream"
            )
            for line in r.iter_lines():
                if line.startswith("data: "):
                    got.append(json.loads(line[6:]))
                if stop.is_set():
                    return

    reader = threading.Thread(target=read, daemon=True)
    reader.start()
    time.sleep(1.5)  # the stream follows the tasks before the line is written
    write_to_task_log(task, "streamed-line-1")

    def streamed() -> list[dict[str, Any]]:
        return [x for x in got if x["message"] == "streamed-line-1"]

    wait_for("the line on the stream", streamed, 20, world.up_log)
    [line] = streamed()
    assert line["task_id"] == task or line["task_id"].startswith(task)
    assert line["stream"] == "stdout" and line["task"].startswith(f"paasport-{SERVICE}-main-")
    stop.set()
    write_to_task_log(task, "streamed-line-2")  # wakes the reader so it sees stop
    reader.join(10)
    unknown = httpx.get(f"{aw.api}/v1/services/nope/logs/stream", timeout=10)
    assert unknown.status_code == 404 and unknown.json()["error"]["message"]


def test_events_and_logs_follow_every_cluster(api_world: ApiWorld) -> None:
    """events -f and logs -f across both clusters: the other cluster's new events arrive from
    its API's stream; its API stopped mid-stream is one "trying again" line, and once it is
    back the stream resumes by itself."""
    aw, world = api_world, api_world.world
    other_port = int(aw.other_api.rsplit(":", 1)[1])
    control = ("-s", SERVICE, "-c", OTHER, "-i", "main")
    with paasport_api(other_cluster_config(aw), other_port, world.env) as api:
        token = aw.tokens.get(OTHER) or other_token(aw, "e2e")
        with (
            following(world, "events", "-f", "-s", SERVICE, "--kind", "mark", "--json") as (
                out, err),
            following(world, "logs", "-f", "-s", SERVICE) as (log_out, log_err),
        ):  # fmt: skip
            time.sleep(2)  # both followers have opened every cluster's stream
            stop_tag = json.loads(world.run("stop", *control, "--token", token, "--json").stdout)

            def stopped_there() -> list[str]:
                return out.having(stop_tag["tag"])

            wait_for("the other cluster's stop event", stopped_there, 20, world.up_log)
            [task, *_] = running_containers(world.cluster)
            write_to_task_log(task, "followed-across")
            [said] = wait_for(
                "the local log line", lambda: log_out.having("followed-across"), 20, world.up_log
            )
            assert said.startswith(f"{world.cluster} paasport-{SERVICE}-main-"), said
            api.send_signal(signal.SIGINT)  # the other cluster's API goes away mid-stream
            assert api.wait(15) == 0
            wait_for("one line saying the stream is lost",
                     lambda: err.having(f"cluster {OTHER}: API at {aw.other_api}"), 60,
                     world.up_log)  # fmt: skip
            with paasport_api(other_cluster_config(aw), other_port, world.env):
                wait_for("the stream back", lambda: err.having("stream back"), 30, world.up_log)
                world.run("start", *control, "--token", token)

                def started_there() -> list[str]:
                    return [ln for ln in out.having('"action": "start"') if f'"{OTHER}"' in ln]

                wait_for("the start event after the outage", started_there, 20, world.up_log)
                assert len(err.having("trying again")) == 1, err.lines  # once per outage
            assert not log_err.having("Traceback") and not err.having("Traceback")
        assert len(stopped_there()) == 1, out.lines  # resuming repeats nothing


def test_diff_asks_every_cluster(api_world: ApiWorld) -> None:
    aw, world = api_world, api_world.world
    other_port = int(aw.other_api.rsplit(":", 1)[1])
    ours = aw.get("/v1/diff", service=SERVICE)
    assert ours["cluster"] == world.cluster and [p["instance"] for p in ours["instances"]] == [
        "main"
    ]
    bad = httpx.get(f"{aw.api}/v1/diff", params={"deploy_group": "x"}, timeout=10)
    assert bad.status_code == 400 and "go together" in bad.json()["error"]["message"]
    with paasport_api(other_cluster_config(aw), other_port, world.env):
        out = world.run("diff", "-s", SERVICE, "--json", check=False)
        assert out.returncode in (0, 1), out.stderr
        docs = json.loads(out.stdout)
        assert [d["cluster"] for d in docs] == [world.cluster, OTHER]
        [theirs] = docs[1]["instances"]
        # marked there, but nothing runs it (no deployd on that cluster): deployd would start it
        assert theirs["change"] in ("start", "not deployed"), theirs
    gone = world.run("diff", "-s", SERVICE, check=False)
    assert gone.returncode == 2 and f"cluster {OTHER}: API at {aw.other_api}" in gone.stderr


def test_an_engine_that_is_down_is_a_503_naming_it(tmp_dir: Path, api_world: ApiWorld) -> None:
    world = api_world.world
    config = tmp_dir / "paasport.yaml"
    config.write_text(
        f"local_cluster: {world.cluster}\nclusters:\n  {world.cluster}:\n    engine: docker\n"
        f"    docker_host: unix://{tmp_dir}/no-docker.sock\n"
        f"soa_dir: {json.dumps(str(world.soa))}\nstate_dir: {json.dumps(str(tmp_dir / 'st'))}\n"
    )
    port = free_port()
    with paasport_api(config, port, world.env):
        url = f"http://127.0.0.1:{port}"
        r = httpx.get(f"{url}/v1/services/{SERVICE}/main/status", timeout=20)
        assert r.status_code == 503, r.text
        assert "no-docker.sock" in r.json()["error"]["message"]
        assert httpx.get(f"{url}/v1/hosts", timeout=20).status_code == 503
