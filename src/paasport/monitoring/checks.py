"""The monitoring checks, pure: one instance's observed state in, one CheckResult per check out.

``monitoring.monitor`` gathers an InstanceObservation (engine tasks, proxy backends, bounce
status, crash/OOM/deploy events) and calls every function in CHECKS; ``monitoring.alerts``
turns the results into alerts. No I/O and no clock here: ``now`` is a parameter.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from paasport.monitoring.job_runs import JobRun
from paasport.types import AppVersion, DeploymentState, InstanceConfig, Task

Status = Literal["OK", "WARN", "CRIT"]
STATUS_VALUE: Mapping[str, int] = {"OK": 0, "WARN": 1, "CRIT": 2}


@dataclass(frozen=True)
class CheckResult:
    """One check's verdict on one instance; ``alert_after``/``can_page`` override the routing."""

    check: str
    service: str
    instance: str
    cluster: str
    status: Status
    message: str
    alert_after: float | None = None  # None: the instance's monitoring.alert_after
    can_page: bool = True  # False: never more than a ticket (e.g. OOM, as in PaaSTA)
    data: Mapping[str, object] = field(default_factory=dict)


@dataclass(frozen=True)
class CheckSettings:
    """Limits of the checks that monitoring.yaml does not carry (system-wide)."""

    crash_loop_restarts: int = 3  # more than this many crashes ...
    crash_loop_window_seconds: float = 600.0  # ... within this window is a crash loop
    oom_window_seconds: float = 600.0
    bounce_stuck_after_seconds: float = 900.0


@dataclass(frozen=True)
class BounceView:
    """What the checks need of ``bounce.plan.BounceStatus`` plus when the bounce began."""

    in_progress: bool
    method: str = ""
    waiting_on: str = ""
    started_at: float | None = None  # creation of the newest app version, if known


@dataclass(frozen=True)
class DeployOutcome:
    """A ``deploy`` event for this instance: wait-for-deployment succeeded or failed."""

    time: float
    ok: bool
    message: str
    git_sha: str | None = None
    rolled_back_to: str | None = None  # the auto-rollback guard left git_sha for this sha


@dataclass(frozen=True)
class InstanceObservation:
    """Everything the checks look at for one instance, gathered by the monitor."""

    config: InstanceConfig
    deployment: DeploymentState | None
    app_versions: tuple[AppVersion, ...] = ()
    backends_up: int | None = None  # up proxy backends of this instance's tasks (registered only)
    proxy_error: str = ""  # this host's proxy does not answer (instance in discovery): why
    bounce: BounceView | None = None
    crashes: tuple[tuple[float, str], ...] = ()  # (time, task_id) of recorded crash events
    ooms: tuple[tuple[float, str], ...] = ()  # (time, task_id) of recorded OOM kills
    deploys: tuple[DeployOutcome, ...] = ()  # oldest first


Check = Callable[[InstanceObservation, CheckSettings, float], CheckResult]


def _result(
    obs: InstanceObservation,
    check: str,
    status: Status,
    message: str,
    alert_after: float | None = None,
    can_page: bool = True,
    data: Mapping[str, object] | None = None,
) -> CheckResult:
    cfg = obs.config
    return CheckResult(
        check=check,
        service=cfg.service,
        instance=cfg.instance,
        cluster=cfg.cluster,
        status=status,
        message=f"{cfg.service}.{cfg.instance} on {cfg.cluster}: {message}",
        alert_after=alert_after,
        can_page=can_page,
        data=data or {},
    )


def _stopped(obs: InstanceObservation) -> str | None:
    """Why the instance is deliberately not running, or None when it should run."""
    if obs.deployment is None:
        return "not deployed (never marked for deployment)"
    if obs.deployment.desired_state == "stop":
        return "stopped on purpose (desired_state stop)"
    return None


def _tasks(obs: InstanceObservation) -> list[Task]:
    return [task for version in obs.app_versions for task in version.tasks]


def bounce_in_progress_normally(
    obs: InstanceObservation, settings: CheckSettings, now: float
) -> bool:
    bounce = obs.bounce
    if bounce is None or not bounce.in_progress:
        return False
    return (
        bounce.started_at is None or now - bounce.started_at <= settings.bounce_stuck_after_seconds
    )


