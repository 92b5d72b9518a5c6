"""PaaSTA interop both ways, against PaaSTA's own code (paasta-tools 1.64.0 in .venv-paasta).

Tags paasport writes are read by PaaSTA's generate_deployments_for_service exactly as paasport
reads them (v1 and v2), and tags PaaSTA's own push writes are read by paasport identically.
PaaSTA runs as a subprocess (tests/integration/paasta_side/run_paasta.py) in its own venv.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from paasport.config.tree import load_tree
from paasport.deploy import tags, workflow
from paasport.deploy.git import GitRepo

from harness import commit, git

ROOT = Path(__file__).resolve().parents[2]
PAASTA_PYTHON = ROOT / ".venv-paasta" / "bin" / "python"
RUNNER = Path(__file__).parent / "paasta_side" / "run_paasta.py"
NOW = 1704164645.0  # 2024-01-02T03:04:05Z


def paasta(tmp: Path, *args: str) -> str:
    """Run PaaSTA's own code; a missing .venv-paasta is a failure (scripts/bootstrap.sh)."""
    assert PAASTA_PYTHON.exists(), f"{PAASTA_PYTHON} missing: run scripts/bootstrap.sh"
    etc = tmp / "etc-paasta"
    etc.mkdir(exist_ok=True)
    (etc / "clusters.json").write_text(json.dumps({"cluster": "local", "clusters": CLUSTERS}))
    env = {**os.environ, "PAASTA_SYSTEM_CONFIG_DIR": str(etc)}
    proc = subprocess.run(
        [str(PAASTA_PYTHON), str(RUNNER), *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
        check=False,
    )
    assert proc.returncode == 0, proc.stderr
    return proc.stdout


CLUSTERS = ["local", "prod"]


@pytest.fixture
def setup(tmp_path: Path) -> tuple[Path, Path]:
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True, timeout=30)
    svc = tmp_path / "soa" / "web"
    svc.mkdir(parents=True)
    (svc / "service.yaml").write_text(f"description: interop\ngit_url: {repo}\n")
    (svc / "deploy.yaml").write_text(
        "pipeline:\n  - step: itest\n  - step: canary\n  - step: prod\n  - step: local.batch\n"
    )
    (svc / "monitoring.yaml").write_text("team: interop\n")
    (svc / "kubernetes-local.yaml").write_text(
        "main:\n  deploy_group: prod\n  cmd: httpd -f -p 8888\n"
        "canary:\n  deploy_group: canary\n  cmd: httpd -f -p 8888\n"
        "batch:\n  cmd: sleep 1000\n"
    )
    (svc / "kubernetes-prod.yaml").write_text(
        "main:\n  deploy_group: prod\n  cmd: httpd -f -p 8888\n"
        "worker:\n  deploy_group: prod\n  cmd: sleep 1000\n"
    )
    return tmp_path / "soa", repo


def paasport_document(soa: Path) -> dict[str, object]:
    tree = load_tree(soa, ["web"])
    assert not tree.errors, tree.errors
    target = workflow.target_from_tree(tree, "web", write=False)
    with GitRepo(target.require_git_url()) as repo:
        return dict(workflow.generate(target, repo).document)


def paasta_document(soa: Path, tmp: Path) -> dict[str, object]:
    """PaaSTA's generate_deployments_for_service on a copy of the tree."""
    copy = tmp / f"paasta-soa-{len(list(tmp.glob('paasta-soa-*')))}"
    shutil.copytree(soa, copy)
    (copy / "web" / "deployments.json").unlink(missing_ok=True)
    paasta(tmp, "generate", str(copy), "web")
    doc: dict[str, object] = json.loads((copy / "web" / "deployments.json").read_text())
    return doc


