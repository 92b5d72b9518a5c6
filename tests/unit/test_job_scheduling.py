"""Scheduled jobs, pure parts as tables: schedules (config.schedule), runs folded from events
(monitoring.job_runs), the scheduler's next steps (platform.jobs.plan_job) and the job check."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest

from paasport.config.schedule import parse_schedule
from paasport.engine.base import OneOff
from paasport.monitoring.checks import JobObservation, check_job
from paasport.monitoring.events import Event, JobData
from paasport.monitoring.job_runs import JobRun, job_runs
from paasport.platform.jobs import (
    ActionEnded,
    FinishRun,
    Late,
    SkipRun,
    StartAction,
    StartRun,
    due_time,
    plan_job,
)
from paasport.types import InstanceConfig, JobAction, JobConfig


def at(text: str) -> float:
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


def utc(stamp: float) -> str:
    return datetime.fromtimestamp(stamp, UTC).strftime("%Y-%m-%d %H:%M:%S")


@pytest.mark.parametrize(
    ("schedule", "tz", "after", "expected"),
    [
        ("cron */5 * * * *", "UTC", "2026-12-04 10:01:00", "2026-12-04 10:05:00"),
        ("cron */5 * * * *", "UTC", "2026-12-04 10:05:00", "2026-12-04 10:10:00"),  # strictly after
        ("cron 0 4 * * *", "UTC", "2026-12-04 05:00:00", "2026-12-05 04:00:00"),
        ("daily 04:00", "UTC", "2026-12-04 03:59:59", "2026-12-04 04:00:00"),
        ("daily 04:00", "UTC", "2026-12-04 04:00:00", "2026-12-05 04:00:00"),
        ("daily", "UTC", "2026-12-04 12:00:00", "2026-12-05 00:00:00"),
        ("daily 04:00 MWF", "UTC", "2026-12-04 05:00:00", "2026-12-07 04:00:00"),  # Fri -> Mon
        # Tron's default zone: 04:00 in Los Angeles is 12:00 UTC in winter
        ("daily 04:00", None, "2026-12-04 00:00:00", "2026-12-04 12:00:00"),
        # the day DST starts there, 04:00 local is 11:00 UTC
        ("daily 04:00", "US/Pacific", "2027-03-14 00:00:00", "2027-03-14 11:00:00"),
        ({"type": "cron", "value": "30 1 * * *"}, "UTC", "2026-12-04 00:00:00",
         "2026-12-04 01:30:00"),
    ],
    ids=lambda v: str(v),
)  # fmt: skip
def test_next_time_of_a_schedule(schedule: Any, tz: str | None, after: str, expected: str) -> None:
    parsed, why = parse_schedule(schedule, tz)
    assert parsed is not None, why
    assert utc(parsed.next_after(at(after))) == expected


@pytest.mark.parametrize(
    ("schedule", "tz", "said"),
    [
        ("cron * * *", None, 'expected five cron fields after "cron", found "* * *"'),
        ("cron 61 * * * *", None, "expected five cron fields"),
        ("daily 24:00", None, "expected a time of day"),
        ("daily at noon", None, 'expected "daily HH:MM[:SS] [MTWRFSU]"'),
        ("weekly", None, 'expected "cron MIN HOUR DOM MON DOW" or'),
        (3, None, "expected"),
        ("daily", "Mars/Olympus", "time_zone: expected a time zone"),
        ({"type": "cron"}, None, "expected five cron fields"),
        ({"value": "x"}, None, "expected {type: cron|daily, value: TEXT}"),
    ],
    ids=lambda v: str(v),
)
def test_schedules_that_do_not_parse_say_why(schedule: Any, tz: str | None, said: str) -> None:
    parsed, why = parse_schedule(schedule, tz)
    assert parsed is None
    assert said in why


def test_missed_times_make_one_run_at_the_newest() -> None:
    minutely, _ = parse_schedule("cron * * * * *", "UTC")
    assert minutely is not None
    anchor = at("2026-12-04 10:00:00")
    assert due_time(minutely, anchor, anchor + 30) is None
    assert utc(due_time(minutely, anchor, anchor + 60) or 0) == "2026-12-04 10:01:00"
    assert utc(due_time(minutely, anchor, anchor + 3 * 3600 + 5) or 0) == "2026-12-04 13:00:00"


# -- runs folded from events and the scheduler's next steps ----------------------------------

T0 = at("2026-12-04 10:00:00")


def action(name: str, requires: tuple[str, ...] = (), retries: int = 0, delay: float = 0.0,
           expected: float | None = None) -> JobAction:  # fmt: skip
    config = InstanceConfig("svc", "c", f"nightly.{name}", "c.main", cmd=f"run {name}")
    return JobAction(name, config, requires, retries, delay, expected)


JOB = JobConfig("svc", "c", "nightly", "cron 0 * * * *", "UTC",
                (action("a"), action("b", ("a",), retries=1, delay=10)), "c.main",
                expected_runtime=600)  # fmt: skip
SCHEDULE, _ = parse_schedule(JOB.schedule, JOB.time_zone)


def ev(t: float, state: str, **kw: Any) -> Event:
    data = JobData("nightly", kw.pop("run_id", "r1"), state, **kw)  # type: ignore[arg-type]
    return Event(T0 + t, "info", "job", "svc", "nightly", "c", f"{state}", data.to_json())


def task(action_name: str, attempt: int, state: str, code: int | None = None,
         run_id: str = "r1") -> OneOff:  # fmt: skip
    extra = {"job": "nightly", "job_run": run_id, "action": action_name, "attempt": str(attempt)}
    return OneOff(f"t{action_name}{attempt}", f"task-{action_name}{attempt}", "job", "svc",
                  f"nightly.{action_name}", "c", "sha", "run", T0, state, code,
                  extra=extra)  # fmt: skip


STARTED = ev(0, "started", trigger="schedule", scheduled=T0, git_sha="sha", image="img")


def steps_of(events: list[Event], tasks: list[OneOff], now: float,
             first_seen: float = T0) -> list[str]:  # fmt: skip
    runs = job_runs(events).get(("svc", "c", "nightly"), [])
    keyed = {(t.extra["job_run"], t.extra["action"], int(t.extra["attempt"])): t for t in tasks}
    assert SCHEDULE is not None
    out = []
    for step in plan_job(JOB, SCHEDULE, runs, keyed, T0 + now, first_seen):
        if isinstance(step, StartRun):
            out.append(f"start run at {utc(step.scheduled)[11:]}")
        elif isinstance(step, SkipRun):
            out.append(f"skip {utc(step.scheduled)[11:]}: {step.why}")
        elif isinstance(step, StartAction):
            out.append(f"start {step.action.name}#{step.attempt}")
        elif isinstance(step, ActionEnded):
            out.append(f"ended {step.action}#{step.attempt}" + ("" if step.task else " (lost)"))
        elif isinstance(step, FinishRun):
            out.append(f"finish {'ok' if step.ok else 'failed'}: {step.message}")
        elif isinstance(step, Late):
            out.append(f"late: {step.message}")
    return out


A1_STARTED = ev(1, "action_started", action="a", attempt=1, task_id="task-a1")
A1_OK = ev(5, "action_finished", action="a", attempt=1, exit_code=0)
B1_STARTED = ev(6, "action_started", action="b", attempt=1, task_id="task-b1")
B1_FAILED = ev(8, "action_finished", action="b", attempt=1, exit_code=2)
B2_STARTED = ev(20, "action_started", action="b", attempt=2, task_id="task-b2")


@pytest.mark.parametrize(
    ("events", "tasks", "now", "expected"),
    [
        pytest.param([], [], 30, [], id="never ran, not due yet"),
        pytest.param([], [], 3600, ["start run at 11:00:00"], id="due: a run"),
        pytest.param([], [], 3 * 3600 + 1, ["start run at 13:00:00"],
                     id="down for hours: one run, for the newest missed time"),
        pytest.param([STARTED], [], 2, ["start a#1"], id="a run starts its first action"),
        pytest.param([STARTED, A1_STARTED], [task("a", 1, "running")], 3, [],
                     id="an action running: wait"),
        pytest.param([STARTED, A1_STARTED], [task("a", 1, "exited", 0)], 5, ["ended a#1"],
                     id="an action exited: keep its output"),
        pytest.param([STARTED], [task("a", 1, "running")], 3, ["start a#-1"],
                     id="restart: a running task whose start was not recorded is adopted"),
        pytest.param([STARTED, A1_STARTED, A1_OK, B1_STARTED, B1_FAILED],
                     [task("b", 2, "running")], 25, ["start b#-2"],
                     id="restart: a retry whose start was not recorded is adopted, not run twice"),
        pytest.param([STARTED, A1_STARTED], [], 3, ["ended a#1 (lost)"],
                     id="its task is gone without an end: lost"),
        pytest.param([STARTED, A1_STARTED, A1_OK], [], 6, ["start b#1"],
                     id="b starts once a, which it requires, succeeded"),
        pytest.param([STARTED, A1_STARTED, A1_OK, B1_STARTED, B1_FAILED], [], 12, [],
                     id="b failed, one retry left: wait retries_delay"),
        pytest.param([STARTED, A1_STARTED, A1_OK, B1_STARTED, B1_FAILED], [], 19, ["start b#2"],
                     id="then retry it"),
        pytest.param([STARTED, A1_STARTED, A1_OK, B1_STARTED, B1_FAILED, B2_STARTED,
                      ev(22, "action_finished", action="b", attempt=2, exit_code=2)], [], 23,
                     ["finish failed: action b exited 2 (after 2 attempts)"],
                     id="retries spent: the run failed"),
        pytest.param([STARTED, A1_STARTED, A1_OK, B1_STARTED,
                      ev(7, "action_finished", action="b", attempt=1, exit_code=0)], [], 8,
                     ["finish ok: 2 action(s) succeeded"], id="all succeeded"),
        pytest.param([STARTED, A1_STARTED, ev(3, "action_finished", action="a", attempt=1,
                                              exit_code=1)], [], 4,
                     ["finish failed: action a exited 1"],
                     id="a failed (no retries): b never starts, the run failed"),
        pytest.param([STARTED, A1_STARTED], [task("a", 1, "running")], 601,
                     ["late: running for 601s, past its expected_runtime of 600s"],
                     id="past expected_runtime: late, once"),
        pytest.param([STARTED, A1_STARTED, ev(601, "late")], [task("a", 1, "running")], 700, [],
                     id="said late already"),
        pytest.param([STARTED, A1_STARTED], [task("a", 1, "running")], 3601,
                     ["late: running for 3601s, past its expected_runtime of 600s",
                      "skip 11:00:00: run r1 still runs"],
                     id="due while a run still runs: skipped (allow_overlap false)"),
        pytest.param([STARTED, A1_STARTED, A1_OK, B1_STARTED,
                      ev(7, "action_finished", action="b", attempt=1, exit_code=0),
                      ev(8, "finished", ok=True)], [], 3600,
                     ["start run at 11:00:00"], id="the next run from the last one's time"),
    ],
)  # fmt: skip
def test_the_schedulers_next_steps(events: list[Event], tasks: list[OneOff], now: float,
                                   expected: list[str]) -> None:  # fmt: skip
    assert steps_of(events, tasks, now) == expected


def test_a_manual_run_leaves_the_schedule_where_it_was() -> None:
    manual = ev(100, "started", trigger="manual", run_id="m1")
    done = ev(120, "finished", ok=True, run_id="m1")
    assert steps_of([manual, done], [], 3600) == ["start run at 11:00:00"]


def test_job_runs_fold_attempts_and_ignore_runs_started_before_the_window() -> None:
    runs = job_runs([ev(2, "action_started", action="a", attempt=1, run_id="old"), STARTED,
                     A1_STARTED, A1_OK])  # fmt: skip
    [run] = runs[("svc", "c", "nightly")]
    assert run.run_id == "r1" and run.state == "running" and run.git_sha == "sha"
    [attempt] = run.actions["a"].attempts
    assert (attempt.number, attempt.exit_code, attempt.ok) == (1, 0, True)
    assert attempt.finished is not None and attempt.finished - attempt.started == 4


def job_run(run_id: str, state: str, late: str = "", trigger: str = "schedule") -> JobRun:
    done = state in ("ok", "failed")
    return JobRun("svc", "c", "nightly", run_id, T0, trigger, finished=T0 + 5 if done else None,
                  ok=state == "ok" if done else None, late=late,
                  message=f"job nightly run {run_id} {state}")  # fmt: skip


@pytest.mark.parametrize(
    ("runs", "status", "said"),
    [
        ([], "OK", "no run ended yet"),
        ([job_run("r1", "ok")], "OK", "run r1 succeeded"),
        ([job_run("r1", "failed")], "CRIT", "run r1 failed"),
        ([job_run("r1", "failed"), job_run("r2", "running")], "CRIT", "run r1 failed"),
        ([job_run("r1", "failed"), job_run("r2", "ok")], "OK", "run r2 succeeded"),
        ([job_run("r1", "ok"), job_run("r2", "running", late="running for 700s")], "CRIT",
         "run r2 is late: running for 700s"),
        ([job_run("r1", "failed"), job_run("s", "skipped", trigger="skipped")], "CRIT",
         "run r1 failed"),
    ],
)  # fmt: skip
def test_the_job_check(runs: list[JobRun], status: str, said: str) -> None:
    result = check_job(JobObservation("svc", "c", "nightly", tuple(runs)), T0 + 10)
    assert (result.check, result.instance, result.status) == ("job", "nightly", status)
    assert said in result.message and result.alert_after == 0.0


class _Store:
    def jobs(self) -> tuple[JobConfig, ...]:
        return (JOB,)

    def job_deployment(self, job: JobConfig) -> None:
        return None

    def registry(self, service: str) -> None:
        return None


def test_an_ended_task_of_a_run_another_deployd_started_is_kept_and_removed(tmp_path: Any) -> None:
    from paasport.config.system import ClusterConfig, SystemConfig
    from paasport.monitoring.events import EventLog
    from paasport.platform.jobs import JobScheduler
    from paasport.types import AppSpec

    from fake_engine import FakeEngine

    system = SystemConfig(clusters={"c": ClusterConfig("c")}, local_cluster="c",
                          soa_dir=tmp_path, state_dir=tmp_path)  # fmt: skip
    engine = FakeEngine(cluster="c", clock=T0)
    spec = AppSpec("svc", "nightly.a", "c", "img", "sha", "h", 1, cmd="run a")
    labels = {"job": "nightly", "job_run": "elsewhere", "action": "a", "attempt": "1"}
    task = engine.start_one_off(spec, "t1", "job", labels)
    engine.end_one_off(task.task_id, 0, ["done"])
    log = EventLog(tmp_path / "events.sqlite")
    clock = [T0 + 30]
    scheduler = JobScheduler(system, _Store(), engine, log, clock=lambda: clock[0])  # type: ignore[arg-type]
    scheduler.pass_once()
    assert task.task_id in engine.one_offs  # ended just now: left a while
    clock[0] = T0 + 61
    scheduler.pass_once()
    assert task.task_id not in engine.one_offs
    [said] = [e for e in log.query(kinds=("job",)) if e.data.get("orphan")]
    assert "started by another deployd" in said.message
    assert (tmp_path / "runs" / "svc" / "t1.log").read_text() == "done\n"