def _pct(available: int, expected: int) -> float:
    return 100.0 if expected <= 0 else available * 100.0 / expected


def check_replication(obs: InstanceObservation, settings: CheckSettings, now: float) -> CheckResult:
    """Healthy tasks (and up proxy backends, when known) against ``instances``."""
    why = _stopped(obs)
    if why is not None:
        return _result(obs, "replication", "OK", why)
    expected = obs.config.instances
    healthy = sum(
        1
        for task in _tasks(obs)
        if task.state == "running" and task.health == "healthy" and not task.draining
    )
    counts = [(healthy, f"{healthy}/{expected} healthy tasks")]
    if obs.proxy_error and expected > 0:
        # nothing reaches the tasks through this host, however healthy they are; a bounce in
        # progress does not excuse it
        message = f"{healthy}/{expected} healthy tasks, but {obs.proxy_error}"
        data = {"healthy": healthy, "expected": expected, "proxy_error": obs.proxy_error}
        return _result(obs, "replication", "CRIT", message, data=data)
    if obs.backends_up is not None:
        counts.append((obs.backends_up, f"{obs.backends_up}/{expected} backends up in the proxy"))
    available, _ = min(counts)
    pct = _pct(available, expected)
    mon = obs.config.monitoring
    status: Status = "OK"
    if pct < mon.replication_crit_percent:
        status = "CRIT"
    elif pct < mon.replication_warn_percent:
        status = "WARN"
    text = ", ".join(text for _, text in counts)
    message = (
        f"{text} ({pct:.0f}%; warn below {mon.replication_warn_percent:g}%,"
        f" crit below {mon.replication_crit_percent:g}%)"
    )
    data = {"healthy": healthy, "expected": expected, "backends_up": obs.backends_up}
    if status != "OK" and bounce_in_progress_normally(obs, settings, now):
        # A bounce that is moving along dips on purpose: never page for it. A dip below the
        # crit line stays visible as WARN; the bounce_stuck check covers a bounce that stalls.
        assert obs.bounce is not None
        status = "WARN" if status == "CRIT" else "OK"
        message += f"; {obs.bounce.method or 'a'} bounce in progress ({obs.bounce.waiting_on})"
        return _result(obs, "replication", status, message, can_page=False, data=data)
    return _result(obs, "replication", status, message, data=data)


def _fmt_duration(seconds: float) -> str:
    seconds = max(0, int(seconds))
    if seconds >= 3600 and seconds % 3600 == 0:
        return f"{seconds // 3600}h"
    if seconds >= 60 and seconds % 60 == 0:
        return f"{seconds // 60}m"
    if seconds >= 60:
        return f"{seconds // 60}m{seconds % 60}s"
    return f"{seconds}s"


def check_crash_loop(obs: InstanceObservation, settings: CheckSettings, now: float) -> CheckResult:
    """More than N crashes (recorded crash events, dead tasks, engine restarts) within M minutes."""
    why = _stopped(obs)
    if why is not None:
        return _result(obs, "crash_loop", "OK", why)
    window = settings.crash_loop_window_seconds
    since = now - window
    crashed = {task_id for at, task_id in obs.crashes if at >= since}
    restarts = 0
    last_exit: int | None = None
    for task in _tasks(obs):
        if task.state in ("exited", "dead") and task.exit_code not in (None, 0):
            crashed.add(task.task_id)
            last_exit = task.exit_code
        if task.started_at >= since:
            restarts += task.restarts
    count = len(crashed) + restarts
    limit = settings.crash_loop_restarts
    detail = f"{count} crashes in the last {_fmt_duration(window)} (limit {limit})"
    if last_exit is not None:
        detail += f", last exit code {last_exit}"
    status: Status = "CRIT" if count > limit else "OK"
    return _result(obs, "crash_loop", status, detail, data={"crashes": count})


