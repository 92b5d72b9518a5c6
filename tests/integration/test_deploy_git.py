"""The deploy workflow against real git repos in temporary folders: local paths and file:// URLs."""

from __future__ import annotations

import json
import subprocess
import threading
import time
from pathlib import Path

import pytest

from paasport.deploy import tags, workflow
from paasport.deploy.deployments import read_deployments
from paasport.deploy.git import GitRepo
from paasport.errors import GitError, NotFoundError, PermanentError, UsageError

from harness import commit, git

NOW = 1704164645.0  # 2024-01-02T03:04:05Z


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    path = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", "-b", "main", str(path)], check=True, timeout=120)
    return path


@pytest.fixture
def soa(tmp_path: Path) -> Path:
    (tmp_path / "soa" / "web").mkdir(parents=True)
    return tmp_path / "soa"


def target(soa: Path | None, url: str) -> workflow.ServiceTarget:
    return workflow.ServiceTarget(
        service="web",
        git_url=url,
        deploy_groups=("prod", "canary"),
        control_branches={"local.main": "prod", "local.worker": "prod", "local.canary": "canary"},
        soa_dir=soa,
    )


def tags_of(repo: Path) -> list[str]:
    return git(repo, "tag", "--list", "paasta-*").splitlines()


def test_mark_tags_the_commit_and_writes_deployments(repo: Path, soa: Path) -> None:
    first = commit(repo, "a")
    commit(repo, "b")
    with GitRepo(str(repo)) as r:
        result = workflow.mark_for_deployment(target(soa, str(repo)), r, "prod", first[:7], now=NOW)
    assert result.tag == "paasta-prod-20240102T030405-deploy"
    assert result.sha == first
    # Lightweight, as PaaSTA's own push writes them: the ref names the commit itself.
    assert git(repo, "cat-file", "-t", result.tag) == "commit"
    assert git(repo, "rev-parse", f"refs/tags/{result.tag}") == first
    state = read_deployments(soa, "web")
    assert state is not None
    got = state.state_for("local", "main", "prod")
    assert got is not None and got.git_sha == first
    assert got.docker_image == f"services-web:paasta-{first}"
    assert state.state_for("local", "canary", "canary") is None


def test_two_marks_in_one_second_are_distinct_and_ordered(repo: Path, soa: Path) -> None:
    first = commit(repo, "a")
    second = commit(repo, "b")
    with GitRepo(str(repo)) as r:
        one = workflow.mark_for_deployment(target(soa, str(repo)), r, "prod", first, now=NOW)
        two = workflow.mark_for_deployment(target(soa, str(repo)), r, "prod", second, now=NOW)
    assert one.tag != two.tag and two.tag > one.tag
    state = read_deployments(soa, "web")
    assert state is not None
    got = state.state_for("local", "main", "prod")
    assert got is not None and got.git_sha == second


def test_concurrent_writer_in_the_same_second_gets_the_next_one(repo: Path, soa: Path) -> None:
    sha = commit(repo, "a")
    with GitRepo(str(repo)) as r:
        r.tag_refs()  # read before the other writer tags: our view is stale
        git(repo, "tag", "paasta-prod-20240102T030405-deploy", sha)
        result = workflow.mark_for_deployment(target(soa, str(repo)), r, "prod", sha, now=NOW)
    assert result.tag == "paasta-prod-20240102T030406-deploy"


@pytest.mark.parametrize(
    ("group", "commit_ref", "error", "message"),
    [
        ("nope", "HEAD", NotFoundError, "deploy group 'nope' is not in deploy.yaml"),
        ("prod", "0123456789abcdef0123456789abcdef01234567", NotFoundError, "does not exist"),
        ("prod", "no-such-branch", NotFoundError, "does not exist"),
        ("prod", "--upload-pack=evil", UsageError, "is not a commit"),
    ],
)
def test_bad_mark_leaves_nothing_behind(
    repo: Path, soa: Path, group: str, commit_ref: str, error: type[Exception], message: str
) -> None:
    commit(repo, "a")
    with GitRepo(str(repo)) as r, pytest.raises(error) as err:
        workflow.mark_for_deployment(target(soa, str(repo)), r, group, commit_ref, now=NOW)
    assert message in str(err.value)
    assert tags_of(repo) == []
    assert not (soa / "web" / "deployments.json").exists()


@pytest.mark.parametrize("url", ["{tmp}/does-not-exist", "file://{tmp}/does-not-exist.git"])
def test_unreachable_git_url(tmp_path: Path, soa: Path, url: str) -> None:
    url = url.format(tmp=tmp_path)
    with GitRepo(url) as r, pytest.raises(GitError) as err:
        workflow.mark_for_deployment(target(soa, url), r, "prod", "HEAD", now=NOW)
    assert url in str(err.value)
    assert not (soa / "web" / "deployments.json").exists()


