"""Wires a Monitor to its real inputs: soa-configs, deployments.json, engine, bounce status, sinks.

``paasport.platform`` calls ``build_monitor(system, desired=store, ...)`` for ``monitor`` and
``up``: ``desired`` is the shared desired-state store (reconcile.store, which monitoring may not
import, so it is a protocol here), ``up`` also passes its health function and ``backends_up``.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Protocol

from paasport.config.system import MonitoringSinksConfig, SystemConfig
from paasport.engine.base import Engine
from paasport.monitoring.checks import BounceView, CheckSettings
from paasport.monitoring.events import EventLog, events_path
from paasport.monitoring.monitor import BackendsFn, HealthFn, InstanceKey, Monitor
from paasport.monitoring.sinks import Sink
from paasport.types import AppVersion, DeploymentState, InstanceConfig, JobConfig


def sinks_for(config: MonitoringSinksConfig) -> list[Sink]:
    """The sinks the system config asks for (the event log sink is always added by Monitor)."""
    sinks: list[Sink] = []
    if config.alertmanager_url:
        from paasport.monitoring.sinks.alertmanager import AlertmanagerSink

        # Firing alerts are re-posted every pass; this TTL resolves them if paasport stops.
        ttl = max(60.0, 6 * config.check_interval_seconds)
        sinks.append(AlertmanagerSink(config.alertmanager_url, ttl=ttl))
    if config.webhook_url:
        from paasport.monitoring.sinks.webhook import WebhookSink

        sinks.append(WebhookSink(config.webhook_url))
    if config.smtp_host:
        from paasport.monitoring.sinks.email import EmailSink

        sinks.append(
            EmailSink(config.smtp_host, config.smtp_port, config.smtp_from or "paasport@localhost")
        )
    return sinks


class DesiredSource(Protocol):
    """What the monitor reads from the desired-state store (reconcile.store.DesiredStore)."""

    def instances(self) -> Sequence[InstanceConfig]: ...

    def deployment(self, key: InstanceKey) -> DeploymentState | None: ...

    def registry(self, service: str) -> str | None: ...

    def jobs(self) -> Sequence[JobConfig]: ...


def bounce_view(
    config: InstanceConfig,
    deployment: DeploymentState | None,
    versions: Sequence[AppVersion],
    registry: str | None,
) -> BounceView | None:
    """Where an instance's bounce stands, for the bounce_stuck check."""
    from paasport.bounce.desired import desired_app
    from paasport.bounce.plan import bounce_status

    if deployment is None:
        return None
    desired = desired_app(config, deployment, registry)
    status = bounce_status(desired, versions, config.bounce_method, config.bounce_margin_factor)
    created = [
        v.created_at for v in versions if v.config_hash == desired.config_hash and v.created_at
    ]
    return BounceView(
        in_progress=status.in_progress,
        method=status.method,
        waiting_on=status.waiting_on,
        started_at=min(created) if created else None,
    )


class StoreSource:
    """Instances, deployments and bounce status from the shared desired-state store: a broken
    instance keeps being monitored with its last good config (its alerts neither fire nor
    resolve because of the config error)."""

    def __init__(self, desired: DesiredSource) -> None:
        self.desired = desired

    def instances(self) -> Sequence[InstanceConfig]:
        return self.desired.instances()

    def deployments(
        self, configs: Sequence[InstanceConfig]
    ) -> Mapping[InstanceKey, DeploymentState | None]:
        return {
            (c.service, c.instance): self.desired.deployment((c.service, c.instance))
            for c in configs
        }

    def bounce(
        self,
        config: InstanceConfig,
        deployment: DeploymentState | None,
        versions: Sequence[AppVersion],
    ) -> BounceView | None:
        return bounce_view(config, deployment, versions, self.desired.registry(config.service))


def build_monitor(
    system: SystemConfig,
    *,
    engine: Engine | None = None,
    events: EventLog | None = None,
    with_health: HealthFn | None = None,
    backends_up: BackendsFn | None = None,
    settings: CheckSettings | None = None,
    interval: float | None = None,
    metrics: bool = True,
    desired: DesiredSource,
) -> Monitor:
    """A Monitor for the system's local cluster with the sinks its config names, reading
    ``desired`` (the desired-state store: the one last-good policy)."""
    cluster = system.local_cluster
    if engine is None:
        from paasport.engine.factory import engine_for

        engine = engine_for(system.local)
    source = StoreSource(desired)
    return Monitor(
        cluster=cluster,
        engine=engine,
        events=events if events is not None else EventLog(events_path(system.state_dir)),
        load_instances=source.instances,
        load_deployments=source.deployments,
        sinks=sinks_for(system.monitoring),
        bounce_view=source.bounce,
        backends_up=backends_up,
        with_health=with_health,
        settings=settings,
        interval=interval if interval is not None else system.monitoring.check_interval_seconds,
        metrics=metrics,
        load_jobs=desired.jobs,
    )
