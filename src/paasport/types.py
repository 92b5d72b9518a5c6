"""Immutable value types shared by every layer: configs, deployments, app specs, tasks.

Produced by ``config`` (InstanceConfig, Namespace, ServiceConfig, MonitoringConfig),
``deploy`` (DeploymentState), ``bounce.desired`` (AppSpec) and engines (AppVersion, Task);
consumed by the reconciler, discovery, monitoring, CLI and API. No I/O here.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Literal

BounceMethod = Literal["crossover", "upthendown", "downthenup", "brutal"]
HealthcheckMode = Literal["http", "tcp", "cmd"]
DrainMethod = Literal["proxy", "noop"]
DesiredState = Literal["start", "stop"]
ConstraintOperator = Literal["CLUSTER", "LIKE", "UNLIKE", "UNIQUE", "GROUP_BY", "MAX_PER"]
TaskState = Literal["starting", "running", "exited", "dead"]
TaskHealth = Literal["unknown", "healthy", "unhealthy"]


@dataclass(frozen=True)
class Volume:
    container_path: str
    host_path: str
    mode: Literal["RO", "RW"] = "RO"


@dataclass(frozen=True)
class Constraint:
    """One validated PaaSTA/Marathon placement rule ``[attribute, OPERATOR, value]``.

    ``value`` None: the operator takes none (UNIQUE, GROUP_BY without a count)."""

    attribute: str
    operator: ConstraintOperator
    value: str | None = None


@dataclass(frozen=True)
class HealthCheck:
    """How a task is judged healthy. ``mode`` None: a running task counts as healthy."""

    mode: HealthcheckMode | None = None
    uri: str = "/status"
    cmd: str | None = None
    grace_period_seconds: float = 60.0
    interval_seconds: float = 10.0
    timeout_seconds: float = 10.0
    max_consecutive_failures: int = 30


@dataclass(frozen=True)
class MonitoringConfig:
    """monitoring.yaml merged with an instance's ``monitoring:`` overrides. Durations in seconds."""

    team: str | None = None
    page: bool = False
    notification_email: str | None = None
    slack_channels: tuple[str, ...] = ()
    runbook: str | None = None
    tip: str | None = None
    alert_after: float = 300.0
    realert_every: float = 3600.0
    ticket: bool = False
    priority: str | None = None
    description: str | None = None
    replication_warn_percent: float = 100.0
    replication_crit_percent: float = 50.0


@dataclass(frozen=True)
class AutoscalingConfig:
    """An instance's ``autoscaling`` block (None: the metrics provider's default)."""

    metrics_provider: Literal["cpu", "http_inflight", "none"] = "cpu"  # none: the count holds
    setpoint: float | None = None  # cpu: fraction of the task's cpus; http_inflight: per task
    moving_average_window_seconds: float | None = None
    stabilization_window_seconds: float = 300.0  # scale-down waits for this long a lower load


@dataclass(frozen=True)
class InstanceConfig:
    """One instance of one service on one cluster, fully merged (system < service.yaml < file)."""

    service: str
    cluster: str
    instance: str
    deploy_group: str
    cpus: float = 1.0
    mem: float = 4096.0
    disk: float = 1024.0
    instances: int = 1
    min_instances: int | None = None
    max_instances: int | None = None  # set: autoscaled between min_instances (1) and this
    autoscaling: AutoscalingConfig | None = None
    cmd: str | None = None
    args: tuple[str, ...] | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    bounce_method: BounceMethod = "crossover"
    bounce_margin_factor: float = 1.0
    # this instance's tasks take this share of each namespace they register in (a canary);
    # None: an even share per task
    canary_weight_percent: float | None = None
    bounce_ramp: tuple[float, ...] = ()  # a crossover bounce's shares for the new version, in turn
    bounce_ramp_step_seconds: float = 30.0
    # (name, version) of each secret its env uses (SECRET(name)): never a value
    secret_versions: tuple[tuple[str, str], ...] = ()
    addons: tuple[str, ...] = ()  # add-ons it uses (config.addons): their env is in env
    healthcheck: HealthCheck = field(default_factory=HealthCheck)
    registrations: tuple[str, ...] = ()
    container_port: int = 8888
    net: Literal["bridge", "host"] = "bridge"
    extra_volumes: tuple[Volume, ...] = ()
    monitoring: MonitoringConfig = field(default_factory=MonitoringConfig)
    drain_method: DrainMethod = "proxy"
    drain_timeout_seconds: float = 60.0
    backoff_seconds: float = 10.0
    pool: str | None = None
    # the effective rules: ``constraints`` if set, else ``extra_constraints`` plus the pool rule
    constraints: tuple[Constraint, ...] = ()
    source_file: str = ""
    source_line: int = 0

    @property
    def job_id(self) -> str:
        return f"{self.service}.{self.instance}"

    @property
    def autoscaled(self) -> bool:
        """PaaSTA's rule: an instance with ``max_instances`` is autoscaled."""
        return self.max_instances is not None


@dataclass(frozen=True)
class JobAction:
    """One action of a scheduled job: a task of ``config`` (instance ``job.action``, its
    ``cmd`` the action's command) once its ``requires`` succeeded."""

    name: str
    config: InstanceConfig
    requires: tuple[str, ...] = ()
    retries: int = 0
    retries_delay: float = 0.0
    expected_runtime: float | None = None


