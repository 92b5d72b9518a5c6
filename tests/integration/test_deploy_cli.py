"""The deploy verbs end to end through ``paasport.cli.main``: a real soa-configs tree + git repo."""

from __future__ import annotations

import json
import shutil
import subprocess
import time
import uuid
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import pytest

from paasport.cli import main as cli_main
from paasport.deploy.images import LABEL_BUILD_SERVICE
from paasport.monitoring.events import EventLog, events_path


def git(repo: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True, timeout=120
    )
    return out.stdout.strip()


def commit(repo: Path, name: str, content: str = "x") -> str:
    (repo / name).write_text(content)
    git(repo, "add", name)
    git(repo, "-c", "user.name=dev", "-c", "user.email=dev@example.com", "commit", "-qm", name)
    return git(repo, "rev-parse", "HEAD")


class Cli:
    def __init__(self, soa: Path, config: Path, capsys: pytest.CaptureFixture[str]) -> None:
        self.soa, self.config, self.capsys = soa, config, capsys

    def __call__(self, *args: str, code: int = 0) -> tuple[str, str]:
        self.capsys.readouterr()
        with pytest.raises(SystemExit) as exc:
            cli_main.main([*args, "--soa-dir", str(self.soa), "--config", str(self.config)])
        out, err = self.capsys.readouterr()
        assert exc.value.code == code, f"exit {exc.value.code}\nstdout: {out}\nstderr: {err}"
        return out, err

    def json(self, *args: str) -> object:
        out, _ = self(*args, "--json")
        return json.loads(out)


@pytest.fixture
def tree(tmp_path: Path) -> tuple[Path, Path, str]:
    service = f"t{uuid.uuid4().hex[:8]}"
    repo = tmp_path / "repos" / service
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True, timeout=120)
    svc = tmp_path / "soa" / service
    svc.mkdir(parents=True)
    (svc / "service.yaml").write_text(f"description: test\ngit_url: ../../repos/{service}\n")
    (svc / "deploy.yaml").write_text(
        "pipeline:\n  - step: itest\n  - step: local.canary\n  - step: prod\n"
    )
    (svc / "instances-local.yaml").write_text(
        "main:\n  deploy_group: prod\n  cmd: httpd -f -p 8888\n"
        "worker:\n  deploy_group: prod\n  cmd: sleep 1000\n"
        "canary:\n  cmd: httpd -f -p 8888\n"
    )
    return tmp_path / "soa", repo, service


