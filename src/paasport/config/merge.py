"""Pure merging of validated config layers into typed values (InstanceConfig, Namespace, ...).

Called by ``config.tree`` with already-normalized dicts (``config.spec`` output); returns values
plus ``Issue``s whose paths are relative to the instance, which the tree maps to file lines.
Precedence (PaaSTA §1.2): system defaults < service.yaml < instance file; dicts merge deeply,
lists replace. Monitoring: service.yaml < monitoring.yaml < instance ``monitoring:``.
"""

from __future__ import annotations

import re
from collections.abc import Collection, Mapping, Sequence
from typing import Any

from paasport.config.addons import addon_env, addons_of, env_issues
from paasport.config.fields import BUILD_STEPS, IMPLEMENTED_PROVIDERS
from paasport.config.host_access import host_access_issues
from paasport.config.placement import effective_constraints
from paasport.config.spec import Issue
from paasport.types import (
    AutoscalingConfig,
    HealthCheck,
    InstanceConfig,
    MonitoringConfig,
    Namespace,
    RollbackPolicy,
    Volume,
)

DNS_LABEL = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?")


def deep_merge(*layers: Mapping[str, Any]) -> dict[str, Any]:
    """Later layers win; nested dicts merge key by key; any other value (lists too) replaces."""
    out: dict[str, Any] = {}
    for layer in layers:
        for key, value in layer.items():
            old = out.get(key)
            if isinstance(value, dict) and isinstance(old, dict):
                out[key] = deep_merge(old, value)
            else:
                out[key] = value
    return out


def sanitized_name(name: str) -> str:
    """The DNS-1123 form Kubernetes-style tooling uses: ``_`` -> ``--`` (PaaSTA's sanitiser)."""
    return name.replace("_", "--").lower()


def dns_label_problem(name: str) -> str | None:
    """Why ``name`` is not a DNS-1123 label once ``_`` becomes ``--``; None when it is."""
    clean = sanitized_name(name)
    if len(clean) > 63:
        return f'expected at most 63 characters once "_" becomes "--", found {len(clean)}'
    if not DNS_LABEL.fullmatch(clean):
        return f'expected a DNS-1123 label once "_" becomes "--", found "{clean}"'
    return None


def deploy_groups_of(pipeline: Sequence[Mapping[str, Any]]) -> tuple[str, ...]:
    """deploy.yaml steps that are deploy groups: not build/test steps; parallel blocks flatten."""
    groups: list[str] = []
    for step in pipeline:
        inner = step.get("parallel")
        steps = inner if isinstance(inner, list) else [step]
        for sub in steps:
            name = sub.get("step") if isinstance(sub, dict) else None
            if not isinstance(name, str):
                continue
            if name in BUILD_STEPS or name.startswith("command-"):
                continue
            if name not in groups:
                groups.append(name)
    return tuple(groups)


def rollback_policies(pipeline: Sequence[Mapping[str, Any]]) -> dict[str, RollbackPolicy]:
    """deploy group -> its auto_rollback policy, for the steps with ``auto_rollback: true``."""
    out: dict[str, RollbackPolicy] = {}
    for step in pipeline:
        inner = step.get("parallel")
        for sub in inner if isinstance(inner, list) else [step]:
            if not isinstance(sub, dict) or sub.get("auto_rollback") is not True:
                continue
            name = sub.get("step")
            if isinstance(name, str):
                out[name] = RollbackPolicy(
                    window_seconds=float(sub.get("auto_certify_delay", 600.0)),
                    min_restarts=int(sub.get("min_restarts_for_crashloop_rollback", 2)),
                )
    return out


def interpolate_deploy_group(
    template: str, service: str, cluster: str, instance: str
) -> str | None:
    try:
        return template.format(cluster=cluster, instance=instance, service=service)
    except (KeyError, IndexError, ValueError):
        return None


_MONITORING_SIMPLE = (
    "team",
    "page",
    "notification_email",
    "runbook",
    "tip",
    "alert_after",
    "ticket",
    "priority",
    "description",
    "replication_warn_percent",
)


def monitoring_config(merged: Mapping[str, Any], threshold: int | None = None) -> MonitoringConfig:
    """MonitoringConfig from merged monitoring values; ``threshold`` is an instance-level
    ``replication_threshold`` (PaaSTA puts it beside, not inside, ``monitoring``)."""
    kwargs: dict[str, Any] = {k: merged[k] for k in _MONITORING_SIMPLE if merged.get(k) is not None}
    if merged.get("slack_channels") is not None:
        kwargs["slack_channels"] = tuple(merged["slack_channels"])
    realert = merged.get("realert_every")
    if realert is not None and realert >= 0:  # -1 is PaaSTA's back-off: keep our default
        kwargs["realert_every"] = realert
    crit = merged.get("replication_crit_percent")
    if crit is None:
        crit = merged.get("replication_threshold")
    if crit is None:
        crit = threshold
    if crit is not None:
        kwargs["replication_crit_percent"] = float(crit)
    return MonitoringConfig(**kwargs)


