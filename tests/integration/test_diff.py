"""`paasport diff` and `mark-for-deployment --dry-run` on the real Docker engine: two instances
built from one YAML template run; with `up` stopped (so deployd applies nothing meanwhile) the
diff names an env change of the template as a bounce of both, a scaling as "no bounce", a new
sha through --dry-run (nothing tagged), the same edit against a git revision of soa-configs;
after a real bounce its duration becomes the estimate; a mark that bounces more instances than
--confirm-over is refused without a terminal.
"""

from __future__ import annotations

import json
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_world import E2E, SERVICE, NotYet, e2e_world, git, wait_for

pytestmark = pytest.mark.integration

TEMPLATE = """\
_common: &common
  cpus: 0.1
  mem: 32
  cmd: httpd -f -p 8888 -h /www
  healthcheck_grace_period_seconds: 5
  healthcheck_interval_seconds: 1
  healthcheck_timeout_seconds: 1
  bounce_method: crossover
  drain_timeout_seconds: 5
  deploy_group: {group}
  env:
    GREETING: {greeting}
main:
  <<: *common
  instances: {main}
batch:
  <<: *common
  instances: 1
"""


def write_template(world: E2E, greeting: str = "hello", main: int = 2) -> None:
    text = TEMPLATE.format(greeting=greeting, main=main, group=f"{world.cluster}.main")
    world.instance_file.write_text(text)


def both_running(world: E2E, want: dict[str, int]) -> Any:
    out = world.run("status", "-s", SERVICE, "-c", world.cluster, "--json", check=False)
    views = {v["instance"]: v for v in json.loads(out.stdout or "[]")}
    if all(views.get(i, {}).get("healthy") == n and len(views[i]["app_versions"]) == 1
           for i, n in want.items()):  # fmt: skip
        return views
    return NotYet({i: (v.get("healthy"), v.get("state")) for i, v in views.items()})


def stop_up(world: E2E) -> None:
    assert world.up is not None
    world.up.send_signal(signal.SIGINT)
    world.up.wait(30)


def diff(world: E2E, *args: str) -> tuple[int, Any]:
    out = world.run("diff", "-s", SERVICE, *args, "--json", check=False)
    assert out.returncode in (0, 1), out.stderr
    return out.returncode, json.loads(out.stdout)