@pytest.fixture
def cli(
    tree: tuple[Path, Path, str],
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> Cli:
    config = tmp_path / "paasport.yaml"  # the one-host defaults, written out
    config.write_text(
        "local_cluster: local\nclusters:\n  local:\n    engine: docker\n"
        f"state_dir: {tmp_path / 'state'}\n"
    )
    gitconfig = tmp_path / "gitconfig"  # who tags: git's user.name
    gitconfig.write_text("[user]\n\tname = Alice Tester\n")
    monkeypatch.setenv("GIT_CONFIG_GLOBAL", str(gitconfig))
    monkeypatch.setenv("GIT_CONFIG_NOSYSTEM", "1")
    monkeypatch.chdir(tmp_path)
    return Cli(tree[0], config, capsys)


def test_deploy_workflow_through_the_cli(tree: tuple[Path, Path, str], cli: Cli) -> None:
    soa, repo, s = tree
    a = commit(repo, "a")
    b = commit(repo, "b")
    out, _ = cli("mark-for-deployment", "-s", s, "-l", "prod", "-c", a[:8])
    assert "created tag paasta-prod-" in out and a in out
    marked = cli.json("mark-for-deployment", "-s", s, "-l", "prod", "-c", "main")
    assert isinstance(marked, dict) and marked["git_sha"] == b
    assert marked["deployments_json_changed"] is True
    doc = json.loads((soa / s / "deployments.json").read_text())
    assert doc["v2"]["deployments"]["prod"]["git_sha"] == b
    assert doc["v2"]["controls"][f"{s}:local.worker"] == {
        "desired_state": "start",
        "force_bounce": None,
    }

    latest = cli.json("get-latest-deployment", "-s", s, "-l", "prod")
    assert isinstance(latest, dict)
    assert (latest["git_sha"], latest["docker_image"]) == (b, f"services-{s}:paasta-{b}")
    out, _ = cli("get-latest-deployment", "-s", s, "-l", "prod", "--sha-only")
    assert out.strip() == b

    cli("stop", "-s", s, "-c", "local", "-i", "worker")
    doc = json.loads((soa / s / "deployments.json").read_text())
    assert doc["v2"]["controls"][f"{s}:local.worker"]["desired_state"] == "stop"
    cli("restart", "-s", s, "-c", "local", "-i", "main")
    doc = json.loads((soa / s / "deployments.json").read_text())
    assert doc["v2"]["controls"][f"{s}:local.main"]["force_bounce"] is not None

    listed = cli.json("rollback", "-s", s, "-l", "prod")
    assert isinstance(listed, list) and [e["git_sha"] for e in listed] == [b, a]
    out, _ = cli("rollback", "-s", s, "-l", "prod")
    assert a in out and "(current)" in out
    cli("rollback", "-s", s, "-l", "prod", "-c", a)
    doc = json.loads((soa / s / "deployments.json").read_text())
    assert doc["v2"]["deployments"]["prod"]["git_sha"] == a
    # a rollback is a new deploy: the stop on the old sha no longer applies
    assert doc["v2"]["controls"][f"{s}:local.worker"]["desired_state"] == "start"

    history = cli.json("deploy-history", "-s", s, "-l", "prod")
    assert isinstance(history, list)
    deploys = [h["git_sha"] for h in history if h["kind"] == "deploy"]
    assert deploys == [a, b, a]  # newest first
    controls = sorted(
        (h["kind"], h["target"], h["git_sha"]) for h in history if h["kind"] != "deploy"
    )
    assert controls == [("start", "local.main", b), ("stop", "local.worker", b)]
    out, _ = cli("deploy-history", "-s", s)
    assert "local.worker" in out and "stop" in out
    # Tags are lightweight (git says nothing of who): the event log does.
    assert {h["tagger"] for h in history} == {"Alice Tester"}
    assert all(git(repo, "cat-file", "-t", h["tag"]) == "commit" for h in history)

    before = (soa / s / "deployments.json").read_bytes()
    (soa / s / "deployments.json").unlink()
    out, _ = cli("generate-deployments", "-s", s)
    assert "updated" in out
    assert (soa / s / "deployments.json").read_bytes() == before
    out, _ = cli("generate-deployments", "--all")
    assert "unchanged" in out
    git(repo, "tag", "paasta-prod-20300101T000000-deploy", b)  # another tool's tag
    out, _ = cli("deploy-history", "-s", s, "-n", "2")
    newest, second = out.splitlines()[1:3]
    assert "2030-01-01" in newest and newest.rstrip().endswith("-")
    assert second.rstrip().endswith("Alice Tester")
    with EventLog(events_path(soa.parent / "state")) as log:
        marks = log.query(service=s, kinds=("mark",))
    assert [(e.data["action"], e.data["user"]) for e in marks][-3:] == [
        ("stop", "Alice Tester"),
        ("restart", "Alice Tester"),
        ("rollback", "Alice Tester"),
    ]
    assert marks[-1].data["git_sha"] == a and marks[-1].data["deploy_group"] == "prod"
    marker = str(marks[-1].data["rollback_tag"])
    assert marker.startswith("paasta-prod-") and marker.endswith("-rollback")
    assert git(repo, "rev-parse", marker) == b  # PaaSTA's marker sits on the sha left

    # a sha some group was rolled back from is refused, naming when and by whom, until --force
    stamp = marker.removeprefix("paasta-prod-").removesuffix("-rollback")
    when = datetime.strptime(stamp, "%Y%m%dT%H%M%S").strftime("%Y-%m-%d %H:%M:%S UTC")
    _, err = cli("mark-for-deployment", "-s", s, "-l", "local.canary", "-c", b[:10], code=1)
    assert err == (
        f"error: {s}: {b[:12]} was rolled back from prod at {when} by Alice Tester (tag "
        f"{marker}); deploy it anyway with --force\n"
    )
    assert git(repo, "tag", "--points-at", b).split().count(marker) == 1  # nothing new on b
    forced = cli.json("mark-for-deployment", "-s", s, "-l", "local.canary", "-c", b, "--force")
    assert isinstance(forced, dict) and forced["git_sha"] == b


def test_wait_for_a_sha_the_group_is_not_marked_at_fails_at_once(
    tree: tuple[Path, Path, str], cli: Cli
) -> None:
    _, repo, s = tree
    a = commit(repo, "a")
    b = commit(repo, "b")
    c = commit(repo, "c")
    cli("mark-for-deployment", "-s", s, "-l", "prod", "-c", a)
    cli("mark-for-deployment", "-s", s, "-l", "prod", "-c", b)
    cases = [
        (c, f"{s}: {c[:10]} was never marked for deployment to deploy group prod, which is "
            f"marked at {b}"),
        (a, f"{s}: deploy group prod is marked at {b}, not {a[:10]} (marked before, then "
            f"replaced: paasport rollback -s {s} -l prod -c {a[:10]})"),
    ]  # fmt: skip
    for sha, line in cases:
        started = time.monotonic()
        _, err = cli(
            "wait-for-deployment", "-s", s, "-l", "prod", "-c", sha[:10], "-t", "60", code=1
        )
        assert err == f"error: {line}\n"
        assert time.monotonic() - started < 20  # not the whole timeout


def test_wait_sees_a_mark_another_tool_pushed(tree: tuple[Path, Path, str], cli: Cli) -> None:
    soa, repo, s = tree
    a = commit(repo, "a")
    cli("mark-for-deployment", "-s", s, "-l", "prod", "-c", a)
    b = commit(repo, "b")
    git(repo, "tag", "paasta-prod-20300101T000000-deploy", b)  # PaaSTA's push: no regeneration
    _, err = cli("wait-for-deployment", "-s", s, "-l", "prod", "-c", b[:10], "-t", "2", code=1)
    assert "never marked" not in err and "timed out" in err, err
    doc = json.loads((soa / s / "deployments.json").read_text())
    assert doc["v2"]["deployments"]["prod"]["git_sha"] == b  # regenerated from the tags


@pytest.mark.parametrize(
    ("args", "code", "message"),
    [
        (["mark-for-deployment", "-s", "nope", "-l", "prod", "-c", "HEAD"], 1, "no service nope"),
        (
            ["mark-for-deployment", "-s", "{s}", "-l", "qa", "-c", "HEAD"],
            1,
            "deploy group 'qa' is not in deploy.yaml",
        ),
        (
            ["mark-for-deployment", "-s", "{s}", "-l", "prod", "-c", "deadbeef"],
            1,
            "commit 'deadbeef' does not exist",
        ),
        (
            [
                "mark-for-deployment",
                "-s",
                "{s}",
                "-l",
                "prod",
                "-c",
                "HEAD",
                "--git-url",
                "/no/such/repo",
            ],
            1,
            "/no/such/repo does not exist",
        ),
        (
            ["stop", "-s", "{s}", "-c", "prod-east", "-i", "main"],
            1,
            "no instances on cluster 'prod-east'",
        ),
        (
            ["stop", "-s", "{s}", "-c", "local", "-i", "nope"],
            1,
            "no instance 'nope' on cluster 'local'",
        ),
        (["stop", "-s", "{s}", "-c", "local", "-i", "canary"], 1, "never marked for deployment"),
        (["rollback", "-s", "{s}", "-l", "prod", "-c", "HEAD"], 1, "was never deployed to 'prod'"),
        (["get-latest-deployment", "-s", "{s}", "-l", "local.canary"], 1, "never marked"),
        (["generate-deployments"], 2, "either --service/-s or --all"),
        (
            ["mark-for-deployment", "-s", "{s}", "-l", "prod", "-c", "HEAD", "--git-url", "-u"],
            2,
            "--git-url: git url '-u' must not start with '-'",
        ),
        (
            ["cook-image", "-s", "{s}", "-c", "HEAD", "--git-url", "ext::sh -c x"],
            2,
            "--git-url: git url 'ext::sh -c x': <transport>::<address> URLs",
        ),
        (["cook-image", "-s", "{s}", "-c", "HEAD"], 1, "no Dockerfile"),
        (["push-to-registry", "-s", "{s}", "-c", "HEAD"], 2, "no docker registry configured"),
    ],
)
def test_bad_input_is_one_clear_line(
    tree: tuple[Path, Path, str], cli: Cli, args: list[str], code: int, message: str
) -> None:
    soa, repo, s = tree
    commit(repo, "a")
    _, err = cli(*[a.format(s=s) for a in args], code=code)
    assert message in err
    assert "Traceback" not in err and len(err.strip().splitlines()) == 1
    assert git(repo, "tag", "--list") == ""
    assert not (soa / s / "deployments.json").exists()


def test_broken_instance_file_blocks_writes_but_not_reads(
    tree: tuple[Path, Path, str], cli: Cli
) -> None:
    soa, repo, s = tree
    commit(repo, "a")
    cli("mark-for-deployment", "-s", s, "-l", "prod", "-c", "HEAD")
    before = (soa / s / "deployments.json").read_bytes()
    (soa / s / "instances-local.yaml").write_text("main:\n  deploy_group: prod\n  instancez: 2\n")
    _, err = cli("mark-for-deployment", "-s", s, "-l", "prod", "-c", "HEAD", code=1)
    assert "instancez" in err
    assert len(git(repo, "tag", "--list").splitlines()) == 1
    assert (soa / s / "deployments.json").read_bytes() == before
    out, _ = cli("get-latest-deployment", "-s", s, "-l", "prod", "--sha-only")
    assert out.strip() == git(repo, "rev-parse", "HEAD")


@pytest.fixture
def cooked_service(tree: tuple[Path, Path, str]) -> Iterator[str]:
    yield tree[2]
    out = subprocess.run(
        ["docker", "image", "ls", "-q", "--filter", f"label={LABEL_BUILD_SERVICE}={tree[2]}"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    for image_id in sorted(set(out.stdout.split())):
        subprocess.run(
            ["docker", "image", "rm", "-f", image_id], capture_output=True, check=False, timeout=120
        )


def test_cook_and_push_through_the_cli(
    tree: tuple[Path, Path, str], cli: Cli, cooked_service: str, registry_addr: str
) -> None:
    soa, repo, s = tree
    shutil.copy(shutil.which("busybox") or "/bin/busybox", repo / "busybox")
    commit(
        repo,
        "Dockerfile",
        'FROM scratch\nCOPY busybox /bin/busybox\nCMD ["/bin/busybox", "true"]\n',
    )
    git(repo, "add", "busybox")
    git(repo, "-c", "user.name=dev", "-c", "user.email=dev@example.com", "commit", "-qm", "bb")
    sha = git(repo, "rev-parse", "HEAD")
    with (soa / s / "service.yaml").open("a") as fh:
        fh.write(f"docker_registry: {registry_addr}\n")
    _, err = cli("cook-image", "-s", s, "-c", "HEAD")
    assert "COPY busybox" in err  # build progress on stderr
    cooked = cli.json("cook-image", "-s", s, "-c", sha[:7])
    assert cooked == {"image": f"{registry_addr}/services-{s}:paasta-{sha}", "git_sha": sha}
    first = cli.json("push-to-registry", "-s", s, "-c", "HEAD")
    again = cli.json("push-to-registry", "-s", s, "-c", "HEAD")
    assert isinstance(first, dict) and isinstance(again, dict)
    assert first["pushed"] is True and again["pushed"] is False
    assert again["digest"] == first["digest"]
