"""Automatic rollback on the real Docker engine and HAProxy: the deploy group has
`auto_rollback: true` in deploy.yaml; a deploy whose tasks crash-loop, and one whose tasks
answer 500 through the proxy while their health check passes, are each rolled back by
`paasport up` by itself: PaaSTA's rollback marker on the bad sha, a deploy tag on the good one,
a `deploy` event with the evidence and a deploy_failed alert to the team; the bad sha is then
refused by mark-for-deployment; wait-for-deployment says "rolled back".
"""

from __future__ import annotations

import json
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_world import E2E, SERVICE, NotYet, e2e_world, git, healthy_in_proxy, wait_for
from rollback_world import BAD_CGI, Traffic, commit_version

pytestmark = pytest.mark.integration


def deploy_events(world: E2E) -> list[dict[str, Any]]:
    out = world.run("events", "-s", SERVICE, "--kind", "deploy", "--json", "-n", "50")
    return [e for e in json.loads(out.stdout) if e["data"].get("outcome") == "rolled_back"]


def rolled_back_from(world: E2E, sha: str) -> Any:
    found = [e for e in deploy_events(world) if e["data"]["git_sha"] == sha]
    return found or NotYet(f"no rollback of {sha[:8]} yet")


def running_sha(world: E2E, sha: str) -> Any:
    s = world.status()
    ok = s["git_sha"] == sha and s["healthy"] == 3 and len(s["app_versions"]) == 1
    return s if ok else NotYet(f"{s['git_sha'][:8]} {s['healthy']} healthy, {s['state']}")


def newest_tag(world: E2E, suffix: str) -> tuple[str, str]:
    names = [t for t in git(world.repo, "tag", "-l").split() if t.endswith(suffix)]
    name = sorted(names, key=lambda t: t.rsplit("-", 2)[-2])[-1]
    return name, git(world.repo, "rev-parse", f"{name}^{{commit}}")


@pytest.fixture(scope="module")
def world() -> Iterator[tuple[E2E, str]]:
    with tempfile.TemporaryDirectory(prefix="paasport-test-") as tmp, e2e_world(Path(tmp)) as w:
        (w.soa / SERVICE / "deploy.yaml").write_text(
            f"pipeline:\n  - step: {w.cluster}.main\n    auto_rollback: true\n"
            "    auto_certify_delay: 300\n    min_restarts_for_crashloop_rollback: 2\n"
        )
        good = commit_version(w, "good")
        w.run("mark-for-deployment", "-s", SERVICE, "-l", f"{w.cluster}.main", "-c", good)
        w.start_up()
        wait_for("3 healthy tasks", lambda: healthy_in_proxy(w), 60, w.up_log)
        wait_for("good serving", lambda: running_sha(w, good), 60, w.up_log)
        yield w, good


def test_a_crash_looping_deploy_is_rolled_back(world: tuple[E2E, str]) -> None:
    w, good = world
    group = f"{w.cluster}.main"
    # /www a file: httpd cannot change into it and exits 1 at once
    bad = commit_version(w, "crashes", www="COPY Dockerfile /www\n")
    w.run("mark-for-deployment", "-s", SERVICE, "-l", group, "-c", bad)
    waited = w.run("wait-for-deployment", "-s", SERVICE, "-l", group, "-c", bad, "-t", "90",
                   check=False)  # fmt: skip
    assert waited.returncode == 1, waited.stderr
    assert "rolled back: auto-rollback: " in waited.stderr, waited.stderr
    [event] = wait_for("the rollback event", lambda: rolled_back_from(w, bad), 30, w.up_log)
    assert event["level"] == "error" and event["data"]["rolled_back_to"] == good
    assert event["data"]["why"] == "crash loop"
    assert "crash-looping: " in event["message"] and "(exit codes 1, 1" in event["message"]
    marker, on = newest_tag(w, "-rollback")
    assert marker.startswith(f"paasta-{group}-") and on == bad  # PaaSTA's marker on the bad sha
    _, deployed = newest_tag(w, "-deploy")
    assert deployed == good
    wait_for("good serving again", lambda: running_sha(w, good), 60, w.up_log)
    doc = json.loads((w.soa / SERVICE / "deployments.json").read_text())
    assert doc["v2"]["deployments"][group]["git_sha"] == good

    def alerted() -> Any:
        out = w.run("events", "-s", SERVICE, "--kind", "alert", "--json", "-n", "50")
        found = [e for e in json.loads(out.stdout) if e["message"].startswith("deploy_failed")
                 and "auto-rollback" in e["message"]]  # fmt: skip
        return found or NotYet("no deploy_failed alert yet")

    wait_for("the team's alert", alerted, 30, w.up_log)
    again = w.run("mark-for-deployment", "-s", SERVICE, "-l", group, "-c", bad, check=False)
    assert again.returncode != 0 and "was rolled back from" in again.stderr
    marks = json.loads(w.run("events", "-s", SERVICE, "--kind", "mark", "--json").stdout)
    assert any(m["data"].get("user") == "paasport auto-rollback" for m in marks)


def test_a_deploy_that_answers_500s_is_rolled_back(world: tuple[E2E, str]) -> None:
    w, good = world
    group = f"{w.cluster}.main"
    wait_for("good serving", lambda: running_sha(w, good), 60, w.up_log)
    bad = commit_version(w, "answers 500", cgi=BAD_CGI)
    with Traffic(w.proxy_port) as traffic:
        time.sleep(2)  # the guard sees the good version's traffic first
        assert traffic.codes.get(200), traffic.codes
        w.run("mark-for-deployment", "-s", SERVICE, "-l", group, "-c", bad)
        [event] = wait_for("the rollback", lambda: rolled_back_from(w, bad), 90, w.up_log)
        wait_for("good serving again", lambda: running_sha(w, good), 60, w.up_log)
        time.sleep(1)
    assert event["data"]["why"] == "error rate" and event["data"]["rolled_back_to"] == good
    assert "error rate through the proxy: new version " in event["message"]
    assert "worse" in event["message"]
    evidence = event["data"]["evidence"]
    assert evidence["new"]["requests"] >= 50 and evidence["new"]["errors"] > 0
    assert traffic.codes.get(500), traffic.codes  # the bad version did answer for a while
    _, on = newest_tag(w, "-rollback")
    assert on == bad