def check_oom(obs: InstanceObservation, settings: CheckSettings, now: float) -> CheckResult:
    """Any OOM kill within the window is CRIT at once, and never pages (PaaSTA's oom-killer)."""
    since = now - settings.oom_window_seconds
    killed = {task_id for at, task_id in obs.ooms if at >= since}
    killed |= {task.task_id for task in _tasks(obs) if task.oom_killed}
    if not killed:
        return _result(obs, "oom", "OK", "no OOM kills", alert_after=0.0, can_page=False)
    message = (
        f"{len(killed)} task(s) killed for running out of memory (mem {obs.config.mem:g} MB) in"
        f" the last {_fmt_duration(settings.oom_window_seconds)}"
    )
    return _result(
        obs,
        "oom",
        "CRIT",
        message,
        alert_after=0.0,
        can_page=False,
        data={"oom_kills": len(killed)},
    )


def check_bounce_stuck(
    obs: InstanceObservation, settings: CheckSettings, now: float
) -> CheckResult:
    """A bounce in progress longer than the limit, naming the step it waits on."""
    bounce = obs.bounce
    if _stopped(obs) is not None or bounce is None or not bounce.in_progress:
        return _result(obs, "bounce_stuck", "OK", "no bounce in progress")
    if bounce.started_at is None:
        return _result(obs, "bounce_stuck", "OK", f"bounce in progress ({bounce.waiting_on})")
    age = now - bounce.started_at
    limit = settings.bounce_stuck_after_seconds
    message = (
        f"{bounce.method or 'a'} bounce in progress for {_fmt_duration(age)},"
        f" waiting on: {bounce.waiting_on or 'unknown'}"
    )
    if age > limit:
        return _result(
            obs,
            "bounce_stuck",
            "CRIT",
            f"{message} (limit {_fmt_duration(limit)})",
            alert_after=0.0,
        )
    return _result(obs, "bounce_stuck", "OK", message)


def check_deploy_failed(
    obs: InstanceObservation, settings: CheckSettings, now: float
) -> CheckResult:
    """The newest deploy outcome failed for the sha still being deployed (wait-for-deployment)."""
    if not obs.deploys:
        return _result(obs, "deploy_failed", "OK", "no failed deploy")
    last = obs.deploys[-1]
    current_sha = obs.deployment.git_sha if obs.deployment is not None else None
    if last.rolled_back_to and current_sha == last.rolled_back_to:
        # the team must hear of it until someone deploys again (a new deploy event)
        return _result(obs, "deploy_failed", "CRIT", last.message, alert_after=0.0)
    if last.ok:
        return _result(obs, "deploy_failed", "OK", f"last deploy succeeded: {last.message}")
    if (
        last.git_sha is not None
        and current_sha is not None
        and not current_sha.startswith(last.git_sha)  # wait-for-deployment may name a prefix
        and not last.git_sha.startswith(current_sha)
    ):
        return _result(
            obs, "deploy_failed", "OK", f"deploy of {last.git_sha[:8]} failed but is superseded"
        )
    return _result(obs, "deploy_failed", "CRIT", f"deploy failed: {last.message}", alert_after=0.0)


@dataclass(frozen=True)
class JobObservation:
    """One scheduled job's runs (oldest first), for the ``job`` check."""

    service: str
    cluster: str
    job: str
    runs: tuple[JobRun, ...] = ()


def check_job(obs: JobObservation, now: float) -> CheckResult:
    """CRIT while the job's newest ended run failed (after its retries) until a run succeeds,
    and while a run in progress is past its expected runtime. Alerts at once."""

    def result(status: Status, message: str) -> CheckResult:
        return CheckResult("job", obs.service, obs.job, obs.cluster, status,
                           f"{obs.service} job {obs.job} on {obs.cluster}: {message}",
                           alert_after=0.0)  # fmt: skip

    runs = [r for r in obs.runs if r.trigger != "skipped"]
    running = [r for r in runs if not r.done]
    ended = [r for r in runs if r.done]
    if running and running[-1].late:
        return result("CRIT", f"run {running[-1].run_id} is late: {running[-1].late}")
    if ended and not ended[-1].ok:
        last = ended[-1]
        return result("CRIT", last.message.removeprefix(f"job {obs.job} "))
    if ended:
        return result("OK", f"run {ended[-1].run_id} succeeded")
    return result("OK", "no run ended yet")


CHECKS: Mapping[str, Check] = {
    "replication": check_replication,
    "crash_loop": check_crash_loop,
    "oom": check_oom,
    "bounce_stuck": check_bounce_stuck,
    "deploy_failed": check_deploy_failed,
}
