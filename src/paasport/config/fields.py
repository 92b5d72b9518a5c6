"""The fields of every soa-configs file kind and of paasport.yaml, as ``config.spec`` tables.

Read by ``config.tree`` and ``config.system`` (validation) and ``config.schema`` (JSON Schema).
PaaSTA fields paasport does not implement are listed per kind: they validate with a warning.
"""

from __future__ import annotations

from paasport.config.addons import ADDONS, SERVER_URL
from paasport.config.placement import CONSTRAINT, LITERAL, LITERAL_WHAT
from paasport.config.spec import (
    Bool,
    Custom,
    Duration,
    Enum,
    Int,
    Issue,
    ListOf,
    MapOf,
    Nullable,
    Num,
    Obj,
    Spec,
    Str,
    describe,
)

# Names. Instances and namespaces: PaaSTA's schema pattern; services: DESIGN.md's.
INSTANCE_NAME = r"[a-z0-9]|[a-z0-9][a-z0-9_-]*[a-z0-9]"
SERVICE_NAME = r"[a-z0-9][a-z0-9_-]*"
REGISTRATION = r"[a-z0-9][a-z0-9_-]*\.[a-z0-9_-]+"
HEALTHCHECK_URI = r"/[-_0-9a-zA-Z/?&.=%~+:,]*"
STEP_NAME = r"[a-zA-Z0-9_.-]+"
# HOST:PORT, the host a name, an IPv4 address or a bracketed IPv6 one (empty: 127.0.0.1)
LISTEN = (
    r"(?:[A-Za-z0-9_.-]*|\[[0-9A-Fa-f:.]+\]):"
    r"(?:6553[0-5]|655[0-2][0-9]|65[0-4][0-9]{2}|6[0-4][0-9]{3}|[1-5][0-9]{4}|[0-9]{1,4})"
)


def _priority(value: object) -> tuple[object, str | None]:
    if isinstance(value, str):
        return value, None
    if isinstance(value, int) and not isinstance(value, bool):
        return str(value), None
    return None, f"expected a string or an integer, found {describe(value)}"


def _email(value: object) -> tuple[object, str | None]:
    if value is False:
        return None, None
    if isinstance(value, str):
        return value, None
    return None, f"expected an email address (or false), found {describe(value)}"


def _realert(value: object) -> tuple[object, str | None]:
    if value == -1 and not isinstance(value, bool):
        return -1.0, None  # PaaSTA's exponential back-off; tree.py maps it with a warning
    out: list[Issue] = []
    result = Duration().check(value, (), out)
    if out:
        return (
            None,
            f'expected a duration (seconds, or text like "1h") or -1, found {describe(value)}',
        )
    return result, None


MONITORING_FIELDS: dict[str, Spec] = {
    "team": Str(description="owning team; alerts are routed to it"),
    "page": Bool(description="page the team (critical alerts)"),
    "notification_email": Custom(
        _email,
        {"anyOf": [{"type": "string"}, {"const": False}]},
        description="where email alerts go (false: none)",
    ),
    "slack_channels": ListOf(Str(), description="Slack channels (webhook sink)"),
    "runbook": Str(description="link or text telling the responder what to do"),
    "tip": Str(description="a one-line hint shown with alerts"),
    "alert_after": Duration(description="how long a check must fail before it alerts"),
    "realert_every": Custom(
        _realert,
        {"anyOf": [{"type": "number"}, {"type": "string"}]},
        description="repeat a firing alert this often (duration)",
    ),
    "ticket": Bool(description="open a ticket"),
    "priority": Custom(
        _priority, {"type": ["string", "integer"]}, description="ticket priority, e.g. '3'"
    ),
    "description": Str(description="what the alert means"),
    "replication_threshold": Int(0, 100, "PaaSTA's crit percent for the replication check"),
    "replication_warn_percent": Num(0, 100, description="warn below this % of healthy tasks"),
    "replication_crit_percent": Num(0, 100, description="crit below this % of healthy tasks"),
}
MONITORING_UNUSED = frozenset(
    {
        "irc_channels",
        "project",
        "tags",
        "component",
        "check_every",
        "check_oom_events",
        "dependencies",
        "issuetype",
        "page_nonprod",
        "check_that_every_day_has_a_successful_run",
        "page_for_expected_runtime",
    }
)
MONITORING = Obj(MONITORING_FIELDS, unused=MONITORING_UNUSED, description="monitoring.yaml")