def namespace_from(service: str, name: str, values: Mapping[str, Any]) -> Namespace:
    kwargs: dict[str, Any] = {k: v for k, v in values.items() if v is not None}
    kwargs.pop("proxy_port", None)
    mode = values.get("mode") or "http"
    kwargs["mode"] = mode
    kwargs["healthcheck_mode"] = values.get("healthcheck_mode") or mode
    if "extra_healthcheck_headers" in kwargs:
        kwargs["extra_healthcheck_headers"] = dict(kwargs["extra_healthcheck_headers"])
    return Namespace(service=service, name=name, proxy_port=values.get("proxy_port"), **kwargs)


def autoscaling_config(values: Mapping[str, Any]) -> tuple[AutoscalingConfig, list[Issue]]:
    """The ``autoscaling`` block of an autoscaled instance: PaaSTA's ``metrics_providers`` list
    (the first provider paasport measures) or the flat form; cpu at PaaSTA's setpoint when it
    names none. A provider paasport does not measure is a warning, and then the count holds."""
    issues: list[Issue] = []
    providers = list(values.get("metrics_providers") or ())
    if values.get("metrics_provider") is not None or not providers:
        providers.insert(0, {"type": values.get("metrics_provider") or "cpu", **{
            k: values[k] for k in ("setpoint", "decision_policy", "moving_average_window_seconds")
            if values.get(k) is not None}})  # fmt: skip
    chosen = None
    for i, provider in enumerate(providers):
        kind = provider.get("type") or "cpu"
        if kind in IMPLEMENTED_PROVIDERS:
            chosen = chosen or provider
            continue
        path = ("autoscaling", "metrics_providers", i, "type") if values.get(
            "metrics_providers") else ("autoscaling", "metrics_provider")  # fmt: skip
        issues.append(Issue(path, f'provider "{kind}" is not measured by paasport (it measures '
                                  "cpu and active-requests)", "warning"))  # fmt: skip
    stabilization = (values.get("scaledown_policies") or {}).get("stabilizationWindowSeconds")
    if values.get("stabilization_window_seconds") is not None:
        stabilization = values["stabilization_window_seconds"]
    extra = {} if stabilization is None else {"stabilization_window_seconds": stabilization}
    if chosen is None:
        return AutoscalingConfig(metrics_provider="none", **extra), issues
    setpoint = chosen.get("setpoint", chosen.get("desired_active_requests_per_replica"))
    return AutoscalingConfig(
        metrics_provider=IMPLEMENTED_PROVIDERS[chosen.get("type") or "cpu"],  # type: ignore[arg-type]
        setpoint=setpoint,
        moving_average_window_seconds=chosen.get("moving_average_window_seconds"),
        **extra,
    ), issues


_PLAIN_FIELDS = (
    "cpus",
    "mem",
    "disk",
    "instances",
    "min_instances",
    "max_instances",
    "cmd",
    "bounce_method",
    "bounce_margin_factor",
    "canary_weight_percent",
    "bounce_ramp_step_seconds",
    "container_port",
    "net",
    "drain_method",
    "drain_timeout_seconds",
    "backoff_seconds",
    "pool",
)


