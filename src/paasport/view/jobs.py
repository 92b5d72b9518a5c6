"""Scheduled jobs as ``paasport jobs`` / ``job-runs``, the API and the dashboard show them: each
job of this cluster with its schedule, last and next run; a job's runs with their actions, exit
codes, durations and where their output is kept."""

from __future__ import annotations

import time
from dataclasses import dataclass
from typing import Any

from paasport.config.schedule import parse_schedule
from paasport.config.system import SystemConfig
from paasport.config.tree import SoaTree
from paasport.monitoring.job_runs import JobRun, job_runs
from paasport.types import JobConfig
from paasport.view.events import load_events

HISTORY_SECONDS = 30 * 86400.0
LOG_PATH = "/v1/services/{service}/runs/{run_id}/log"


@dataclass(frozen=True)
class JobView:
    job: JobConfig
    runs: tuple[JobRun, ...]  # oldest first
    next_run: float | None

    @property
    def last(self) -> JobRun | None:
        return self.runs[-1] if self.runs else None

    @property
    def state(self) -> str:
        last = self.last
        if last is not None and not last.done:
            return "running"
        return "scheduled" if self.job.enabled else "disabled"

    def to_json(self, with_runs: bool = False) -> dict[str, Any]:
        last = self.last
        out: dict[str, Any] = {
            "service": self.job.service, "cluster": self.job.cluster, "job": self.job.name,
            "schedule": self.job.schedule, "time_zone": self.job.time_zone,
            "enabled": self.job.enabled, "state": self.state,
            "deploy_group": self.job.deploy_group,
            "actions": [{"name": a.name, "command": a.config.cmd, "requires": list(a.requires),
                         "retries": a.retries} for a in self.job.actions],
            "expected_runtime": self.job.expected_runtime,
            "team": self.job.monitoring.team,
            "last_run": run_json(last) if last is not None else None,
            "next_run": self.next_run,
        }  # fmt: skip
        if with_runs:
            out["runs"] = [run_json(r) for r in self.runs]
        return out


def run_json(run: JobRun) -> dict[str, Any]:
    return {
        "run_id": run.run_id, "trigger": run.trigger, "state": run.state,
        "started": run.started, "scheduled": run.scheduled or None, "finished": run.finished,
        "seconds": run.seconds, "git_sha": run.git_sha, "message": run.message,
        "late": run.late or None,
        "actions": [
            {"action": a.name, "attempts": [
                {"attempt": t.number, "exit_code": t.exit_code, "started": t.started,
                 "finished": t.finished,
                 "seconds": None if t.finished is None else round(t.finished - t.started, 3),
                 "log": t.log or None,
                 "log_url": LOG_PATH.format(service=run.service, run_id=t.task_run_id)
                 if t.task_run_id and t.done else None}
                for t in a.attempts]}
            for a in run.actions.values()
        ],
    }  # fmt: skip


def load_jobs(system: SystemConfig, tree: SoaTree, service: str | None = None,
              job: str | None = None) -> list[JobView]:  # fmt: skip
    """The jobs of this host's cluster (of ``service``, named ``job``) and their runs."""
    cluster = system.local_cluster
    jobs = tree.jobs_for(service=service, cluster=cluster, job=job)
    if not jobs:
        return []
    now = time.time()
    events = load_events(system, service=service, cluster=cluster, kinds=("job",),
                         since=now - HISTORY_SECONDS, limit=None)  # fmt: skip
    history = job_runs(events.events)
    out = []
    for j in jobs:
        runs = tuple(history.get((j.service, j.cluster, j.name), []))
        out.append(JobView(j, runs, next_run(j, now)))
    return out


def next_run(job: JobConfig, now: float) -> float | None:
    """When the schedule starts it next (None: disabled)."""
    if not job.enabled:
        return None
    schedule, _ = parse_schedule(job.schedule, job.time_zone)
    return schedule.next_after(now) if schedule is not None else None