def by_instance(doc: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {p["instance"]: p for p in doc["instances"]}


@pytest.fixture(scope="module")
def world() -> Iterator[E2E]:
    with tempfile.TemporaryDirectory(prefix="paasport-test-") as tmp, e2e_world(Path(tmp)) as w:
        sha = git(w.repo, "rev-parse", "HEAD")
        write_template(w)
        w.run("cook-image", "-s", SERVICE, "-c", sha)
        w.run("mark-for-deployment", "-s", SERVICE, "-l", f"{w.cluster}.main", "-c", sha)
        w.start_up()
        wait_for("both instances healthy", lambda: both_running(w, {"main": 2, "batch": 1}), 90,
                 w.up_log)  # fmt: skip
        stop_up(w)  # the tasks keep running; deployd applies nothing while we look
        yield w


def test_a_template_change_bounces_both_and_scaling_does_not(world: E2E) -> None:
    code, doc = diff(world)
    assert code == 0 and doc["changes"] == 0, doc
    text = world.run("diff", "-s", SERVICE, check=False)
    assert text.returncode == 0 and "nothing would change (2 instance(s)" in text.stdout

    write_template(world, greeting="hola")
    code, doc = diff(world)
    plans = by_instance(doc)
    assert code == 1 and doc["bounces"] == 2, doc
    for name, tasks in (("main", 2), ("batch", 1)):
        p = plans[name]
        assert p["change"] == "bounce" and p["summary"] == "bounces: env.GREETING changed"
        assert p["changes"] == [{"path": "env.GREETING", "old": "hello", "new": "hola"}]
        assert (p["tasks_start"], p["tasks_stop"]) == (tasks, tasks)
        assert p["bounce_method"] == "crossover"
        assert p["git_sha_from"] == p["git_sha_to"]
        assert p["room"]["ok"] and p["room"]["needed"] == tasks and p["room"]["hosts"]
    out = world.run("diff", "-s", SERVICE, check=False)
    assert out.returncode == 1
    assert f"{SERVICE}.main ({world.cluster}): bounces: env.GREETING changed" in out.stdout
    assert '    env.GREETING: "hello" -> "hola"' in out.stdout
    assert "2 of 2 instance(s) would change, 2 would bounce" in out.stdout

    write_template(world, main=4)
    code, doc = diff(world)
    plans = by_instance(doc)
    assert code == 1 and doc["bounces"] == 0
    assert (plans["main"]["change"], plans["main"]["summary"]) == (
        "scale", "scales 2 -> 4, no bounce")  # fmt: skip
    assert plans["batch"]["change"] == "none"
    write_template(world)


def test_a_dry_run_mark_plans_a_new_sha_and_tags_nothing(world: E2E) -> None:
    (world.repo / "www" / "index.html").write_text("hello from the end-to-end test, v2\n")
    git(world.repo, "add", "-A")
    git(world.repo, "-c", "user.name=e2e", "-c", "user.email=e2e@localhost", "commit", "-qm", "v2")
    sha1 = git(world.repo, "rev-parse", "HEAD~1")
    sha2 = git(world.repo, "rev-parse", "HEAD")
    tags = git(world.repo, "tag", "-l")
    group = f"{world.cluster}.main"
    out = world.run("mark-for-deployment", "-s", SERVICE, "-l", group, "-c", "HEAD", "--dry-run",
                    "--json")  # fmt: skip
    doc = json.loads(out.stdout)
    assert doc["dry_run"] and doc["git_sha"] == sha2
    [cluster] = doc["clusters"]
    plans = by_instance(cluster)
    assert set(plans) == {"main", "batch"}  # both run the group
    for p in plans.values():
        assert p["change"] == "bounce" and (p["git_sha_from"], p["git_sha_to"]) == (sha1, sha2)
        paths = {c["path"]: c for c in p["changes"]}
        assert paths["git_sha"] == {"path": "git_sha", "old": sha1, "new": sha2}
        assert paths["image"]["new"].endswith(sha2)
    assert git(world.repo, "tag", "-l") == tags  # nothing tagged
    text = world.run("mark-for-deployment", "-s", SERVICE, "-l", group, "-c", "HEAD",
                     "--dry-run").stdout  # fmt: skip
    assert f"git {sha1[:8]} -> {sha2[:8]}" in text and "nothing was tagged" in text

    refused = world.run("mark-for-deployment", "-s", SERVICE, "-l", group, "-c", "HEAD",
                        "--confirm-over", "1", check=False)  # fmt: skip
    assert refused.returncode != 0 and "Traceback" not in refused.stderr
    assert (
        f"bounces 2 instances ({world.cluster}.batch, {world.cluster}.main), more than "
        "--confirm-over 1: pass --yes" in refused.stderr
    ), refused.stderr
    assert git(world.repo, "tag", "-l") == tags


def test_against_a_git_revision_of_soa_configs(world: E2E) -> None:
    soa = world.soa
    subprocess.run(["git", "init", "-q", "-b", "main", str(soa)], check=True, timeout=60)
    git(soa, "add", "-A")
    git(soa, "-c", "user.name=e2e", "-c", "user.email=e2e@localhost", "commit", "-qm", "base")
    write_template(world, greeting="bonjour", main=3)
    out = world.run("diff", "-s", SERVICE, "--against", "HEAD", "--json", check=False)
    assert out.returncode == 1 and out.stdout, out.stderr
    doc = json.loads(out.stdout)
    plans = by_instance(doc)
    assert doc["against"] == "HEAD" and len(doc["against_sha"]) == 40
    assert plans["main"]["changes"] == [
        {"path": "env.GREETING", "old": "hello", "new": "bonjour"}
    ]  # the scaling is no field: it is the counts
    assert (plans["main"]["instances_from"], plans["main"]["instances_to"]) == (2, 3)
    assert plans["batch"]["change"] == "bounce"
    bad = world.run("diff", "-s", SERVICE, "--against", "no-such-ref", check=False)
    assert bad.returncode != 0 and "no commit 'no-such-ref'" in bad.stderr
    write_template(world)
    same = world.run("diff", "-s", SERVICE, "--against", "HEAD", check=False)
    assert same.returncode == 0, same.stdout


def test_a_past_bounce_is_the_estimate(world: E2E) -> None:
    write_template(world, greeting="hola")
    world.start_up()
    started = time.monotonic()
    wait_for("the bounce to hola", lambda: _bounced(world), 90, world.up_log)
    took = time.monotonic() - started
    stop_up(world)
    write_template(world, greeting="hallo")
    code, doc = diff(world)
    main = by_instance(doc)["main"]
    assert code == 1 and main["estimate_from_bounces"] == 1, main
    assert 0 < main["estimate_seconds"] <= took + 5
    assert main["changes"] == [{"path": "env.GREETING", "old": "hola", "new": "hallo"}]
    write_template(world)


def _bounced(world: E2E) -> Any:
    views = both_running(world, {"main": 2, "batch": 1})
    if not views:
        return views
    events = json.loads(world.run("events", "-s", SERVICE, "-i", "main", "--kind", "bounce",
                                  "--json").stdout)  # fmt: skip
    done = [e for e in events if e["message"].endswith(" finished")]
    return views if done else NotYet("no finished bounce yet")


def commit_version(world: E2E, text: str, *, healthy: bool) -> str:
    """A commit of the service whose /status answers (healthy) or is gone (404: never healthy)."""
    (world.repo / "www" / "index.html").write_text(f"{text}\n")
    status = world.repo / "www" / "status"
    if healthy:
        status.write_text("ok\n")
    elif status.exists():
        status.unlink()
    git(world.repo, "add", "-A")
    git(world.repo, "-c", "user.name=e2e", "-c", "user.email=e2e@localhost", "commit", "-qm", text)
    sha = git(world.repo, "rev-parse", "HEAD")
    world.run("cook-image", "-s", SERVICE, "-c", sha)
    return sha


def bounce_messages(world: E2E, since: float) -> list[str]:
    out = world.run("events", "-s", SERVICE, "-i", "main", "--kind", "bounce", "--since",
                    f"{time.time() - since + 1:.0f}s", "--json")  # fmt: skip
    return [e["message"] for e in json.loads(out.stdout)]


def test_three_marks_in_a_row_bounce_once(world: E2E) -> None:
    group = f"{world.cluster}.main"
    b = commit_version(world, "v-b", healthy=False)  # b and c never pass their health check,
    c = commit_version(world, "v-c", healthy=False)  # so the bounce to b is still running
    d = commit_version(world, "v-d", healthy=True)  # when c and then d are marked
    world.start_up()
    began = time.time()
    world.run("mark-for-deployment", "-s", SERVICE, "-l", group, "-c", b)
    wait_for("the bounce to b", lambda: [m for m in bounce_messages(world, began)
                                         if m.endswith(" started")], 60, world.up_log)  # fmt: skip
    second = world.run("mark-for-deployment", "-s", SERVICE, "-l", group, "-c", c)
    assert f"supersedes the bounce under way of batch (git {b[:8]}), main (git {b[:8]})" in (
        second.stdout), second.stdout  # fmt: skip
    wait_for("c superseding b",
             lambda: [m for m in bounce_messages(world, began) if f"by git {c[:8]}" in m], 60,
             world.up_log)  # fmt: skip
    world.run("mark-for-deployment", "-s", SERVICE, "-l", group, "-c", d)

    def done() -> Any:
        messages = bounce_messages(world, began)
        return messages if any(m.endswith(" finished") for m in messages) else NotYet(messages)

    messages = wait_for("the one bounce to d to finish", done, 90, world.up_log)
    assert len([m for m in messages if m.endswith(" started")]) == 1, messages
    assert [m.split(" superseded by git ")[1][:8] for m in messages if " superseded " in m] == [
        c[:8], d[:8]]  # fmt: skip
    [finished] = [m for m in messages if m.endswith(" finished")]
    assert f"to git {d[:8]}" in finished
    views = wait_for("d serving", lambda: both_running(world, {"main": 2, "batch": 1}), 60,
                     world.up_log)  # fmt: skip
    assert {v["git_sha"] for v in views.values()} == {d}
    marks = json.loads(world.run("events", "-s", SERVICE, "--kind", "mark", "--json").stdout)
    assert [m["data"].get("supersedes") for m in marks[-3:]] == [
        None, [f"batch (git {b[:8]})", f"main (git {b[:8]})"],
        [f"batch (git {c[:8]})", f"main (git {c[:8]})"],
    ]  # fmt: skip
    stop_up(world)
