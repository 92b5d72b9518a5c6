"""Desired state (pure): InstanceConfig + DeploymentState -> the AppSpec an instance should run.

The reconciler calls ``desired_app`` once per instance and hands the AppSpec to ``bounce.plan``;
``config_hash`` names the app version, so anything that changes a container changes the hash.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
from dataclasses import fields, is_dataclass
from typing import Any

from paasport.config.placement import placement_rules
from paasport.types import AppSpec, DeploymentState, InstanceConfig

# Version of the hash recipe: bump it only on purpose (every instance bounces once).
HASH_RECIPE = "paasport-config-v1"
HASH_LENGTH = 12  # hex chars of sha256: 48 bits, ample for the versions of one instance

# Fields of InstanceConfig that never change the app version (PaaSTA §1.5: scaling and backoff)
# plus bookkeeping that does not reach the container. ``monitoring`` is left out as a whole, but
# its ``team`` reaches the container as PAASTA_MONITORING_TEAM and so enters through the env.
UNHASHED_FIELDS = frozenset(
    {
        "instances",
        "min_instances",
        "max_instances",
        "autoscaling",  # how the count moves: scaling never bounces
        "backoff_seconds",
        "canary_weight_percent",  # the proxy's weights: changed at runtime, never a bounce
        "bounce_ramp",  # how a bounce goes, not what runs
        "bounce_ramp_step_seconds",
        "addons",  # what reaches the task is the env they add (SECRET references)
        "source_file",
        "source_line",
        "monitoring",
    }
)


# Fields added after v1 that enter the hash only when set: an instance that does not use them
# keeps the hash it had before they existed (no fleet-wide bounce on upgrade).
HASHED_WHEN_SET: Mapping[str, object] = {"pool": None, "constraints": (), "secret_versions": ()}


def image_for(deployment: DeploymentState, registry: str | None = None) -> str:
    """The full image reference: deployments.json's ``docker_image`` behind the registry, if any."""
    if not registry:
        return deployment.docker_image
    return f"{registry.rstrip('/')}/{deployment.docker_image}"


def _number(value: float) -> str:
    """``1.0`` -> "1", ``0.5`` -> "0.5": what PaaSTA puts in PAASTA_RESOURCE_* variables."""
    return str(int(value)) if float(value).is_integer() else repr(float(value))


def standard_env(config: InstanceConfig, deployment: DeploymentState) -> dict[str, str]:
    """PaaSTA's injected variables followed by the user's ``env`` (which may override them)."""
    env = {
        "PAASTA_SERVICE": config.service,
        "PAASTA_INSTANCE": config.instance,
        "PAASTA_CLUSTER": config.cluster,
        "PAASTA_DEPLOY_GROUP": config.deploy_group,
        "PAASTA_DOCKER_IMAGE": deployment.docker_image,
        "PAASTA_GIT_SHA": deployment.git_sha[:8],
        "PAASTA_RESOURCE_CPUS": _number(config.cpus),
        "PAASTA_RESOURCE_MEM": _number(config.mem),
        "PAASTA_RESOURCE_DISK": _number(config.disk),
        "PAASTA_PORT": str(config.container_port),
        "PORT": str(config.container_port),
    }
    if config.monitoring.team:
        env["PAASTA_MONITORING_TEAM"] = config.monitoring.team
    if deployment.image_version:
        env["PAASTA_IMAGE_VERSION"] = deployment.image_version
    env.update(config.env)
    return env


def _plain(value: Any) -> Any:
    """Canonical JSON-ready form: dataclasses and mappings become sorted dicts, 1.0 equals 1."""
    if is_dataclass(value) and not isinstance(value, type):
        return {f.name: _plain(getattr(value, f.name)) for f in fields(value)}
    if isinstance(value, Mapping):
        return {str(k): _plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_plain(v) for v in value]
    if isinstance(value, float) and value.is_integer():
        return int(value)
    return value


def version_document(
    config: InstanceConfig, deployment: DeploymentState, registry: str | None = None
) -> dict[str, Any]:
    """What defines the app version, as plain JSON: ``config_hash`` hashes it, the reconciler
    records it with each version it starts, and ``paasport diff`` compares two of them.

    Covers every InstanceConfig field except UNHASHED_FIELDS (and HASHED_WHEN_SET ones left at
    their unset value), the full image (registry included), git sha, image_version,
    force_bounce and the final container env. Never covers
    ``instances`` nor ``desired_state``: scaling and stop/start never create a new version.
    """
    hashed = {
        f.name: _plain(getattr(config, f.name))
        for f in fields(config)
        if f.name not in UNHASHED_FIELDS
        and not (f.name in HASHED_WHEN_SET and getattr(config, f.name) == HASHED_WHEN_SET[f.name])
    }
    document = {
        "recipe": HASH_RECIPE,
        "config": hashed,
        "image": image_for(deployment, registry),
        "git_sha": deployment.git_sha,
        "image_version": deployment.image_version,
        "force_bounce": deployment.force_bounce,
        "env": standard_env(config, deployment),
    }
    return document


def hash_of(document: Mapping[str, Any]) -> str:
    """First 12 hex chars of sha256 over the canonical JSON of a ``version_document``."""
    text = json.dumps(document, sort_keys=True, separators=(",", ":"), ensure_ascii=True)
    return hashlib.sha256(text.encode()).hexdigest()[:HASH_LENGTH]


def config_hash(
    config: InstanceConfig, deployment: DeploymentState, registry: str | None = None
) -> str:
    """The name of the app version: ``hash_of(version_document(...))``."""
    return hash_of(version_document(config, deployment, registry))


def desired_app(
    config: InstanceConfig, deployment: DeploymentState, registry: str | None = None
) -> AppSpec:
    """The AppSpec of one instance; ``replicas`` is 0 when the deployment says ``stop``."""
    replicas = 0 if deployment.desired_state == "stop" else config.instances
    return AppSpec(
        service=config.service,
        instance=config.instance,
        cluster=config.cluster,
        image=image_for(deployment, registry),
        git_sha=deployment.git_sha,
        config_hash=config_hash(config, deployment, registry),
        replicas=replicas,
        cmd=config.cmd,
        args=config.args,
        env=standard_env(config, deployment),
        cpus=config.cpus,
        mem=config.mem,
        disk=config.disk,
        container_port=config.container_port,
        net=config.net,
        volumes=config.extra_volumes,
        healthcheck=config.healthcheck,
        deploy_group=config.deploy_group,
        placement=placement_rules(config.constraints),
    )