def test_remote_url_is_tagged_without_a_clone(repo: Path, soa: Path, tmp_path: Path) -> None:
    first = commit(repo, "a")
    second = commit(repo, "b")
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(repo), str(bare)], check=True, timeout=120)
    url = f"file://{bare}"
    t = target(soa, url)
    with GitRepo(url) as r:
        one = workflow.mark_for_deployment(t, r, "prod", first, now=NOW)
        two = workflow.mark_for_deployment(t, r, "prod", second[:8], now=NOW)
        three = workflow.mark_for_deployment(t, r, "canary", "main", now=NOW)
    assert git(bare, "cat-file", "-t", one.tag) == "commit"
    assert git(bare, "rev-parse", f"refs/tags/{one.tag}") == first
    assert git(bare, "rev-parse", f"refs/tags/{two.tag}") == second
    assert two.tag > one.tag and three.sha == second
    doc = json.loads((soa / "web" / "deployments.json").read_text())
    assert doc["v2"]["deployments"]["prod"]["git_sha"] == second
    with GitRepo(url) as r, pytest.raises(NotFoundError):
        workflow.mark_for_deployment(t, r, "prod", "0" * 40, now=NOW)


def test_start_stop_restart(repo: Path, soa: Path) -> None:
    sha = commit(repo, "a")
    t = target(soa, str(repo))
    with GitRepo(str(repo)) as r:
        with pytest.raises(NotFoundError, match="never marked"):
            workflow.set_desired_state(t, r, "local", "main", "stop", now=NOW)
        workflow.mark_for_deployment(t, r, "prod", sha, now=NOW)
        stop = workflow.set_desired_state(t, r, "local", "main", "stop", now=NOW + 10)
        assert stop.tag == "paasta-local.main-20240102T030415-stop"
        state = read_deployments(soa, "web")
        assert state is not None
        main = state.state_for("local", "main", "prod")
        assert main is not None and (main.desired_state, main.force_bounce) == (
            "stop",
            "20240102T030415",
        )
        worker = state.state_for("local", "worker", "prod")
        assert worker is not None and worker.desired_state == "start"
        start = workflow.set_desired_state(t, r, "local", "main", "start", now=NOW + 10)
        restart = workflow.set_desired_state(t, r, "local", "main", "start", now=NOW + 10)
        assert start.tag == "paasta-local.main-20240102T030416-start"
        assert restart.tag == "paasta-local.main-20240102T030417-start"
        state = read_deployments(soa, "web")
        assert state is not None
        main = state.state_for("local", "main", "prod")
        assert main is not None and main.desired_state == "start"
        assert main.force_bounce == "20240102T030417"  # restart = a new force_bounce
        with pytest.raises(NotFoundError, match="no instances on cluster 'prod-east'"):
            workflow.set_desired_state(t, r, "prod-east", "main", "stop", now=NOW)
        with pytest.raises(NotFoundError, match="no instance 'nope' on cluster 'local'"):
            workflow.set_desired_state(t, r, "local", "nope", "stop", now=NOW)


def test_rollback_and_history(repo: Path, soa: Path) -> None:
    a = commit(repo, "a")
    b = commit(repo, "b")
    never = commit(repo, "c")
    t = target(soa, str(repo))
    with GitRepo(str(repo)) as r:
        workflow.mark_for_deployment(t, r, "prod", a, now=NOW)
        workflow.mark_for_deployment(t, r, "prod", b, now=NOW + 60)
        workflow.mark_for_deployment(t, r, "canary", never, now=NOW + 90)
        assert [d.sha for d in workflow.deployed_commits(r.tag_refs(), "prod")] == [b, a]
        with pytest.raises(PermanentError, match="never deployed to 'prod'"):
            workflow.rollback(t, r, "prod", never, now=NOW + 120)
        back = workflow.rollback(t, r, "prod", a[:10], now=NOW + 120)
        assert back.sha == a
        assert [d.sha for d in workflow.deployed_commits(r.tag_refs(), "prod")] == [a, b]
        forced = workflow.rollback(t, r, "canary", b, now=NOW + 180, force=True)
        assert forced.sha == b
        workflow.set_desired_state(t, r, "local", "main", "stop", now=NOW + 200)
        everything = workflow.history(t, r)
        prod = workflow.history(t, r, "prod")
    state = read_deployments(soa, "web")
    assert state is not None
    got = state.state_for("local", "main", "prod")
    assert got is not None and got.git_sha == a
    assert [(e.kind, e.target, e.sha) for e in prod] == [
        ("stop", "local.main", a),
        ("deploy", "prod", a),
        ("deploy", "prod", b),
        ("deploy", "prod", a),
    ]
    assert len(everything) == 6 and everything[1].target == "canary"
    assert all(e.tagger is None for e in everything)  # lightweight: the event log says who
    # PaaSTA's marker on the sha each rollback left
    assert [t for t in tags_of(repo) if t.endswith("-rollback")] == [
        "paasta-canary-20240102T030705-rollback",
        "paasta-prod-20240102T030605-rollback",
    ]
    assert git(repo, "rev-parse", "refs/tags/paasta-prod-20240102T030605-rollback") == b
    assert git(repo, "rev-parse", "refs/tags/paasta-canary-20240102T030705-rollback") == never
    assert prod[0].as_json()["time"] == "2024-01-02T03:07:25+00:00"


