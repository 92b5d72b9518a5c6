"""Scheduled jobs (tron-<cluster>.yaml) run by `paasport up` on the real Docker engine: a failing
job retries, keeps each attempt's output and alerts its team through the real Alertmanager; a
run survives a restart of `up` without any action started twice; a run past its
expected_runtime is late and alerts while it runs, then resolves; a minutely cron job runs by
schedule, its actions in order, its tasks removed; `paasport validate` names a bad schedule's
file and line.

One e2e_world serves the module; the tests run in order. The minutely job's runs happen in the
background while the others run; the last world test waits for them.
"""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from e2e_world import E2E, SERVICE, NotYet, e2e_world, git, wait_for

pytestmark = pytest.mark.integration

TEAM = "nightly-team"  # the jobs' team (monitoring.yaml says "e2e" for the service)
JOB_LABEL = "paasport.run.x.job"
ACTION_LABEL = "paasport.run.x.action"


@dataclass
class JobWorld:
    world: E2E
    alertmanager: str
    daily: str  # "HH:MM", twelve hours away: the daily jobs never fire by schedule here
    started: float  # when `up` first started


def tron_file(cluster: str, daily: str) -> str:
    group = f"{cluster}.main"
    small = {"cpus": 0.1, "mem": 32}

    def job(schedule: str, actions: dict[str, Any], **more: Any) -> dict[str, Any]:
        return {"schedule": schedule, "time_zone": "UTC", "deploy_group": group,
                "monitoring": {"team": TEAM}, **more,
                "actions": {name: {**small, **a} for name, a in actions.items()}}  # fmt: skip

    return json.dumps({
        "minutely": job("cron * * * * *", {
            "a": {"command": "echo minutely-a-says-hi"},
            "b": {"command": "echo minutely-b-says-hi", "requires": ["a"]},
        }),
        "failing": job(f"daily {daily}", {
            "only": {"command": "echo failing-says-hi; exit 2", "retries": 1},
        }),
        "slow": job(f"daily {daily}", {
            "first": {"command": "echo slow-first-says-hi; sleep 8"},
            "then": {"command": "echo slow-then-says-hi", "requires": ["first"]},
        }),
        "late": job(f"daily {daily}", {"nap": {"command": "sleep 8; echo napped"}},
                    expected_runtime="3s"),
    }, indent=2) + "\n"  # fmt: skip


def docker(*args: str) -> str:
    out = subprocess.run(["docker", *args], capture_output=True, text=True, timeout=60,
                         check=False)  # fmt: skip
    assert out.returncode == 0, out.stderr
    return out.stdout


def job_containers(cluster: str, *labels: str, all_: bool = True) -> list[dict[str, str]]:
    """The one-off tasks of our cluster (with these extra label filters): id, state and
    action, from `docker ps`."""
    args = ["ps", "--no-trunc", "--format",
            f'{{{{.ID}}}} {{{{.State}}}} {{{{.Label "{ACTION_LABEL}"}}}}']  # fmt: skip
    for f in (f"paasport.run.cluster={cluster}", *labels):
        args += ["--filter", f"label={f}"]
    rows = docker(*args, *(["-a"] if all_ else [])).split("\n")
    return [dict(zip(("id", "state", "action"), r.split(), strict=True)) for r in rows if r]


def run_now(world: E2E, job: str) -> str:
    out = world.run("job-run-now", "-s", SERVICE, "-j", job, "--json")
    answer = json.loads(out.stdout)
    assert answer["job"] == job and answer["cluster"] == world.cluster, answer
    assert "no action of run" not in out.stderr, out.stderr  # the scheduler picked it up
    return str(answer["run_id"])


def runs_of(world: E2E, job: str) -> list[dict[str, Any]]:
    out = world.run("job-runs", "-s", SERVICE, "-j", job, "--json")
    return list(json.loads(out.stdout)["runs"])


def the_run(world: E2E, job: str, run_id: str) -> dict[str, Any]:
    [run] = [r for r in runs_of(world, job) if r["run_id"] == run_id]
    return run


def ended(world: E2E, job: str, run_id: str) -> dict[str, Any] | NotYet:
    run = the_run(world, job, run_id)
    return run if run["state"] != "running" else NotYet(json.dumps(run))


def events_of(world: E2E, job: str, kind: str) -> list[dict[str, Any]]:
    out = world.run("events", "-s", SERVICE, "-i", job, "-c", world.cluster, "--kind", kind,
                    "--json", "-n", "1000")  # fmt: skip
    return list(json.loads(out.stdout))


def job_alerts(world: E2E, job: str) -> list[dict[str, Any]]:
    return [e for e in events_of(world, job, "alert") if e["data"]["check"] == "job"]


