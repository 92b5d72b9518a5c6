"""Scheduled jobs (``tron-<cluster>.yaml``) and the keeper of one-off tasks, in ``up``/``deployd``.

Every pass (``JobScheduler.pass_once``, each second, only while this deployd holds the cluster
lock) reads the runs from the event log (``monitoring.job_runs``) and the one-off tasks from the
engine (one list call), lets ``plan_job`` (pure) say the next step of each job, and performs it:
start a run when the schedule says so, start each action (a one-off task with the image of the
run's sha) once what it ``requires`` succeeded, keep an ended action's output, retry it, finish
the run, say when it is late. State lives only in the engine and the event log, so a restarted
paasport finds a run in progress and carries it on; it never starts it twice. The pass also
finishes ``paasport run`` tasks whose caller went away (``platform.runs.reap``).
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from paasport.bounce.desired import desired_app
from paasport.config.schedule import Schedule, parse_schedule
from paasport.config.state_files import private_dir
from paasport.config.system import SystemConfig, effective_registry
from paasport.engine.base import Engine, OneOff
from paasport.errors import NotFoundError, PaasportError, UsageError
from paasport.monitoring.events import Event, EventKind, EventLog, JobData, Level
from paasport.monitoring.job_runs import JobRun, job_runs
from paasport.platform import runs as one_offs
from paasport.platform.passes import every
from paasport.types import DeploymentState, JobAction, JobConfig

log = logging.getLogger("paasport.jobs")
INTERVAL_SECONDS = 1.0
HISTORY_SECONDS = 8 * 86400.0  # the runs a pass reads back (a week of daily runs, and more)
ORPHAN_AFTER_SECONDS = 60.0  # an ended task of a run nobody here knows: kept, then removed
MAX_CATCH_UP = 100_000  # schedule steps to the newest missed time (a minutely job down 2 months)
# job-run labels of an action's one-off task
L_JOB, L_RUN, L_ACTION, L_ATTEMPT = "job", "job_run", "action", "attempt"


# -- the pure part ----------------------------------------------------------------------------


@dataclass(frozen=True)
class StartRun:
    scheduled: float
    trigger: str


@dataclass(frozen=True)
class SkipRun:
    scheduled: float
    why: str


@dataclass(frozen=True)
class StartAction:
    run: JobRun
    action: JobAction
    attempt: int


@dataclass(frozen=True)
class ActionEnded:
    run: JobRun
    action: str
    attempt: int
    task: OneOff | None  # None: the task is gone without an end (removed, lost with its node)


@dataclass(frozen=True)
class FinishRun:
    run: JobRun
    ok: bool
    message: str


@dataclass(frozen=True)
class Late:
    run: JobRun
    message: str


Step = StartRun | SkipRun | StartAction | ActionEnded | FinishRun | Late


def task_key(task: OneOff) -> tuple[str, str, int]:
    """(job run id, action, attempt) of a job action's task."""
    x = task.extra
    try:
        attempt = int(x.get(L_ATTEMPT, "1"))
    except ValueError:
        attempt = 1
    return x.get(L_RUN, ""), x.get(L_ACTION, ""), attempt


def due_time(schedule: Schedule, anchor: float, now: float) -> float | None:
    """The newest time the schedule fired after ``anchor`` and not after ``now`` (None: not
    yet). Missed times while paasport was away make ONE run, not one each."""
    due = schedule.next_after(anchor)
    if due > now:
        return None
    for _ in range(MAX_CATCH_UP):
        following = schedule.next_after(due)
        if following > now:
            break
        due = following
    return due