def build_instance(
    *,
    service: str,
    cluster: str,
    instance: str,
    layers: Sequence[Mapping[str, Any]],
    monitoring_file: Mapping[str, Any],
    namespaces: Mapping[str, Namespace],
    deploy_groups: tuple[str, ...] | None,
    source_file: str = "",
    source_line: int = 0,
    build: bool = True,
    allowed_host_paths: Sequence[str] = (),
    allow_host_network: bool = False,
    broken_smartstack: Collection[str] = (),
) -> tuple[InstanceConfig | None, list[Issue]]:
    """Merge the layers (system defaults, service.yaml, instance) and apply the instance rules.

    ``deploy_groups`` None means the service has no (valid) deploy.yaml. Returns the config, or
    None when any rule failed, and the issues (paths relative to the instance). ``build`` False:
    only check the rules (the layers already failed field validation and may miss keys).
    ``allowed_host_paths``/``allow_host_network``: the system config's host access policy.
    ``broken_smartstack``: services whose smartstack.yaml has errors (their namespaces are
    unknown, so a registration naming one says so).
    """
    issues: list[Issue] = []
    merged = deep_merge(*layers)
    issues.extend(host_access_issues(merged, allowed_host_paths, allow_host_network))

    constraints, placement_issues = effective_constraints(merged)
    issues.extend(placement_issues)
    addons = addons_of(merged)
    issues.extend(env_issues(merged.get("env") or {}, addons))

    if merged.get("cmd") is not None and merged.get("args") is not None:
        issues.append(Issue(("cmd",), "expected either cmd or args, found both"))
    lo, hi = merged.get("min_instances"), merged.get("max_instances")
    if lo is not None and hi is not None and hi < lo:
        issues.append(Issue(("max_instances",), f"expected >= min_instances ({lo}), found {hi}"))

    template = merged.get("deploy_group") or f"{cluster}.{instance}"
    deploy_group = interpolate_deploy_group(template, service, cluster, instance)
    if deploy_group is None:
        issues.append(
            Issue(
                ("deploy_group",),
                "expected only {cluster}, {instance} and {service} placeholders, "
                f'found "{template}"',
            )
        )
    elif deploy_groups is None:
        issues.append(
            Issue(
                ("deploy_group",),
                f'expected a deploy group listed in deploy.yaml, found "{deploy_group}" '
                "(the service has no valid deploy.yaml)",
            )
        )
    elif deploy_group not in deploy_groups:
        listed = ", ".join(deploy_groups) or "none"
        issues.append(
            Issue(
                ("deploy_group",),
                f'expected a deploy group listed in deploy.yaml ({listed}), found "{deploy_group}"',
            )
        )

    explicit = merged.get("registrations")
    if explicit is not None:
        registrations = tuple(r for r in explicit if r is not None)  # None: already reported
        for i, name in enumerate(explicit):
            if name is not None and name not in namespaces:
                owner = name.split(".", 1)[0]
                why = (
                    f" ({owner}/smartstack.yaml has errors: fix it first)"
                    if owner in broken_smartstack
                    else ""
                )
                issues.append(
                    Issue(
                        ("registrations", i),
                        "expected a namespace defined in some service's smartstack.yaml, "
                        f'found "{name}"{why}',
                    )
                )
    else:
        own = f"{service}.{instance}"
        registrations = (own,) if own in namespaces else ()

    first_ns = namespaces.get(registrations[0]) if registrations else None
    mode = merged.get("healthcheck_mode")
    if mode is None and first_ns is not None:
        mode = first_ns.healthcheck_mode
    uri = merged.get("healthcheck_uri")
    if uri is None:
        uri = first_ns.healthcheck_uri if first_ns is not None else "/status"
    if mode == "cmd" and not merged.get("healthcheck_cmd"):
        issues.append(
            Issue(
                ("healthcheck_cmd",), "expected a command when healthcheck_mode is cmd, found none"
            )
        )
    hc: dict[str, Any] = {"mode": mode, "uri": uri, "cmd": merged.get("healthcheck_cmd")}
    for key in ("grace_period_seconds", "interval_seconds", "timeout_seconds"):
        if merged.get(f"healthcheck_{key}") is not None:
            hc[key] = merged[f"healthcheck_{key}"]
    if merged.get("healthcheck_max_consecutive_failures") is not None:
        hc["max_consecutive_failures"] = merged["healthcheck_max_consecutive_failures"]

    mon = deep_merge(
        *(layer.get("monitoring") or {} for layer in layers[:-1]),
        monitoring_file,
        layers[-1].get("monitoring") or {} if layers else {},
    )

    if not build or any(i.severity == "error" for i in issues) or deploy_group is None:
        return None, issues

    kwargs: dict[str, Any] = {k: merged[k] for k in _PLAIN_FIELDS if merged.get(k) is not None}
    if merged.get("args") is not None:
        kwargs["args"] = tuple(merged["args"])
    if merged.get("bounce_ramp") is not None:
        kwargs["bounce_ramp"] = tuple(float(p) for p in merged["bounce_ramp"] if p is not None)
    if merged.get("env") is not None:
        kwargs["env"] = dict(merged["env"])
    if addons:  # their credentials: secrets the platform stores once it provisioned them
        kwargs["addons"] = addons
        kwargs["env"] = {**kwargs.get("env", {}), **addon_env(addons)}
    if merged.get("max_instances") is not None:
        kwargs["autoscaling"], auto_issues = autoscaling_config(merged.get("autoscaling") or {})
        issues.extend(auto_issues)
    if merged.get("extra_volumes") is not None:
        kwargs["extra_volumes"] = tuple(
            Volume(v["containerPath"], v["hostPath"], v.get("mode") or "RO")
            for v in merged["extra_volumes"]
        )
    config = InstanceConfig(
        service=service,
        cluster=cluster,
        instance=instance,
        deploy_group=deploy_group,
        healthcheck=HealthCheck(**hc),
        registrations=registrations,
        monitoring=monitoring_config(mon, merged.get("replication_threshold")),
        constraints=constraints,
        source_file=source_file,
        source_line=source_line,
        **kwargs,
    )
    return config, issues