def alertmanager_alerts(jw: JobWorld, job: str) -> list[dict[str, Any]]:
    """The active alerts of our cluster's ``job`` in the real Alertmanager."""
    filters = [f'cluster="{jw.world.cluster}"', f'instance="{job}"', 'check="job"']
    params = [("active", "true"), *(("filter", f) for f in filters)]
    response = httpx.get(f"{jw.alertmanager}/api/v2/alerts", params=params, timeout=10)
    response.raise_for_status()
    return list(response.json())


def the_action(run: dict[str, Any], name: str) -> list[dict[str, Any]]:
    [action] = [a for a in run["actions"] if a["action"] == name]
    return list(action["attempts"])


def resolve_ours(url: str, cluster: str) -> None:
    """End our cluster's alerts in the shared Alertmanager (paasport stopped re-posting them)."""
    found = httpx.get(f"{url}/api/v2/alerts", params={"filter": f'cluster="{cluster}"'},
                      timeout=10).json()  # fmt: skip
    now = datetime.now(UTC).isoformat().replace("+00:00", "Z")
    if found:
        httpx.post(f"{url}/api/v2/alerts", timeout=10,
                   json=[{"labels": a["labels"], "startsAt": a["startsAt"], "endsAt": now}
                         for a in found])  # fmt: skip


@pytest.fixture(scope="module")
def jw(alertmanager_url: str) -> Iterator[JobWorld]:
    with tempfile.TemporaryDirectory(prefix="paasport-test-") as tmp, e2e_world(Path(tmp)) as w:
        daily = f"{(datetime.now(UTC).hour + 12) % 24:02d}:00"
        (w.soa / SERVICE / f"tron-{w.cluster}.yaml").write_text(tron_file(w.cluster, daily))
        w.write_instance(instances=1)  # the service's instance is not what this module tests
        text = w.config.read_text()
        assert "monitoring:\n" in text
        w.config.write_text(
            text.replace("monitoring:\n", f"monitoring:\n  alertmanager_url: {alertmanager_url}\n")
        )
        sha = git(w.repo, "rev-parse", "HEAD")
        w.run("cook-image", "-s", SERVICE, "-c", sha)
        w.run("mark-for-deployment", "-s", SERVICE, "-l", f"{w.cluster}.main", "-c", sha)
        started = time.time()
        w.start_up()
        try:
            yield JobWorld(w, alertmanager_url, daily, started)
        finally:
            resolve_ours(alertmanager_url, w.cluster)


def test_a_failing_job_retries_keeps_its_output_and_alerts_its_team(jw: JobWorld) -> None:
    world = jw.world
    run_id = run_now(world, "failing")
    run = wait_for("the failing run to end", lambda: ended(world, "failing", run_id), 60,
                   world.up_log)  # fmt: skip
    assert run["state"] == "failed" and run["trigger"] == "manual", run
    assert "action only exited 2 (after 2 attempts)" in run["message"], run
    attempts = the_action(run, "only")
    assert [(a["attempt"], a["exit_code"]) for a in attempts] == [(1, 2), (2, 2)], attempts
    assert attempts[1]["started"] >= attempts[0]["finished"], attempts  # a retry, not a twin
    logs = [a["log"] for a in attempts]
    assert len(set(logs)) == 2, logs  # each attempt's output kept apart
    for attempt in attempts:
        assert isinstance(attempt["seconds"], float) and 0 <= attempt["seconds"] < 30, attempt
        assert Path(attempt["log"]).is_file(), attempt
        assert Path(attempt["log"]).read_text().splitlines() == ["failing-says-hi"], attempt
    assert not job_containers(world.cluster, f"{JOB_LABEL}=failing"), "its tasks are removed"

    def alerted() -> list[dict[str, Any]] | NotYet:
        found = [a for a in job_alerts(world, "failing") if a["data"]["status"] == "CRIT"]
        return found or NotYet("no job alert in the event log")

    [event, *_] = wait_for("the job alert event", alerted, 20, world.up_log)
    assert event["data"]["team"] == TEAM and event["data"]["reason"] == "new", event
    assert event["instance"] == "failing" and event["cluster"] == world.cluster, event
    assert "exited 2 (after 2 attempts)" in event["message"], event
    [alert] = wait_for("the job alert in Alertmanager", lambda: alertmanager_alerts(jw, "failing"),
                       20, world.up_log)  # fmt: skip
    labels = alert["labels"]
    assert {k: labels[k] for k in ("alertname", "service", "team", "severity")} == {
        "alertname": "paasport_job", "service": SERVICE, "team": TEAM,
        "severity": event["data"]["severity"],
    }, labels  # fmt: skip
    assert f"{SERVICE} job failing on {world.cluster}" in alert["annotations"]["summary"], alert
    assert "exited 2" in alert["annotations"]["summary"], alert

    now = time.time()
    [view] = [v for v in json.loads(world.run("jobs", "-s", SERVICE, "--json").stdout)
              if v["job"] == "failing"]  # fmt: skip
    assert view["last_run"]["run_id"] == run_id and view["last_run"]["state"] == "failed", view
    assert view["state"] == "scheduled" and view["team"] == TEAM, view
    hour, minute = (int(x) for x in jw.daily.split(":"))
    today = datetime.now(UTC).replace(hour=hour, minute=minute, second=0, microsecond=0)
    expected = today if today.timestamp() > now else today + timedelta(days=1)
    assert view["next_run"] > now and abs(view["next_run"] - expected.timestamp()) < 1, (
        view["next_run"], expected)  # fmt: skip