VOLUME = Obj(
    {
        "containerPath": Str(r"/.*", "an absolute path"),
        "hostPath": Str(r"/.*", "an absolute path"),
        "mode": Enum(("RO", "RW")),
    },
    required=frozenset({"containerPath", "hostPath"}),
)

# PaaSTA's provider types; paasport measures cpu and active-requests (its http_inflight)
PROVIDER_TYPES = ("cpu", "active-requests", "http_inflight", "memory", "uwsgi", "uwsgi-v2",
                  "gunicorn", "piscina", "worker-load", "arbitrary-promql")  # fmt: skip
IMPLEMENTED_PROVIDERS = {"cpu": "cpu", "active-requests": "http_inflight",
                         "http_inflight": "http_inflight"}  # fmt: skip
_PROVIDER_FIELDS: dict[str, Spec] = {
    "setpoint": Num(0, lo_exclusive=True, description="the load per task to keep: cpu a "
                    "fraction of its cpus (0.8), http_inflight requests in flight (1)"),
    "decision_policy": Enum(("proportional",), description="the HPA rule (bespoke: not here)"),
    "moving_average_window_seconds": Num(0, lo_exclusive=True,
                                         description="average the metric over this"),
}  # fmt: skip
_PROVIDER_UNUSED = frozenset(
    {
        "forecast_policy",
        "max_instances_alert_threshold",
        "metrics_query",
        "series_query",
        "target_type",
        "resources",
    }
)
AUTOSCALING = Obj(
    {
        # PaaSTA's format: a list of providers (paasport uses the first it implements)
        "metrics_providers": ListOf(Obj(
            {"type": Enum(PROVIDER_TYPES), **_PROVIDER_FIELDS,
             "desired_active_requests_per_replica": Num(0, lo_exclusive=True,
                                                        description="active-requests' setpoint")},
            unused=_PROVIDER_UNUSED, description="one metrics provider")),
        "scaledown_policies": Obj(
            {"stabilizationWindowSeconds": Num(0, description="scale down only to the highest "
                                               "count asked within this window (300)")},
            unused=frozenset({"selectPolicy", "policies"}),
            description="Kubernetes' HPA scaleDown behaviour (its window is used)"),
        # the flat form: one provider's fields beside metrics_provider
        "metrics_provider": Enum(PROVIDER_TYPES),
        **_PROVIDER_FIELDS,
        "stabilization_window_seconds": Num(0, description="scale down only to the highest "
                                            "count asked within this window (300)"),
    },
    unused=frozenset({"offset", "good_enough_window", "prometheus_adapter_config",
                      "use_prometheus", "use_resource_metrics"}) | _PROVIDER_UNUSED,
    description="how the instance scales between min_instances and max_instances",
)  # fmt: skip

