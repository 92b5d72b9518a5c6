"""The monitoring loop: gather observed state, run the checks, route alerts, hand them to sinks.

``paasport monitor`` and ``paasport up`` build a Monitor (``monitoring.sources.build_monitor``
wires the real config, deployments, engine, bounce status and health) and call ``run_forever``.
Each sink has its own queue and thread, so a slow or dead sink never delays a pass.
"""

from __future__ import annotations

import logging
import threading
import time
from collections import defaultdict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any

from paasport.engine.base import Engine
from paasport.errors import PaasportError
from paasport.monitoring import alerts as alerting
from paasport.monitoring.checks import (
    CHECKS,
    STATUS_VALUE,
    BounceView,
    Check,
    CheckResult,
    CheckSettings,
    DeployOutcome,
    InstanceObservation,
    JobObservation,
    Status,
    check_job,
)
from paasport.monitoring.events import Event, EventLog, Level
from paasport.monitoring.job_runs import job_runs
from paasport.monitoring.sinks import Sink
from paasport.monitoring.sinks.dispatch import SinkWorker
from paasport.monitoring.sinks.eventlog import EventLogSink
from paasport.types import AppVersion, DeploymentState, InstanceConfig, JobConfig

log = logging.getLogger(__name__)

InstanceKey = tuple[str, str]  # (service, instance)
LoadInstances = Callable[[], Sequence[InstanceConfig]]
LoadDeployments = Callable[[Sequence[InstanceConfig]], Mapping[InstanceKey, DeploymentState | None]]
BounceFn = Callable[
    [InstanceConfig, DeploymentState | None, Sequence[AppVersion]], BounceView | None
]
# up proxy backends of an instance's tasks; None: not in discovery or unknown; a str: this
# host's proxy does not answer, and why (replication is CRIT then)
BackendsFn = Callable[[InstanceConfig, Sequence[AppVersion]], int | str | None]
HealthFn = Callable[[Sequence[AppVersion]], Sequence[AppVersion]]

DEPLOY_HISTORY_SECONDS = 7 * 86400.0
JOB_HISTORY_SECONDS = 8 * 86400.0  # a daily job's last runs, whatever the schedule
_STATUS_LEVEL: Mapping[str, Level] = {"OK": "info", "WARN": "warning", "CRIT": "error"}


@dataclass(frozen=True)
class PassReport:
    """What one pass did (returned for tests, `paasport monitor --once` and logs)."""

    time: float
    results: tuple[CheckResult, ...]
    alerts: tuple[alerting.Alert, ...]
    errors: tuple[str, ...]