def test_a_run_survives_a_restart_of_up_without_starting_an_action_twice(jw: JobWorld) -> None:
    world = jw.world
    assert world.up is not None

    # The restart must not fall on the minutely job's first due time: a job that never ran
    # counts its schedule from when the scheduler first saw it, so that one would be lost.
    def first_minutely() -> list[dict[str, Any]] | NotYet:
        found = [r for r in runs_of(world, "minutely") if r["trigger"] == "schedule"]
        return found or NotYet("the minutely job has not run yet")

    wait_for("the minutely job's first run", first_minutely, 75, world.up_log)
    since = f"{time.time() - 1:.3f}"
    run_id = run_now(world, "slow")

    def first_running() -> dict[str, Any] | NotYet:
        run = the_run(world, "slow", run_id)
        attempts = the_action(run, "first") if run["actions"] else []
        live = job_containers(world.cluster, f"{JOB_LABEL}=slow", all_=False)
        if attempts and attempts[0]["exit_code"] is None and live:
            return {"run": run, "live": live}
        return NotYet(f"{run} {live}")

    seen = wait_for("the slow job's first action running", first_running, 20, world.up_log)
    [task] = seen["live"]
    assert task["action"] == "first" and task["state"] == "running", task

    world.up.send_signal(signal.SIGINT)
    assert world.up.wait(30) == 0
    shutil.copy(world.up_log, world.root / "up-before-restart.log")
    [still] = job_containers(world.cluster, f"{JOB_LABEL}=slow")
    assert (still["id"], still["state"]) == (task["id"], "running"), "a restart stops no job"
    assert the_run(world, "slow", run_id)["state"] == "running"

    world.start_up()
    run = wait_for("the slow run to end after the restart", lambda: ended(world, "slow", run_id),
                   45, world.up_log)  # fmt: skip
    assert run["state"] == "succeeded", run
    assert [a["action"] for a in run["actions"]] == ["first", "then"], run
    for name, said in (("first", "slow-first-says-hi"), ("then", "slow-then-says-hi")):
        [attempt] = the_action(run, name)
        assert attempt["exit_code"] == 0 and Path(attempt["log"]).read_text() == said + "\n"
    [first], [then] = the_action(run, "first"), the_action(run, "then")
    assert first["seconds"] >= 7.5 and then["started"] >= first["finished"], run
    started = [
        e["data"]["action"]
        for e in events_of(world, "slow", "job")
        if e["data"]["run_id"] == run_id and e["data"]["state"] == "action_started"
    ]
    assert sorted(started) == ["first", "then"], started
    # the engine's word: one container started per action, the first one the same throughout
    starts = docker("events", "--since", since, "--until", f"{time.time():.3f}",
                    "--filter", "type=container", "--filter", "event=start",
                    "--filter", f"label={JOB_LABEL}=slow",
                    "--filter", f"label=paasport.run.cluster={world.cluster}",
                    "--format", "{{json .}}").splitlines()  # fmt: skip
    actions = sorted(json.loads(s)["Actor"]["Attributes"][ACTION_LABEL] for s in starts)
    assert actions == ["first", "then"], starts
    assert task["id"] in {json.loads(s)["Actor"]["ID"] for s in starts}
    assert not job_containers(world.cluster, f"{JOB_LABEL}=slow"), "its tasks are removed"