INSTANCE_FIELDS: dict[str, Spec] = {
    "cpus": Num(0, lo_exclusive=True, description="CPU share (limit)"),
    "mem": Num(32, description="memory limit in MB"),
    "disk": Num(0, lo_exclusive=True, description="disk in MB"),
    "instances": Int(0, description="number of tasks"),
    "min_instances": Int(0, description="autoscaling range: lowest"),
    "max_instances": Int(0, description="autoscaling range: highest (set: autoscaled)"),
    "autoscaling": AUTOSCALING,
    "cmd": Str(what="a string (run by /bin/sh -c; use args for a list)"),
    "args": ListOf(Str(), description="command as a list (exec form)"),
    "env": MapOf(
        Str(what="a string (quote numbers and booleans)"),
        key_pattern=r"[A-Za-z_][A-Za-z0-9_.-]*",
        key_what="an environment variable name",
        description="environment variables",
    ),
    "addons": ADDONS,
    "deploy_group": Str(description="deploy.yaml step supplying the version; {cluster} etc."),
    "bounce_method": Enum(("crossover", "upthendown", "downthenup", "brutal")),
    "bounce_margin_factor": Num(0, 1, lo_exclusive=True),
    "bounce_ramp": ListOf(
        Num(0, 100, lo_exclusive=True),
        description="a crossover bounce gives the new version these shares of the traffic in "
        "turn, percent, e.g. [10, 50, 100]; old tasks stay until the last",
    ),
    "bounce_ramp_step_seconds": Num(lo=1, description="how long each bounce_ramp share lasts (30)"),
    "canary_weight_percent": Num(
        0,
        100,
        lo_exclusive=True,
        description="this instance's share of its namespace's traffic, in percent (a canary)",
    ),
    "healthcheck_mode": Enum(("http", "tcp", "cmd"), aliases={"https": "http"}),
    "healthcheck_uri": Str(HEALTHCHECK_URI, "a path starting with /"),
    "healthcheck_cmd": Str(description="run by /bin/sh -c inside the task"),
    "healthcheck_grace_period_seconds": Num(0),
    "healthcheck_interval_seconds": Num(0, lo_exclusive=True),
    "healthcheck_timeout_seconds": Num(0, lo_exclusive=True),
    "healthcheck_max_consecutive_failures": Int(1),
    "registrations": ListOf(
        Str(REGISTRATION, "a namespace name like service.namespace"), unique=True
    ),
    "container_port": Int(1, 65535),
    "net": Enum(("bridge", "host")),
    "extra_volumes": ListOf(VOLUME, description="host bind mounts"),
    "monitoring": Obj(
        MONITORING_FIELDS, unused=MONITORING_UNUSED, description="overrides of monitoring.yaml"
    ),
    "drain_method": Enum(
        ("proxy", "noop"), aliases={"hacheck": "proxy", "http": "proxy", "test": "noop"}
    ),
    "drain_timeout_seconds": Num(0),
    "backoff_seconds": Num(0),
    "replication_threshold": Int(0, 100, "PaaSTA's crit percent for the replication check"),
    "pool": Str(LITERAL, LITERAL_WHAT, description="run on nodes labelled pool=<this> (swarm)"),
    "constraints": ListOf(
        CONSTRAINT, description="placement rules replacing the defaults (the pool rule)"
    ),
    "extra_constraints": ListOf(CONSTRAINT, description="placement rules added to the defaults"),
}

# PaaSTA instance fields (paasta-spec.md §1.4, §1.5, §1.6) that paasport accepts and ignores.
INSTANCE_UNUSED = frozenset(
    {
        "cpu_burst_add",
        "cfs_period_us",
        "gpus",
        "deploy_blacklist",
        "deploy_whitelist",
        "secret_volumes",
        "persistent_volumes",
        "aws_ebs_volumes",
        "projected_sa_volumes",
        "uses_bulkdata",
        "cap_add",
        "privileged",
        "extra_docker_args",
        "iam_role",
        "iam_role_provider",
        "boto_keys",
        "crypto_keys",
        "datastore_credentials",
        "ssm_secrets",
        "cost_owner",
        "namespace",
        "role",
        "dependencies_reference",
        "sfn_autoscaling",
        "bounce_overprovision_factor",
        "bounce_health_params",
        "bounce_start_deadline",
        "bounce_priority",
        "drain_method_params",
        "lifecycle",
        "node_selectors",
        "node_selectors_preferred",
        "anti_affinity",
        "anti_affinity_preferred",
        "topology_spread_constraints",
        "weight",
        "routable_ip",
        "prometheus_shard",
        "prometheus_path",
        "prometheus_port",
        "is_istio_sidecar_injection_enabled",
        "enable_aws_lb_readiness_gate",
        "service_account_name",
        "fs_group",
        "fs_group_change_policy",
        "pod_management_policy",
        "unhealthy_pod_eviction_policy",
        "sidecar_resource_requirements",
        "autotune_limits",
        "host_port",
        "backoff_factor",
        "max_launch_delay_seconds",
        "monitoring_blacklist",
        "should_ping_for_unhealthy_pods",
        "marathon_shard",
        "previous_marathon_shards",
        "security",
        "accepted_resource_roles",
        "nerve_ns",
    }
)
INSTANCE = Obj(INSTANCE_FIELDS, unused=INSTANCE_UNUSED, description="one instance")

SERVICE_OWN_FIELDS: dict[str, Spec] = {
    "description": Str(description="what the service does"),
    "git_url": Nullable(
        Str(description="the service's git repo: URL, or a path (relative: to this folder)")
    ),
    "docker_registry": Str(description="registry for this service's images (host:port)"),
}
SERVICE_OWN_UNUSED = frozenset({"external_link", "cost_owner", "needs_puppet_help"})
# service.yaml: its own keys plus any instance field as a default for every instance (PaaSTA §1.2)
SERVICE = Obj(
    {**INSTANCE_FIELDS, **SERVICE_OWN_FIELDS},
    unused=INSTANCE_UNUSED | SERVICE_OWN_UNUSED,
    description="service.yaml: owner and build facts, and defaults for every instance",
)