def _action_steps(job: JobConfig, run: JobRun, tasks: Mapping[tuple[str, str, int], OneOff],
                  now: float) -> tuple[list[Step], bool, list[str]]:  # fmt: skip
    """The steps of one unfinished run; (steps, something still runs or waits, failures)."""
    steps: list[Step] = []
    busy = False
    failed: list[str] = []
    succeeded = set()
    for action in job.actions:  # in an order where requires come first
        record = run.actions.get(action.name)
        last = record.last if record else None
        if last is not None and not last.done:
            task = tasks.get((run.run_id, action.name, last.number))
            if task is None or task.done:
                steps.append(ActionEnded(run, action.name, last.number, task))
            busy = True
            continue
        # started, but its start was not recorded (a restart in between): adopt the task
        after = last.number if last is not None else 0
        live = [t for (r, a, n), t in tasks.items()
                if r == run.run_id and a == action.name and n > after]  # fmt: skip
        if live:
            task = max(live, key=lambda t: task_key(t)[2])
            number = task_key(task)[2]
            steps.append(ActionEnded(run, action.name, number, task)
                         if task.done else StartAction(run, action, -number))  # fmt: skip
            busy = True
            continue
        if last is not None and last.ok:
            succeeded.add(action.name)
            continue
        if last is not None:  # failed
            if last.number <= action.retries:
                if now >= (last.finished or now) + action.retries_delay:
                    steps.append(StartAction(run, action, last.number + 1))
                busy = True
                continue
            tries = f" (after {last.number} attempts)" if last.number > 1 else ""
            failed.append(f"action {action.name} exited {last.exit_code}{tries}")
            continue
        if failed or any(need not in succeeded for need in action.requires):
            continue  # never starts: something it needs failed (or is still to run)
        steps.append(StartAction(run, action, 1))
        busy = True
    return steps, busy, failed


def plan_job(job: JobConfig, schedule: Schedule, runs: Sequence[JobRun],
             tasks: Mapping[tuple[str, str, int], OneOff], now: float,
             first_seen: float) -> list[Step]:  # fmt: skip
    """The next steps of ``job``: its runs (oldest first), its action tasks by
    ``task_key``, now, and when this scheduler first saw it (the schedule's start when it never
    ran)."""
    steps: list[Step] = []
    open_runs = [r for r in runs if not r.done]
    for run in open_runs:
        action_steps, busy, failed = _action_steps(job, run, tasks, now)
        steps.extend(action_steps)
        if not busy:
            if failed:
                steps.append(FinishRun(run, False, "; ".join(failed)))
            else:
                steps.append(FinishRun(run, True, f"{len(job.actions)} action(s) succeeded"))
        elif not run.late:
            limit = job.expected_runtime
            late = [a for a in job.actions if a.expected_runtime is not None
                    and _running_for(run, a.name, now) > a.expected_runtime]  # fmt: skip
            if now - run.started > limit:
                steps.append(Late(run, f"running for {now - run.started:.0f}s, past its "
                                       f"expected_runtime of {limit:.0f}s"))  # fmt: skip
            elif late:
                a, took = late[0], _running_for(run, late[0].name, now)
                said = f"action {a.name} running for {took:.0f}s, past its expected_runtime"
                steps.append(Late(run, f"{said} of {a.expected_runtime:.0f}s"))
    if job.enabled:
        scheduled = [r.scheduled for r in runs if r.trigger in ("schedule", "skipped")]
        anchor = max(scheduled) if scheduled else first_seen
        due = due_time(schedule, anchor, now)
        if due is not None:
            if open_runs and not job.allow_overlap:
                steps.append(SkipRun(due, f"run {open_runs[-1].run_id} still runs"))
            else:
                steps.append(StartRun(due, "schedule"))
    return steps


def _running_for(run: JobRun, action: str, now: float) -> float:
    record = run.actions.get(action)
    last = record.last if record else None
    return 0.0 if last is None or last.done else now - last.started


# -- the shell --------------------------------------------------------------------------------


class JobSource(Protocol):
    """What the scheduler reads of the desired-state store."""

    def jobs(self) -> tuple[JobConfig, ...]: ...

    def job_deployment(self, job: JobConfig) -> DeploymentState | None: ...

    def registry(self, service: str) -> str | None: ...