def test_a_run_past_its_expected_runtime_is_late_and_alerts_while_it_runs(jw: JobWorld) -> None:
    world = jw.world
    run_id = run_now(world, "late")

    def late_event() -> dict[str, Any] | NotYet:
        found = [e for e in events_of(world, "late", "job")
                 if e["data"]["run_id"] == run_id and e["data"]["state"] == "late"]  # fmt: skip
        return found[0] if found else NotYet("no late event yet")

    late = wait_for("the late event", late_event, 15, world.up_log)
    assert "past its expected_runtime of 3s" in late["message"], late
    firing = wait_for("the late alert", lambda: [a for a in job_alerts(world, "late")
                                                 if a["data"]["reason"] == "new"],
                      10, world.up_log)  # fmt: skip
    assert firing[0]["data"]["status"] == "CRIT" and "is late" in firing[0]["message"], firing
    [alert] = wait_for("the late alert in Alertmanager", lambda: alertmanager_alerts(jw, "late"),
                       10, world.up_log)  # fmt: skip
    assert alert["labels"]["team"] == TEAM and "is late" in alert["annotations"]["summary"]
    assert the_run(world, "late", run_id)["state"] == "running"  # alerted while it runs

    run = wait_for("the late run to end", lambda: ended(world, "late", run_id), 20, world.up_log)
    assert run["state"] == "succeeded" and run["late"], run
    [attempt] = the_action(run, "nap")
    assert attempt["exit_code"] == 0 and attempt["seconds"] >= 7.5, attempt
    assert late["time"] < attempt["finished"] and firing[0]["time"] < attempt["finished"]
    # a run that ended well ends the alert
    wait_for("the late alert to resolve",
             lambda: [a for a in job_alerts(world, "late") if a["data"]["reason"] == "resolved"],
             10, world.up_log)  # fmt: skip
    wait_for("the late alert to leave Alertmanager",
             lambda: not alertmanager_alerts(jw, "late"), 10, world.up_log)  # fmt: skip


def test_the_minutely_job_ran_twice_by_schedule_in_order(jw: JobWorld) -> None:
    world = jw.world

    def two_runs() -> list[dict[str, Any]] | NotYet:
        runs = [r for r in runs_of(world, "minutely") if r["trigger"] == "schedule"]
        done = [r for r in runs if r["state"] != "running"]
        return done[:2] if len(done) >= 2 else NotYet(json.dumps(runs))

    # its second due time is at most two minutes after `up` first started
    left = jw.started + 150 - time.time()
    runs = wait_for("two scheduled runs of the minutely job", two_runs, max(left, 5),
                    world.up_log)  # fmt: skip
    assert not job_containers(world.cluster), "every task of every run is removed"
    for run in runs:
        assert run["state"] == "succeeded", run
        assert run["scheduled"] % 60 == 0 and run["started"] >= run["scheduled"], run
        assert [a["action"] for a in run["actions"]] == ["a", "b"], run
        [a], [b] = the_action(run, "a"), the_action(run, "b")
        assert a["exit_code"] == 0 and b["exit_code"] == 0, run
        assert b["started"] >= a["finished"], run  # b waited for a
        assert Path(a["log"]).read_text() == "minutely-a-says-hi\n"
        assert Path(b["log"]).read_text() == "minutely-b-says-hi\n"
    assert runs[1]["scheduled"] - runs[0]["scheduled"] == 60, runs  # one run each minute
    assert runs[0]["scheduled"] > jw.started - 60, runs


def test_validate_names_the_file_and_line_of_a_bad_schedule(jw: JobWorld) -> None:
    world = jw.world
    with tempfile.TemporaryDirectory(prefix="paasport-test-") as tmp:
        svc = Path(tmp) / "svc"
        svc.mkdir()
        (svc / "service.yaml").write_text("description: a service\ngit_url: /nowhere\n")
        (svc / "deploy.yaml").write_text(f"pipeline:\n  - step: {world.cluster}.main\n")
        (svc / f"tron-{world.cluster}.yaml").write_text(
            "good:\n"
            '  schedule: "daily 04:00"\n'
            f"  deploy_group: {world.cluster}.main\n"
            "  actions: {x: {command: 'true'}}\n"
            "nightly:\n"
            f"  deploy_group: {world.cluster}.main\n"
            '  schedule: "cron 61 * * * *"\n'
            "  actions: {x: {command: 'true'}}\n"
        )
        out = world.run("validate", "--soa-dir", tmp, check=False)
    said = f"exit {out.returncode}\n{out.stdout}\n{out.stderr}"
    assert out.returncode == 1, said
    lines = out.stdout.splitlines()
    assert lines[:-1] == [
        f'{svc}/tron-{world.cluster}.yaml:7: nightly: schedule: expected five cron fields '
        'after "cron", found "61 * * * *"'
    ], said  # fmt: skip
    assert lines[-1].startswith("invalid: 1 error(s)"), said