NAMESPACE_FIELDS: dict[str, Spec] = {
    "proxy_port": Nullable(Int(19000, 21000, "HAProxy port on every host; null: no listener")),
    "mode": Enum(("http", "tcp"), aliases={"https": "http", "http2": "http"}),
    "healthcheck_mode": Enum(("http", "tcp"), aliases={"https": "http", "http2": "http"}),
    "healthcheck_uri": Str(HEALTHCHECK_URI, "a path starting with /"),
    "healthcheck_port": Int(0, 65535),
    "healthcheck_timeout_s": Num(0, 10),
    "timeout_connect_ms": Int(0, 60000),
    "timeout_server_ms": Int(0, 86400000),
    "timeout_client_ms": Int(0, 86400000),
    "retries": Int(0, 10),
    "balance": Enum(("roundrobin", "leastconn")),
    "extra_healthcheck_headers": MapOf(Str()),
}
NAMESPACE_UNUSED = frozenset(
    {
        "healthcheck_body_expect",
        "updown_timeout_s",
        "idle_timeout",
        "endpoint_timeouts",
        "allredisp",
        "lb_policy",
        "advertise",
        "discover",
        "extra_advertise",
        "extra_headers",
        "proxied_through",
        "clb_proxy",
        "is_proxy",
        "vip_upgrade",
        "choice_count",
        "chaos",
        "fixed_delay",
        "plugins",
        "allow_websocket_upgrade",
        "port",
        "monitoring",
    }
)
NAMESPACE = Obj(
    NAMESPACE_FIELDS,
    required=frozenset({"proxy_port"}),
    unused=NAMESPACE_UNUSED,
    description="one discovery namespace",
)

STEP_UNUSED = frozenset(
    {
        "trigger_next_step_manually",
        "display_step_for_confirmation",
        "confirmation_required",
        "disabled",
        "wait_for_deployment",
        "auto_abandon_delay",
        "auto_rollback_delay",
        "timeout",
        "warn",
        "command",
        "slack_notify",
        "ignore_failure",
        "notify_after_mark",
        "notify_after_good_deploy",
        "notify_after_auto_rollback",
        "notify_after_abort",
        "deployment_steps",
        "abandon_above_breakage_pct",
        "complete_below_breakage_pct",
        "prompt_after_abandon",
        "confirm_complete",
        "enable_automated_redeploys",
        "alertmanager_rollback",
        "alertmanager_rollback_dry_run",
        "alertmanager_poll_interval_s",
        "enable_crashloop_auto_rollback",
        "crashloop_rollback_percentage_threshold",
        "service_account",
    }
)
STEP = Obj(
    {
        "step": Str(STEP_NAME, "a step name (letters, digits, _ . -)"),
        "auto_rollback": Bool(
            description="roll the group back by itself when a new version crash-loops, fails "
            "its health checks or answers more errors than the old one"
        ),
        "auto_certify_delay": Num(
            lo=0, description="seconds after a deploy during which auto_rollback watches it (600)"
        ),
        "min_restarts_for_crashloop_rollback": Int(
            lo=1, description="crashes of the new version that make a crash loop (2)"
        ),
    },
    required=frozenset({"step"}),
    unused=STEP_UNUSED,
)
PARALLEL = Obj(
    {"parallel": ListOf(STEP)},
    required=frozenset({"parallel"}),
    unused=frozenset({"trigger_next_step_manually"}),
)


def _step(value: object) -> tuple[object, str | None]:
    # a step is `{step: ...}` or `{parallel: [...]}`; deploy.yaml checks each shape itself
    if isinstance(value, dict):
        return value, None
    return None, f"expected a mapping with step: or parallel:, found {describe(value)}"


DEPLOY = Obj(
    {
        "pipeline": ListOf(
            Custom(
                _step,
                {"anyOf": [STEP.schema(), PARALLEL.schema()]},
                description="a build/test step or a deploy group",
            )
        )
    },
    required=frozenset({"pipeline"}),
    unused=frozenset(
        {
            "production_deploy_group",
            "slack_channels",
            "slack_notify",
            "allowed_push_groups",
            "allow_no_verify_deploy",
            "default_deploy_strategy",
        }
    ),
    description="deploy.yaml: the ordered pipeline",
)