class JobScheduler:
    def __init__(
        self,
        system: SystemConfig,
        store: JobSource,
        engine: Engine,
        events: EventLog,
        *,
        clock: Callable[[], float] = time.time,
        interval: float = INTERVAL_SECONDS,
        may_act: Callable[[], bool] = lambda: True,
    ) -> None:
        self.system = system
        self.store = store
        self.engine = engine
        self.events = events
        self.clock = clock
        self.interval = interval
        self.may_act = may_act
        # when each job was first scheduled here (the schedule's start until it first runs):
        # kept in the state dir, so a restart or a lock handover loses no due time
        self._first_seen = _read_first_seen(system.state_dir)

    def run_forever(self, stop: threading.Event) -> None:
        every(self.interval, stop, self.pass_once, "job scheduler", log)

    def pass_once(self) -> list[Step]:
        if not self.may_act():  # a standby deployd: the active one runs the jobs
            return []
        now = self.clock()
        one_offs.reap(self.system, self.engine, now)
        jobs = [j for j in self.store.jobs() if j.cluster == self.system.local_cluster]
        if not jobs:
            return []
        history = job_runs(self.events.query(kinds=(EventKind.JOB,), since=now - HISTORY_SECONDS,
                                             cluster=self.system.local_cluster))  # fmt: skip
        tasks: dict[tuple[str, str, int], OneOff] = {}
        for task in self.engine.list_one_offs(kind="job"):
            tasks[task_key(task)] = task
        known = {r.run_id for runs in history.values() for r in runs}
        self._orphans([t for t in tasks.values() if task_key(t)[0] not in known], now)
        done: list[Step] = []
        for job in jobs:
            schedule, _ = parse_schedule(job.schedule, job.time_zone)
            if schedule is None:
                continue
            first = self._first_seen.get((job.service, job.name))
            if first is None:
                first = self._first_seen[job.service, job.name] = now
                _write_first_seen(self.system.state_dir, self._first_seen)
            runs = history.get((job.service, job.cluster, job.name), [])
            own = {k: t for k, t in tasks.items() if t.service == job.service
                   and t.extra.get(L_JOB) == job.name}  # fmt: skip
            for step in plan_job(job, schedule, runs, own, now, first):
                try:
                    self._perform(job, step, now)
                    done.append(step)
                except PaasportError as err:
                    log.warning("job %s.%s: %s", job.service, job.name, err)
                    self.events.record(Event(now, "warning", EventKind.JOB, job.service,
                                             job.name, job.cluster, f"job {job.name}: {err}",
                                             {"job": job.name, "error": str(err)}))  # fmt: skip
        return done

    def _orphans(self, tasks: Sequence[OneOff], now: float) -> None:
        """Action tasks of runs this host's event log does not know (another deployd started
        them before the lock came here): once ended, their output is kept and they go."""
        for task in tasks:
            if not task.done or now - (task.finished or task.started) < ORPHAN_AFTER_SECONDS:
                continue
            path = one_offs.keep_output(self.system, self.engine, task)
            self.engine.remove_one_off(task.task_id)
            job = task.extra.get(L_JOB, "?")
            self.events.record(Event(
                now, "warning", EventKind.JOB, task.service, job, task.cluster,
                f"job {job}: action {task.extra.get(L_ACTION, '?')} of run "
                f"{task.extra.get(L_RUN, '?')} (started by another deployd) exited "
                f"{task.exit_code}; its output is kept in {path}",
                {"job": job, "orphan": task.task_id, "log": str(path) if path else ""},
            ))  # fmt: skip

    # -- steps ------------------------------------------------------------------------------

    def _say(self, job: JobConfig, run_id: str, level: Level, message: str,
             data: JobData) -> None:  # fmt: skip
        self.events.record(Event(self.clock(), level, EventKind.JOB, job.service, job.name,
                                 job.cluster, message, data.to_json()))  # fmt: skip

    def _perform(self, job: JobConfig, step: Step, now: float) -> None:
        if isinstance(step, StartRun):
            start_job_run(self.system, self.store, self.events, job, step.trigger,
                          step.scheduled, by="the schedule", clock=self.clock)  # fmt: skip
        elif isinstance(step, SkipRun):
            run_id = one_offs.new_run_id()
            self._say(job, run_id, "warning",
                      f"job {job.name}: the run due at {_stamp(step.scheduled)} is skipped: "
                      f"{step.why} (allow_overlap is false)",
                      JobData(job.name, run_id, "skipped", scheduled=step.scheduled))  # fmt: skip
        elif isinstance(step, StartAction):
            self._start_action(job, step)
        elif isinstance(step, ActionEnded):
            self._action_ended(job, step)
        elif isinstance(step, FinishRun):
            took = now - step.run.started
            word = "succeeded" if step.ok else "failed"
            self._say(job, step.run.run_id, "info" if step.ok else "error",
                      f"job {job.name} run {step.run.run_id} {word} after {took:.1f}s: "
                      f"{step.message}",
                      JobData(job.name, step.run.run_id, "finished", ok=step.ok,
                              seconds=round(took, 3)))  # fmt: skip
        elif isinstance(step, Late):
            self._say(job, step.run.run_id, "error",
                      f"job {job.name} run {step.run.run_id} is late: {step.message}",
                      JobData(job.name, step.run.run_id, "late"))  # fmt: skip

    def _start_action(self, job: JobConfig, step: StartAction) -> None:
        run, action = step.run, step.action
        if step.attempt < 0:  # adopted: its task runs, only its start is to be recorded
            task = next(t for t in self.engine.list_one_offs(job.service, "job")
                        if task_key(t)[:2] == (run.run_id, action.name))  # fmt: skip
            self._action_started(job, run, action.name, -step.attempt, task)
            return
        deployment = DeploymentState(run.image, run.git_sha)
        spec = desired_app(action.config, deployment, None)
        spec = dataclasses.replace(spec, replicas=1)
        labels = {L_JOB: job.name, L_RUN: run.run_id, L_ACTION: action.name,
                  L_ATTEMPT: str(step.attempt)}  # fmt: skip
        task = one_offs.start_run(self.system, self.engine, spec, f"job {job.name}", kind="job",
                                  labels=labels)  # fmt: skip
        self._action_started(job, run, action.name, step.attempt, task)

    def _action_started(self, job: JobConfig, run: JobRun, action: str, attempt: int,
                        task: OneOff) -> None:  # fmt: skip
        again = f" (attempt {attempt})" if attempt > 1 else ""
        self._say(job, run.run_id, "info",
                  f"job {job.name} run {run.run_id}: action {action}{again} started: "
                  f"{task.command}",
                  JobData(job.name, run.run_id, "action_started", action=action, attempt=attempt,
                          task_id=task.task_id, task_run_id=task.run_id))  # fmt: skip

    def _action_ended(self, job: JobConfig, step: ActionEnded) -> None:
        run, task = step.run, step.task
        path = None
        if task is not None:
            path = one_offs.keep_output(self.system, self.engine, task)
            code = task.exit_code
        else:
            code = None
        took = ((task.finished or self.clock()) - task.started) if task is not None else 0.0
        ended = f"exited {code}" if task is not None else "was lost (its task is gone)"
        if step.attempt > 1:
            ended = f"(attempt {step.attempt}) {ended}"
        self._say(job, run.run_id, "info" if code == 0 else "warning",
                  f"job {job.name} run {run.run_id}: action {step.action} {ended} after "
                  f"{took:.1f}s",
                  JobData(job.name, run.run_id, "action_finished", action=step.action,
                          attempt=step.attempt, exit_code=code, seconds=round(took, 3),
                          task_id=task.task_id if task else "",
                          task_run_id=task.run_id if task else "",
                          log=str(path) if path else ""))  # fmt: skip
        if task is not None:
            self.engine.remove_one_off(task.task_id)