class Monitor:
    """Runs the checks of every instance of one cluster; state lives in memory between passes."""

    def __init__(
        self,
        *,
        cluster: str,
        engine: Engine,
        events: EventLog,
        load_instances: LoadInstances,
        load_deployments: LoadDeployments,
        sinks: Sequence[Sink] = (),
        bounce_view: BounceFn | None = None,
        backends_up: BackendsFn | None = None,
        with_health: HealthFn | None = None,
        settings: CheckSettings | None = None,
        checks: Mapping[str, Check] | None = None,
        interval: float = 10.0,
        clock: Callable[[], float] = time.time,
        metrics: bool = True,
        load_jobs: Callable[[], Sequence[JobConfig]] | None = None,
    ) -> None:
        self.cluster = cluster
        self._load_jobs = load_jobs
        self.engine = engine
        self.events = events
        self.interval = interval
        self.settings = settings or CheckSettings()
        self.checks = dict(checks if checks is not None else CHECKS)
        self._load_instances = load_instances
        self._load_deployments = load_deployments
        self._bounce_view = bounce_view
        self._backends_up = backends_up
        self._with_health = with_health
        self._clock = clock
        self._metrics = metrics
        self.states: dict[alerting.AlertKey, alerting.AlertState] = {}
        self._last_status: dict[alerting.AlertKey, Status] = {}
        self._bounce_seen: dict[InstanceKey, float] = {}
        self._last_error: dict[str, str] = {}
        self._gauge_labels: dict[str, set[tuple[str, ...]]] = defaultdict(set)
        self._pass_labels: dict[str, set[tuple[str, ...]]] = {}
        self.workers = [
            SinkWorker(sink, self._sink_failed) for sink in (EventLogSink(events), *sinks)
        ]

    # -- the loop -------------------------------------------------------------------------------

    def run_forever(self, stop: threading.Event) -> None:
        """A pass every ``interval`` seconds until ``stop`` is set; a failing pass never ends it."""
        while not stop.is_set():
            started = time.monotonic()
            try:
                self.run_once()
            except Exception as err:  # the loop must outlive any bug in a pass
                log.exception("monitoring pass failed")
                self._record_error("pass", f"monitoring pass failed: {err}", self._clock())
            stop.wait(max(0.0, self.interval - (time.monotonic() - started)))

    def close(self, timeout: float = 5.0) -> None:
        for worker in self.workers:
            worker.stop(timeout)

    def wait_sinks(self, timeout: float = 10.0) -> bool:
        """Wait until every sink handled what was handed to it (tests, `--once`)."""
        return all(worker.wait_idle(timeout) for worker in self.workers)

    def run_once(self) -> PassReport:
        now = self._clock()
        started = time.monotonic()
        errors: list[str] = []
        try:
            configs = [c for c in self._load_instances() if c.cluster == self.cluster]
            deployments = self._load_deployments(configs)
            observed: Sequence[AppVersion] = self.engine.list_app_versions()
            if self._with_health is not None:
                observed = self._with_health(observed)
        except PaasportError as err:
            # Without configs or engine state nothing can be judged: keep the alert states as
            # they are (a blind monitor must not resolve alerts) and say so once.
            self._record_error("gather", f"monitoring cannot observe {self.cluster}: {err}", now)
            return PassReport(now, (), (), (str(err),))
        self._last_error.pop("gather", None)

        by_instance: dict[InstanceKey, list[AppVersion]] = defaultdict(list)
        for version in observed:
            if version.cluster == self.cluster:
                by_instance[(version.service, version.instance)].append(version)
        history = self._history(now)

        results: list[tuple[CheckResult, Any]] = []
        for config in configs:
            key = (config.service, config.instance)
            versions = tuple(by_instance.get(key, ()))
            obs = self._observe(config, deployments.get(key), versions, history, now, errors)
            for name, check in self.checks.items():
                try:
                    result = check(obs, self.settings, now)
                except Exception as err:  # one broken check must not silence the others
                    message = (
                        f"check {name} raised on {config.service}.{config.instance}: "
                        f"{type(err).__name__}: {err}"
                    )
                    errors.append(message)
                    self._record(now, "error", "check", config, message, {"check": name})
                    self._count("check_errors_total", check=name)
                    continue
                results.append((result, config.monitoring))
                self._note_status(result, config, now)
            self._instance_gauges(config, versions, obs)

        jobs = self._job_results(now, errors)
        results.extend((result, job.monitoring) for job, result in jobs)
        self.states, sent = alerting.evaluate(self.states, results, now)
        live = [(c.service, c.instance, c.cluster) for c in configs]
        live += [(job.service, job.name, job.cluster) for job, _ in jobs]
        self.states, vanished = alerting.resolve_vanished(self.states, live, now)
        sent.extend(vanished)
        for gone in [k for k in self._last_status if k[1:] not in set(live)]:
            del self._last_status[gone]
        self._dispatch(sent, now)
        self._finish_gauges()
        for alert in sent:
            self._count(
                "alerts_total", check=alert.check, severity=alert.severity, reason=alert.reason
            )
        self._observe_duration(time.monotonic() - started)
        return PassReport(now, tuple(r for r, _ in results), tuple(sent), tuple(errors))

    def _job_results(self, now: float, errors: list[str]) -> list[tuple[JobConfig, CheckResult]]:
        """The ``job`` check of every scheduled job of this cluster (its runs from the event
        log)."""
        if self._load_jobs is None:
            return []
        try:
            jobs = [j for j in self._load_jobs() if j.cluster == self.cluster]
            if not jobs:
                return []
            runs = job_runs(self.events.query(kinds=("job",), since=now - JOB_HISTORY_SECONDS,
                                              cluster=self.cluster))  # fmt: skip
        except PaasportError as err:
            errors.append(f"monitoring cannot read the runs of jobs: {err}")
            return []
        return [
            (job, check_job(JobObservation(job.service, job.cluster, job.name,
                                           tuple(runs.get((job.service, job.cluster, job.name),
                                                          ()))), now))
            for job in jobs
        ]  # fmt: skip

    # -- gathering ------------------------------------------------------------------------------

    def _history(self, now: float) -> list[Event]:
        window = max(self.settings.crash_loop_window_seconds, self.settings.oom_window_seconds)
        recent = self.events.query(since=now - window, kinds=("crash", "oom"))
        deploys = self.events.query(since=now - DEPLOY_HISTORY_SECONDS, kinds=("deploy",))
        return [*recent, *deploys]

    def _observe(
        self,
        config: InstanceConfig,
        deployment: DeploymentState | None,
        versions: tuple[AppVersion, ...],
        history: Sequence[Event],
        now: float,
        errors: list[str],
    ) -> InstanceObservation:
        key = (config.service, config.instance)
        bounce: BounceView | None = None
        backends: int | None = None
        proxy_error = ""
        try:
            if self._bounce_view is not None:
                bounce = self._bounce_view(config, deployment, versions)
            if self._backends_up is not None:
                up = self._backends_up(config, versions)
                if isinstance(up, str):
                    proxy_error = up
                else:
                    backends = up
        except Exception as err:  # a broken source degrades the checks, never stops them
            message = f"monitoring could not gather {config.service}.{config.instance}: {err}"
            errors.append(message)
            self._record(now, "error", "check", config, message, {})
        if bounce is not None and bounce.in_progress:
            first_seen = self._bounce_seen.setdefault(key, now)
            if bounce.started_at is None:
                bounce = replace(bounce, started_at=first_seen)
        else:
            self._bounce_seen.pop(key, None)
        crashes: list[tuple[float, str]] = []
        ooms: list[tuple[float, str]] = []
        deploys: list[DeployOutcome] = []
        for event in history:
            if not _concerns(event, config):
                continue
            task_id = str(event.data.get("task_id", f"event@{event.time}"))
            if event.kind == "crash":
                crashes.append((event.time, task_id))
            elif event.kind == "oom":
                ooms.append((event.time, task_id))
            elif event.kind == "deploy":
                sha = event.data.get("git_sha")
                back = event.data.get("rolled_back_to")
                deploys.append(
                    DeployOutcome(
                        time=event.time,
                        ok=event.level not in ("error", "critical"),
                        message=event.message,
                        git_sha=str(sha) if sha else None,
                        rolled_back_to=str(back) if back else None,
                    )
                )
        deploys.sort(key=lambda d: d.time)
        return InstanceObservation(
            config=config,
            deployment=deployment,
            app_versions=versions,
            backends_up=backends,
            proxy_error=proxy_error,
            bounce=bounce,
            crashes=tuple(crashes),
            ooms=tuple(ooms),
            deploys=tuple(deploys),
        )

    # -- effects --------------------------------------------------------------------------------

    def _dispatch(self, sent: Sequence[alerting.Alert], now: float) -> None:
        active = alerting.active_alerts(self.states)
        resolved = [a for a in sent if not a.firing]
        for worker in self.workers:
            if worker.sink.resend_active:
                worker.submit([*resolved, *active], now)
            else:
                worker.submit(sent, now)

    def _note_status(self, result: CheckResult, config: InstanceConfig, now: float) -> None:
        key = alerting.key_of(result)
        previous = self._last_status.get(key, "OK")
        self._last_status[key] = result.status
        self._gauge("check_results", key, STATUS_VALUE[result.status])
        if previous != result.status:
            self._record(
                now,
                _STATUS_LEVEL[result.status],
                "check",
                config,
                f"{result.check} {previous} -> {result.status}: {result.message}",
                {"check": result.check, "status": result.status, "previous": previous},
            )

    def _record(
        self,
        now: float,
        level: Level,
        kind: str,
        config: InstanceConfig | None,
        message: str,
        data: Mapping[str, object],
    ) -> bool:
        """Record one event; False (and a log line) when the event log failed."""
        try:
            self.events.record(
                Event(
                    time=now,
                    level=level,
                    kind=kind,
                    service=config.service if config else None,
                    instance=config.instance if config else None,
                    cluster=config.cluster if config else self.cluster,
                    message=message,
                    data=data,
                )
            )
        except Exception as err:  # any failure of the event log: the pass, the loop and the
            # sink workers (whose errors come here) must outlive it; the log still says it
            log.error("%s (and the event log failed: %s)", message, err)
            return False
        return True

    def _record_error(self, source: str, message: str, now: float) -> None:
        log.warning("%s", message)
        if self._last_error.get(source) != message and self._record(
            now, "error", "monitor", None, message, {"source": source}
        ):  # an error the event log did not take is recorded once it answers again
            self._last_error[source] = message

    def _sink_failed(self, sink: str, message: str) -> None:
        self._count("sink_failures_total", sink=sink)
        if sink == "eventlog":
            log.error("%s", message)
            return
        self._record_error(f"sink:{sink}", message, self._clock())

    # -- metrics (skipped when ``metrics`` is False, e.g. in unit tests) --------------------------

    def _instance_gauges(
        self, config: InstanceConfig, versions: Sequence[AppVersion], obs: InstanceObservation
    ) -> None:
        labels = (config.cluster, config.service, config.instance)
        states: dict[str, int] = {"starting": 0, "running": 0, "exited": 0, "dead": 0}
        healthy = 0
        for version in versions:
            for task in version.tasks:
                states[task.state] = states.get(task.state, 0) + 1
                healthy += task.health == "healthy" and task.state == "running"
        for state, count in states.items():
            self._gauge("tasks_by_state", (*labels, state), count)
        self._gauge("healthy_vs_expected", (*labels, "healthy"), healthy)
        self._gauge("healthy_vs_expected", (*labels, "expected"), config.instances)
        if obs.backends_up is not None:
            self._gauge("healthy_vs_expected", (*labels, "backends_up"), obs.backends_up)

    def _gauge(self, name: str, labels: tuple[str, ...], value: float) -> None:
        if not self._metrics:
            return
        from paasport.monitoring import metrics

        getattr(metrics, name).labels(*labels).set(value)
        self._gauge_labels[name].add(labels)
        self._pass_labels.setdefault(name, set()).add(labels)

    def _finish_gauges(self) -> None:
        """Drop the gauge series of instances that vanished since the previous pass."""
        if not self._metrics:
            return
        from paasport.monitoring import metrics

        for name, seen in self._gauge_labels.items():
            current = self._pass_labels.get(name, set())
            for labels in seen - current:
                getattr(metrics, name).remove(*labels)
            self._gauge_labels[name] = set(current)
        self._pass_labels = {}

    def _count(self, name: str, **labels: str) -> None:
        if self._metrics:
            from paasport.monitoring import metrics

            getattr(metrics, name).labels(**labels).inc()

    def _observe_duration(self, seconds: float) -> None:
        if self._metrics:
            from paasport.monitoring import metrics

            metrics.monitor_pass_duration_seconds.observe(seconds)


def _concerns(event: Event, config: InstanceConfig) -> bool:
    """Whether a crash/oom/deploy event is about this instance (deploys may name only the group)."""
    if event.service != config.service or event.cluster not in (None, config.cluster):
        return False
    if event.instance is not None:
        return event.instance == config.instance
    return event.kind == "deploy" and event.data.get("deploy_group") == config.deploy_group