def test_paasport_tags_read_by_paasta_and_paasta_tags_by_paasport(
    setup: tuple[Path, Path], tmp_path: Path
) -> None:
    soa, repo = setup
    old, a, b, c = (commit(repo, name) for name in ("old", "a", "b", "c"))
    # An annotated tag as paasport once wrote them, since superseded.
    git(repo, "-c", "user.name=dev", "-c", "user.email=d@e", "tag", "-a", "-m", "old",
        "paasta-prod-20230101T000000-deploy", old)  # fmt: skip
    tree = load_tree(soa, ["web"])
    target = workflow.target_from_tree(tree, "web", write=False)
    with GitRepo(str(repo)) as r:
        workflow.mark_for_deployment(target, r, "prod", a, now=NOW)
        workflow.mark_for_deployment(target, r, "prod", b, now=NOW + 10, image_version="rebuild1")
        workflow.mark_for_deployment(target, r, "canary", c, now=NOW + 20)
        workflow.mark_for_deployment(target, r, "local.batch", a, now=NOW + 30)
        workflow.set_desired_state(target, r, "prod", "worker", "stop", now=NOW + 40)
        workflow.set_desired_state(target, r, "local", "main", "stop", now=NOW + 50)
        workflow.set_desired_state(target, r, "local", "main", "start", now=NOW + 60)  # restart
        workflow.set_desired_state(target, r, "local", "canary", "stop", now=NOW + 70)
    ours = paasport_document(soa)
    theirs = paasta_document(soa, tmp_path)
    assert theirs == ours
    v2 = ours["v2"]
    assert isinstance(v2, dict)
    assert v2["deployments"]["prod"] == {
        "docker_image": f"services-web:paasta-{b}-rebuild1",
        "git_sha": b,
        "image_version": "rebuild1",
    }
    assert v2["controls"]["web:prod.worker"]["desired_state"] == "stop"  # PaaSTA sees the stop
    assert v2["controls"]["web:local.main"] == {
        "desired_state": "start",
        "force_bounce": "20240102T030505",
    }

    # The other way: tags pushed by PaaSTA's own code (dulwich send_pack, lightweight).
    paasta(tmp_path, "tag", str(repo), "paasta-prod-20240201T000000-deploy", c)
    paasta(tmp_path, "tag", str(repo), "paasta-canary+v7-20240201T000001-deploy", b)
    paasta(tmp_path, "tag", str(repo), "paasta-prod.main-20240201T000002-stop", c)
    paasta(tmp_path, "tag", str(repo), "paasta-local.batch-20240201T000003-start", a)
    ours = paasport_document(soa)
    assert paasta_document(soa, tmp_path) == ours
    v2 = ours["v2"]
    assert isinstance(v2, dict)
    assert v2["deployments"]["canary"]["docker_image"] == f"services-web:paasta-{b}-v7"
    assert v2["controls"]["web:prod.main"]["desired_state"] == "stop"
    assert v2["controls"]["web:prod.worker"]["desired_state"] == "start"  # new deploy resets
    with GitRepo(str(repo)) as r:
        refs = r.ls_remote()
    for group in ("prod", "canary", "local.batch"):
        ref, sha, version = json.loads(paasta(tmp_path, "latest", str(repo), group))
        latest = tags.latest_deploy_tags(refs, [group])[group]
        assert (latest.ref, latest.sha, latest.image_version) == (ref, sha, version)


def test_why_tags_are_lightweight(setup: tuple[Path, Path], tmp_path: Path) -> None:
    """An annotated tag as the newest: PaaSTA takes the tag object's sha (no commit), paasport
    peels it to the commit; so paasport writes lightweight tags, and reads old annotated ones."""
    soa, repo = setup
    a = commit(repo, "a")
    git(repo, "-c", "user.name=dev", "-c", "user.email=d@e", "tag", "-a", "-m", "x",
        "paasta-prod-20240101T000000-deploy", a)  # fmt: skip
    tag_object = git(repo, "rev-parse", "refs/tags/paasta-prod-20240101T000000-deploy")
    _, sha, _ = json.loads(paasta(tmp_path, "latest", str(repo), "prod"))
    assert sha == tag_object != a
    v2 = paasport_document(soa)["v2"]
    assert isinstance(v2, dict) and v2["deployments"]["prod"]["git_sha"] == a


def test_rollback_markers_both_ways(setup: tuple[Path, Path], tmp_path: Path) -> None:
    """paasport's rollback marker is found by PaaSTA's get_rollback_tags_for_sha; a marker made
    by PaaSTA's create_rollback_tag makes paasport refuse the sha (until --force)."""
    soa, repo = setup
    a, b, c = (commit(repo, name) for name in ("a", "b", "c"))
    tree = load_tree(soa, ["web"])
    target = workflow.target_from_tree(tree, "web", write=False)
    with GitRepo(str(repo)) as r:
        workflow.mark_for_deployment(target, r, "prod", a, now=NOW)
        workflow.mark_for_deployment(target, r, "prod", b, now=NOW + 10)
        result = workflow.rollback(target, r, "prod", a, now=NOW + 20)
    assert result.rollback_tag is not None
    found = json.loads(paasta(tmp_path, "rollback-tags", str(repo), "prod", b))
    assert [ref for ref, _ in found] == [f"refs/tags/{result.rollback_tag}"]
    assert json.loads(paasta(tmp_path, "rollback-tags", str(repo), "prod", a)) == []

    paasta(tmp_path, "rollback", str(repo), "canary", c)  # PaaSTA marks c as rolled back
    with GitRepo(str(repo)) as r:
        marks = tags.rollback_marks(r.ls_remote(), c)
    assert [m.target for m in marks] == ["canary"]
    config = tmp_path / "paasport.yaml"
    config.write_text(
        f"local_cluster: local\nclusters:\n  local: {{}}\n  prod: {{}}\n"
        f"soa_dir: {soa}\nstate_dir: {tmp_path / 'state'}\n"
    )
    base = [sys.executable, "-m", "paasport", "mark-for-deployment", "-s", "web", "-l", "prod",
            "-c", c, "--config", str(config)]  # fmt: skip
    refused = subprocess.run(base, capture_output=True, text=True, timeout=60, check=False)
    assert refused.returncode == 1, refused.stdout + refused.stderr
    assert f"{c[:12]} was rolled back from canary at " in refused.stderr, refused.stderr
    forced = subprocess.run([*base, "--force"], capture_output=True, text=True, timeout=60,
                            check=False)  # fmt: skip
    assert forced.returncode == 0, forced.stderr