@dataclass(frozen=True)
class JobConfig:
    """One job of a ``tron-<cluster>.yaml``: when it runs and its actions, in an order where
    every action comes after those it requires."""

    service: str
    cluster: str
    name: str
    schedule: str  # config.schedule's text: "cron */5 * * * *", "daily 04:00:00"
    time_zone: str
    actions: tuple[JobAction, ...]
    deploy_group: str
    enabled: bool = True
    allow_overlap: bool = False
    expected_runtime: float = 86400.0
    monitoring: MonitoringConfig = field(default_factory=MonitoringConfig)
    source_file: str = ""
    source_line: int = 0

    @property
    def job_id(self) -> str:
        return f"{self.service}.{self.name}"


@dataclass(frozen=True)
class Namespace:
    """One smartstack.yaml namespace: a discovery name with a proxy port on every host."""

    service: str
    name: str
    proxy_port: int | None
    mode: Literal["http", "tcp"] = "http"
    healthcheck_mode: Literal["http", "tcp"] = "http"
    healthcheck_uri: str = "/status"
    healthcheck_port: int | None = None
    healthcheck_timeout_s: float = 1.0
    timeout_connect_ms: int = 200
    timeout_server_ms: int = 1000
    timeout_client_ms: int | None = None
    retries: int = 1
    balance: Literal["roundrobin", "leastconn"] = "roundrobin"
    extra_healthcheck_headers: Mapping[str, str] = field(default_factory=dict)

    @property
    def full_name(self) -> str:
        return f"{self.service}.{self.name}"


@dataclass(frozen=True)
class RollbackPolicy:
    """deploy.yaml's auto_rollback of one deploy group (or ``--auto-rollback``)."""

    window_seconds: float = 600.0  # auto_certify_delay: watched this long after a deploy
    min_restarts: int = 2  # min_restarts_for_crashloop_rollback
    # an error rate through the proxy this much above the old version's is worse (and at
    # least this many requests to the new version before it is judged)
    error_rate_margin: float = 0.05
    min_requests: int = 50


@dataclass(frozen=True)
class ServiceConfig:
    """service.yaml plus the deploy groups of deploy.yaml."""

    name: str
    description: str = ""
    git_url: str | None = None
    docker_registry: str | None = None
    deploy_groups: tuple[str, ...] = ()
    source_file: str = ""
    auto_rollback: Mapping[str, RollbackPolicy] = field(default_factory=dict)  # by deploy group


@dataclass(frozen=True)
class DeploymentState:
    """What deployments.json says one instance should run (PaaSTA's "branch dict")."""

    docker_image: str
    git_sha: str
    image_version: str | None = None
    desired_state: DesiredState = "start"
    force_bounce: str | None = None


@dataclass(frozen=True)
class AppSpec:
    """The desired app version of one instance: a pure function of config + deployment."""

    service: str
    instance: str
    cluster: str
    image: str
    git_sha: str
    config_hash: str
    replicas: int
    cmd: str | None = None
    args: tuple[str, ...] | None = None
    env: Mapping[str, str] = field(default_factory=dict)
    cpus: float = 1.0
    mem: float = 4096.0
    disk: float = 1024.0
    container_port: int = 8888
    net: Literal["bridge", "host"] = "bridge"
    volumes: tuple[Volume, ...] = ()
    healthcheck: HealthCheck = field(default_factory=HealthCheck)
    deploy_group: str = ""
    # engine-neutral placement rules ("pool==batch", "hostname!=lab2"); engines translate them
    placement: tuple[str, ...] = ()

    @property
    def app_id(self) -> str:
        """Stable name of this app version: ``service.instance.git<sha8>.config<hash8>``."""
        return f"{self.service}.{self.instance}.git{self.git_sha[:8]}.config{self.config_hash[:8]}"


@dataclass(frozen=True)
class Task:
    """One running (or dead) copy of an app version, as the engine reports it."""

    task_id: str
    service: str
    instance: str
    cluster: str
    config_hash: str
    git_sha: str
    state: TaskState
    host: str = "127.0.0.1"
    port: int | None = None
    node: str = ""
    started_at: float = 0.0
    restarts: int = 0
    exit_code: int | None = None
    oom_killed: bool = False
    health: TaskHealth = "unknown"
    health_detail: str = ""  # the health monitor's last answer ("HTTP 404 from ...")
    draining: bool = False
    name: str = ""
    healthcheck: HealthCheck | None = None  # from the container's paasport.healthcheck label
    container_port: int | None = None
    # the engine's own word on a task that is not running: why it is pending or was rejected
    # ("no node with 0.5 cpus free", "constraint pool=batch matches no node", "host lab2 is down")
    status_message: str = ""
    # dead because its host is gone (a Swarm node down), not because the app failed: replaced
    # elsewhere at once, never counted as a crash
    host_lost: bool = False


@dataclass(frozen=True)
class AppVersion:
    """All tasks of one (service, instance, config hash) on one cluster."""

    service: str
    instance: str
    cluster: str
    config_hash: str
    git_sha: str
    image: str
    tasks: tuple[Task, ...] = ()
    desired_replicas: int = 0
    created_at: float = 0.0