FIRST_SEEN_FILE = "jobs-first-seen.json"


def _read_first_seen(state_dir: Path) -> dict[tuple[str, str], float]:
    try:
        data = json.loads((state_dir / FIRST_SEEN_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    if not isinstance(data, dict):
        return {}
    out: dict[tuple[str, str], float] = {}
    for key, at in data.items():
        service, _, job = str(key).partition(".")
        if job and isinstance(at, int | float):
            out[service, job] = float(at)
    return out


def _write_first_seen(state_dir: Path, seen: Mapping[tuple[str, str], float]) -> None:
    path = state_dir / FIRST_SEEN_FILE
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        private_dir(state_dir)
        tmp.write_text(json.dumps({f"{s}.{j}": at for (s, j), at in sorted(seen.items())}))
        os.replace(tmp, path)
    except OSError as err:
        log.warning("cannot keep when jobs were first seen in %s: %s", path, err)


def _stamp(at: float) -> str:
    return time.strftime("%Y-%m-%d %H:%M:%S %Z", time.localtime(at))


def start_job_run(system: SystemConfig, store: JobSource | None, events: EventLog,
                  job: JobConfig, trigger: str, scheduled: float, *, by: str,
                  deployment: DeploymentState | None = None, registry: str | None = None,
                  clock: Callable[[], float] = time.time) -> str:  # fmt: skip
    """Record a new run of ``job`` (the scheduler starts its actions); its run id. The image
    is what the job's deploy group runs now: every action of the run runs that sha."""
    if deployment is None and store is not None:
        deployment = store.job_deployment(job)
    if deployment is None:
        raise UsageError(f"job {job.name}: deploy group {job.deploy_group} was never marked for "
                         "deployment: nothing to run yet")  # fmt: skip
    if store is not None:
        registry = store.registry(job.service)
    image = desired_app(job.actions[0].config, deployment, registry).image
    run_id = one_offs.new_run_id()
    how = "by the schedule" if trigger == "schedule" else f"by {by}"
    events.record(Event(clock(), "info", EventKind.JOB, job.service, job.name, job.cluster,
                        f"job {job.name} run {run_id} started {how}: git "
                        f"{deployment.git_sha[:12]}",
                        JobData(job.name, run_id, "started", trigger=trigger,
                                scheduled=scheduled, git_sha=deployment.git_sha,
                                image=image).to_json()))  # fmt: skip
    return run_id


def find_job(jobs: Sequence[JobConfig], service: str, name: str, cluster: str) -> JobConfig:
    for job in jobs:
        if (job.service, job.name, job.cluster) == (service, name, cluster):
            return job
    names = ", ".join(sorted(j.name for j in jobs if j.service == service and
                             j.cluster == cluster)) or "none"  # fmt: skip
    raise NotFoundError(f"{service}: no job {name!r} on cluster {cluster} (jobs: {names})")


def start_now(system: SystemConfig, service: str, job: str, by: str) -> str:
    """``job-run-now`` on this host's cluster: a manual run recorded; deployd's scheduler starts
    its actions. Its run id."""
    from paasport.config.tree import load_tree
    from paasport.deploy.deployments import read_deployments
    from paasport.monitoring.events import events_path

    tree = load_tree(system.soa_dir, [service], system=system)
    found = find_job(tree.jobs, service, job, system.local_cluster)
    known = read_deployments(system.soa_dir, service)
    deployment = known.state_for(found.cluster, found.name, found.deploy_group) if known else None
    registry = effective_registry(tree.services[service], system)
    with EventLog(events_path(system.state_dir)) as log:
        return start_job_run(system, None, log, found, "manual", time.time(), by=by,
                             deployment=deployment, registry=registry)  # fmt: skip