# Steps that build or test rather than deploy (paasta-spec.md §2.1); `command-*` too.
BUILD_STEPS = frozenset(
    {"itest", "itest-and-push-to-registry", "security-check", "push-to-registry"}
)

SYSTEM = Obj(
    {
        "clusters": MapOf(
            Obj(
                {
                    "engine": Enum(("docker", "swarm")),
                    "docker_host": Nullable(Str(description="Docker engine URL, e.g. unix://...")),
                    "api_url": Nullable(
                        Str(
                            r"https?://[^\s/]+(/\S*)?",
                            "an http(s) URL, e.g. http://10.0.0.5:5054",
                            description="the cluster's paasport API (read by the CLI elsewhere)",
                        )
                    ),
                }
            ),
            key_pattern=INSTANCE_NAME,
            key_what="a cluster name (lowercase letters, digits, _ and -)",
            description="cluster name -> engine",
        ),
        "local_cluster": Str(description="the cluster this host runs"),
        "soa_dir": Str(description="soa-configs directory (relative: to this file)"),
        "state_dir": Str(description="where paasport keeps its state"),
        "docker_registry": Nullable(Str(description="host:port of the image registry")),
        "instance_defaults": INSTANCE,
        "allowed_host_paths": ListOf(
            Str(r"/.*", "an absolute path"),
            description="host path prefixes extra_volumes may mount (/ and the Docker socket: "
            "only when listed exactly); default none",
        ),
        "allow_host_network": Bool(description="allow net: host (default false)"),
        "addons": Obj(
            {
                "postgres": Obj(
                    {
                        "url": SERVER_URL,
                        "task_host": Str(
                            description="the address tasks reach that server at (default: the "
                            "URL's host)"
                        ),
                        "backup_keep_days": Int(1, description="backups kept this long (7)"),
                        "bin_dir": Str(
                            r"/.*", "an absolute path", description="initdb, pg_ctl, pg_dump..."
                        ),
                    }
                )
            },
            description="add-ons: where their servers are",
        ),
        "discovery": Obj(
            {
                "registry": Enum(("sqlite", "zookeeper")),
                "zookeeper_hosts": Str(description="host:port[,host:port]"),
                "zookeeper_path": Str(r"/.*", "an absolute ZooKeeper path"),
                "zookeeper_session_timeout_seconds": Num(2, 60),
                "proxy_bind": ListOf(Str(), description="addresses HAProxy listens on"),
                "haproxy_bin": Str(),
            }
        ),
        "api": Obj(
            {
                "listen": Str(
                    LISTEN,
                    "HOST:PORT (e.g. 127.0.0.1:5054)",
                    description="where the HTTP API listens (default 127.0.0.1:5054)",
                ),
                "require_token_for_reads": Bool(
                    description="reads need a token too (default false: only mutations do)"
                ),
            }
        ),
        "monitoring": Obj(
            {
                "alertmanager_url": Nullable(Str()),
                "webhook_url": Nullable(Str()),
                "smtp_host": Nullable(Str()),
                "smtp_port": Int(1, 65535),
                "smtp_from": Nullable(Str()),
                "check_interval_seconds": Num(0, lo_exclusive=True),
            }
        ),
    },
    description="paasport.yaml: the system config",
)

# -- adhoc-<cluster>.yaml: one-off instance definitions (paasta-spec.md §1.7; no `instances`) --
ADHOC_FIELDS: dict[str, Spec] = {
    k: INSTANCE_FIELDS[k]
    for k in (
        "cpus", "mem", "disk", "cmd", "args", "env", "deploy_group", "net", "container_port",
        "extra_volumes", "pool", "constraints", "extra_constraints", "addons",
    )
}  # fmt: skip
ADHOC_UNUSED = frozenset(
    {
        "gpus", "boto_keys", "iam_role", "iam_role_provider", "fs_group", "fs_group_change_policy",
        "crypto_keys", "secret_volumes", "uses_bulkdata", "cap_add", "privileged",
        "cfs_period_us", "cpu_burst_add", "extra_docker_args", "role", "namespace", "docker_url",
        "node_selectors", "node_selectors_preferred",
    }
)  # fmt: skip
ADHOC = Obj(ADHOC_FIELDS, unused=ADHOC_UNUSED, description="one adhoc (one-off) instance")

