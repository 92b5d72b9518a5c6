"""The runs of scheduled jobs, read back from their ``job`` events. Pure.

The scheduler (``platform.jobs``) records every step of a run as a ``job`` event
(``events.JobData``); this module folds them into ``JobRun`` values, which the scheduler plans
from after a restart, ``paasport jobs``/``job-runs`` show and the ``job`` check judges.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field, replace

from paasport.monitoring.events import Event

JobKey = tuple[str, str, str]  # (service, cluster, job)


@dataclass(frozen=True)
class Attempt:
    number: int
    task_id: str = ""
    task_run_id: str = ""
    started: float = 0.0
    finished: float | None = None
    exit_code: int | None = None
    log: str = ""

    @property
    def done(self) -> bool:
        return self.finished is not None

    @property
    def ok(self) -> bool:
        return self.done and self.exit_code == 0


@dataclass(frozen=True)
class ActionRun:
    name: str
    attempts: tuple[Attempt, ...] = ()

    @property
    def last(self) -> Attempt | None:
        return self.attempts[-1] if self.attempts else None


@dataclass(frozen=True)
class JobRun:
    service: str
    cluster: str
    job: str
    run_id: str
    started: float
    trigger: str = "schedule"  # "schedule" | "manual" | "skipped" (a scheduled time passed by)
    scheduled: float = 0.0
    git_sha: str = ""
    image: str = ""
    actions: Mapping[str, ActionRun] = field(default_factory=dict)
    finished: float | None = None
    ok: bool | None = None
    message: str = ""  # the finished (or skipped) event's words
    late: str = ""  # the late event's words, once it was past its expected runtime

    @property
    def done(self) -> bool:
        return self.finished is not None

    @property
    def state(self) -> str:
        if self.trigger == "skipped":
            return "skipped"
        if not self.done:
            return "running"
        return "succeeded" if self.ok else "failed"

    @property
    def seconds(self) -> float | None:
        return None if self.finished is None else self.finished - self.started


def _fold(run: JobRun, event: Event) -> JobRun:
    d = event.data
    state = d.get("state")
    if state in ("action_started", "action_finished"):
        name = str(d.get("action", ""))
        action = run.actions.get(name, ActionRun(name))
        number = int(str(d.get("attempt") or 1))
        attempts = {a.number: a for a in action.attempts}
        attempt = attempts.get(number, Attempt(number, started=event.time))
        if state == "action_started":
            attempt = replace(
                attempt,
                task_id=str(d.get("task_id", "")),
                task_run_id=str(d.get("task_run_id", "")),
                started=event.time,
            )
        else:
            code = d.get("exit_code")
            took = float(str(d.get("seconds") or 0.0))  # the task's own time, when known
            ended = attempt.started + took if took > 0 else event.time
            attempt = replace(
                attempt,
                finished=min(ended, event.time),
                log=str(d.get("log", "")),
                exit_code=int(str(code)) if code is not None else None,
                task_id=attempt.task_id or str(d.get("task_id", "")),
                task_run_id=attempt.task_run_id or str(d.get("task_run_id", "")),
            )
        attempts[number] = attempt  # fmt: skip
        ordered = tuple(attempts[k] for k in sorted(attempts))
        return replace(run, actions={**run.actions, name: replace(action, attempts=ordered)})
    if state == "finished":
        return replace(run, finished=event.time, ok=bool(d.get("ok")), message=event.message)
    if state == "late":
        return replace(run, late=run.late or event.message)
    return run


def job_runs(events: Iterable[Event]) -> dict[JobKey, list[JobRun]]:
    """Every run of every job in ``events`` (oldest event first), oldest run first."""
    runs: dict[str, JobRun] = {}
    keys: dict[str, JobKey] = {}
    for event in events:
        if event.kind != "job" or not event.service:
            continue
        run_id = str(event.data.get("run_id", ""))
        job = str(event.data.get("job", ""))
        if not run_id or not job:
            continue
        state = event.data.get("state")
        if run_id not in runs:
            if state not in ("started", "skipped"):
                continue  # its start is older than what was read
            runs[run_id] = JobRun(
                service=event.service, cluster=event.cluster or "", job=job, run_id=run_id,
                started=event.time,
                trigger="skipped" if state == "skipped" else str(event.data.get("trigger") or
                                                                 "schedule"),
                scheduled=float(str(event.data.get("scheduled") or 0.0)),
                git_sha=str(event.data.get("git_sha", "")), image=str(event.data.get("image", "")),
                finished=event.time if state == "skipped" else None,
                message=event.message if state == "skipped" else "",
            )  # fmt: skip
            keys[run_id] = (event.service, event.cluster or "", job)
            continue
        runs[run_id] = _fold(runs[run_id], event)
    out: dict[JobKey, list[JobRun]] = {}
    for run_id, run in runs.items():
        out.setdefault(keys[run_id], []).append(run)
    for found in out.values():
        found.sort(key=lambda r: r.started)
    return out