def test_paasta_written_lightweight_tags_are_read(repo: Path, soa: Path) -> None:
    a = commit(repo, "a")
    b = commit(repo, "b")
    git(repo, "tag", "paasta-prod-20230101T000000-deploy", a)
    git(repo, "tag", "paasta-prod+20230201T000000-20230201T000000-deploy", b)
    git(repo, "tag", "paasta-paasta-local.main-20230301T000000-stop", b)
    with GitRepo(str(repo)) as r:
        result = workflow.generate(target(soa, str(repo)), r)
        again = workflow.generate(target(soa, str(repo)), r)
        history = workflow.history(target(soa, str(repo)), r)
    assert result.changed and not again.changed
    state = read_deployments(soa, "web")
    assert state is not None
    got = state.state_for("local", "main", "prod")
    assert got is not None
    assert (got.git_sha, got.image_version, got.desired_state) == (b, "20230201T000000", "stop")
    assert got.docker_image == f"services-web:paasta-{b}-20230201T000000"
    assert [e.tagger for e in history] == [None, None, None]  # lightweight: no tagger


def test_generate_without_git_url_writes_an_empty_document(soa: Path) -> None:
    t = workflow.ServiceTarget(service="web", git_url=None, soa_dir=soa)
    result = workflow.generate(t, None)
    assert result.document == {"v1": {}, "v2": {"deployments": {}, "controls": {}}}
    assert result.changed


def test_mark_with_an_image_version(repo: Path, soa: Path) -> None:
    sha = commit(repo, "a")
    t = target(soa, str(repo))
    with GitRepo(str(repo)) as r:
        plain = workflow.mark_for_deployment(t, r, "prod", sha, now=NOW)
        versioned = workflow.mark_for_deployment(
            t, r, "prod", sha, now=NOW, image_version="rebuild1"
        )
        with pytest.raises(UsageError, match="image version 'a b'"):
            workflow.mark_for_deployment(t, r, "prod", sha, now=NOW, image_version="a b")
    assert versioned.tag == "paasta-prod+rebuild1-20240102T030406-deploy"
    assert versioned.tag != plain.tag
    state = read_deployments(soa, "web")
    assert state is not None
    got = state.state_for("local", "main", "prod")
    assert got is not None and got.image_version == "rebuild1"
    assert got.docker_image == f"services-web:paasta-{sha}-rebuild1"
    assert len(tags_of(repo)) == 2


def test_git_allow_protocol_is_set_whatever_the_caller_allows(
    repo: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    commit(repo, "a")
    marker = tmp_path / "pwned"
    monkeypatch.setenv("GIT_ALLOW_PROTOCOL", "ext:file")  # the caller's env would allow ext::
    with GitRepo(str(repo)) as r:
        assert r.ls_remote() == {}  # a plain repo still works
        r.url = f"ext::sh -c touch% {marker}"  # past check_git_url: git itself must refuse
        with pytest.raises(GitError, match="cannot read refs"):
            r.ls_remote()
    assert not marker.exists()


def test_concurrent_marks_stay_in_the_present_and_the_newest_wins(repo: Path, soa: Path) -> None:
    shas = [commit(repo, f"c{i}") for i in range(6)]
    results: dict[int, tuple[str, float]] = {}
    errors: list[BaseException] = []
    start = threading.Barrier(len(shas))

    def mark(i: int) -> None:
        try:
            start.wait(timeout=10)
            with GitRepo(str(repo)) as r:
                res = workflow.mark_for_deployment(
                    target(soa, str(repo)), r, "prod", shas[i], now=time.time()
                )
            results[i] = (res.tag, time.time())
        except BaseException as err:  # reported below
            errors.append(err)

    threads = [threading.Thread(target=mark, args=(i,)) for i in range(len(shas))]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=60)
    assert not any(t.is_alive() for t in threads) and errors == []
    made = sorted(tag for tag, _ in results.values())
    assert len(set(made)) == len(shas) and sorted(tags_of(repo)) == made
    for tag, returned in results.values():
        stamp = tags.parse_deploy_tag(tags.TAG_PREFIX + tag, "")
        assert stamp is not None
        # never in the future: another tool tagging "now" cannot collide with these
        assert tags.parse_timestamp(stamp.timestamp).timestamp() <= returned + 1.0
    newest_sha = git(repo, "rev-parse", f"refs/tags/{made[-1]}")
    with GitRepo(str(repo)) as r:
        workflow.generate(target(soa, str(repo)), r)
    state = read_deployments(soa, "web")
    assert state is not None
    got = state.state_for("local", "main", "prod")
    assert got is not None and got.git_sha == newest_sha