# -- tron-<cluster>.yaml: scheduled jobs (paasta-spec.md §1.8) ---------------------------------
TRON_MONITORING_FIELDS: dict[str, Spec] = {
    k: MONITORING_FIELDS[k]
    for k in (
        "team", "runbook", "page", "tip", "notification_email", "realert_every",
        "slack_channels", "ticket", "priority", "description", "alert_after",
    )
}  # fmt: skip
TRON_MONITORING_UNUSED = frozenset(
    {
        "dependencies", "irc_channels", "project", "tags", "component",
        "check_that_every_day_has_a_successful_run", "page_for_expected_runtime",
        "check_oom_events", "issuetype",
    }
)  # fmt: skip
ACTION_FIELDS: dict[str, Spec] = {
    "command": Str(description="run by /bin/sh -c in a task of the service's image"),
    "requires": ListOf(Str(r"[^_].*", "an action name"), unique=True,
                       description="actions of the same job that must succeed first"),
    "retries": Int(0, description="run a failed action again this many times"),
    "retries_delay": Duration(description="wait this long before a retry (0)"),
    "executor": Enum(("paasta",), description="where it runs (paasport: the cluster's engine)"),
    "cpus": INSTANCE_FIELDS["cpus"],
    "mem": INSTANCE_FIELDS["mem"],
    "disk": INSTANCE_FIELDS["disk"],
    "env": INSTANCE_FIELDS["env"],
    "deploy_group": Str(description="deploy.yaml step whose sha the action runs"),
    "service": Str(SERVICE_NAME, "a service name", description="whose image (this service)"),
    "expected_runtime": Duration(description="alert when a run of it takes longer"),
    "extra_volumes": INSTANCE_FIELDS["extra_volumes"],
    "pool": INSTANCE_FIELDS["pool"],
}  # fmt: skip
ACTION_UNUSED = frozenset(
    {
        "cap_add", "constraints", "idempotent", "cost_owner", "service_account_name",
        "iam_role", "iam_role_provider", "node_selectors", "boto_keys", "crypto_keys",
        "ssm_secrets", "uses_bulkdata", "secret_volumes", "projected_sa_volumes", "cluster",
        "triggered_by", "trigger_downstreams", "on_upstream_rerun", "trigger_timeout",
        "aws_credentials", "max_runtime", "spark_args", "mrjob", "force_spark_resource_configs",
        "secret_env",
    }
)  # fmt: skip
ACTION = Obj(ACTION_FIELDS, required=frozenset({"command"}), unused=ACTION_UNUSED,
             description="one action of a job")  # fmt: skip
JOB_FIELDS: dict[str, Spec] = {
    "schedule": Custom(
        lambda v: (v, None) if isinstance(v, str | dict) else
        (None, f'expected a schedule like "cron 0 4 * * *" or "daily 04:00", found {describe(v)}'),
        {"anyOf": [{"type": "string"}, {"type": "object"}]},
        expected='a schedule like "cron 0 4 * * *" or "daily 04:00"',
        description='when it runs: "cron MIN HOUR DOM MON DOW", "daily HH:MM[:SS]", or '
        "{type: cron, value: ...}",
    ),
    "actions": Custom(
        lambda v: (v, None) if isinstance(v, dict | list) else
        (None, f"expected a mapping of action names to actions, found {describe(v)}"),
        {"anyOf": [{"type": "object"}, {"type": "array"}]},
        expected="a mapping of action names to actions",
        description="what it runs, each action a task",
    ),
    "monitoring": Obj(TRON_MONITORING_FIELDS, unused=TRON_MONITORING_UNUSED,
                      description="who is alerted when a run fails or runs late"),
    "enabled": Bool(description="false: never scheduled (job-run-now still runs it)"),
    "allow_overlap": Bool(description="start a scheduled run while the last one still runs"),
    "expected_runtime": Duration(description="alert when a run takes longer (default 24h)"),
    "time_zone": Str(description="the schedule's time zone (US/Pacific, like Tron)"),
    "service": Str(SERVICE_NAME, "a service name", description="whose image (this service)"),
    "deploy_group": Str(description="deploy.yaml step whose sha the actions run"),
    "node": Str(description="Tron's node pool (paasport: the cluster's engine)"),
}  # fmt: skip
JOB_UNUSED = frozenset(
    {
        "cluster", "queueing", "run_limit", "all_nodes", "cleanup_action", "max_runtime",
        "cost_owner",
    }
)  # fmt: skip
JOB = Obj(JOB_FIELDS, required=frozenset({"schedule", "actions"}), unused=JOB_UNUSED,
          description="one scheduled job")  # fmt: skip
