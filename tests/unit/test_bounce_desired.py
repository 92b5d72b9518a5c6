"""bounce.desired: what the config hash covers, the AppSpec and PaaSTA's injected env."""

from __future__ import annotations

import re
from dataclasses import replace
from typing import Any

import pytest

from paasport.bounce.desired import config_hash, desired_app, image_for, standard_env
from paasport.types import (
    Constraint,
    DeploymentState,
    HealthCheck,
    InstanceConfig,
    MonitoringConfig,
    Volume,
)

CONFIG = InstanceConfig(
    service="web",
    cluster="local",
    instance="main",
    deploy_group="local.main",
    instances=3,
    env={"GREETING": "hi"},
    healthcheck=HealthCheck(mode="http", uri="/status"),
)
DEPLOYMENT = DeploymentState(
    docker_image="services-web:paasta-0123456789abcdef0123456789abcdef01234567",
    git_sha="0123456789abcdef0123456789abcdef01234567",
)

# (what changes, config overrides, deployment overrides, registry)
UNCHANGED: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("instances", {"instances": 7}, {}),
    ("instances zero", {"instances": 0}, {}),
    ("min_instances", {"min_instances": 2}, {}),
    ("max_instances", {"max_instances": 9}, {}),
    ("backoff_seconds", {"backoff_seconds": 99.0}, {}),
    ("source position", {"source_file": "x.yaml", "source_line": 12}, {}),
    ("monitoring page", {"monitoring": MonitoringConfig(page=True, alert_after=5)}, {}),
    ("desired_state stop", {}, {"desired_state": "stop"}),
    ("cpus as int", {"cpus": 1}, {}),
]

CHANGED: list[tuple[str, dict[str, Any], dict[str, Any]]] = [
    ("image", {}, {"docker_image": "services-web:paasta-fedcba"}),
    ("git sha", {}, {"git_sha": "fedcba9876543210fedcba9876543210fedcba98"}),
    ("image_version", {}, {"image_version": "2"}),
    ("force_bounce", {}, {"force_bounce": "20240101T000000"}),
    ("cmd", {"cmd": "httpd -f"}, {}),
    ("args", {"args": ("httpd", "-f")}, {}),
    ("env value", {"env": {"GREETING": "hello"}}, {}),
    ("env added", {"env": {"GREETING": "hi", "X": "1"}}, {}),
    ("cpus", {"cpus": 0.5}, {}),
    ("mem", {"mem": 512.0}, {}),
    ("disk", {"disk": 2048.0}, {}),
    ("container_port", {"container_port": 8080}, {}),
    ("net", {"net": "host"}, {}),
    ("volumes", {"extra_volumes": (Volume("/data", "/srv/data", "RO"),)}, {}),
    ("healthcheck uri", {"healthcheck": HealthCheck(mode="http", uri="/health")}, {}),
    ("healthcheck mode", {"healthcheck": HealthCheck(mode="tcp")}, {}),
    ("healthcheck grace", {"healthcheck": HealthCheck(mode="http", grace_period_seconds=5)}, {}),
    ("deploy group", {"deploy_group": "prod.main"}, {}),
    ("bounce method", {"bounce_method": "brutal"}, {}),
    ("registrations", {"registrations": ("web.other",)}, {}),
    ("monitoring team", {"monitoring": MonitoringConfig(team="ops")}, {}),
    ("pool", {"pool": "batch"}, {}),
    ("constraints", {"constraints": (Constraint("hostname", "UNLIKE", "lab2"),)}, {}),
    ("spreading constraint", {"constraints": (Constraint("hostname", "UNIQUE"),)}, {}),
]


@pytest.mark.parametrize(("what", "config_changes", "deploy_changes"), UNCHANGED)
def test_hash_ignores(
    what: str, config_changes: dict[str, Any], deploy_changes: dict[str, Any]
) -> None:
    changed = config_hash(replace(CONFIG, **config_changes), replace(DEPLOYMENT, **deploy_changes))
    assert changed == config_hash(CONFIG, DEPLOYMENT), what


def test_hash_ignores_env_order() -> None:
    one = replace(CONFIG, env={"A": "1", "B": "2"})
    other = replace(CONFIG, env={"B": "2", "A": "1"})
    assert config_hash(one, DEPLOYMENT) == config_hash(other, DEPLOYMENT)


@pytest.mark.parametrize(("what", "config_changes", "deploy_changes"), CHANGED)
def test_hash_covers(
    what: str, config_changes: dict[str, Any], deploy_changes: dict[str, Any]
) -> None:
    changed = config_hash(replace(CONFIG, **config_changes), replace(DEPLOYMENT, **deploy_changes))
    assert changed != config_hash(CONFIG, DEPLOYMENT), what


def test_hash_covers_registry_and_is_12_hex() -> None:
    plain = config_hash(CONFIG, DEPLOYMENT)
    assert re.fullmatch(r"[0-9a-f]{12}", plain)
    assert config_hash(CONFIG, DEPLOYMENT, "127.0.0.1:5000") != plain
    assert config_hash(CONFIG, DEPLOYMENT) == plain  # stable across calls


# Hashes computed on the code before pool/constraints existed (commit a327a12): an instance
# that does not use placement keeps its exact hash, so an upgrade bounces nothing.
PRE_PLACEMENT_HASHES = [
    (CONFIG, None, "ec74f5a2b7c8"),
    (CONFIG, "127.0.0.1:5000", "be3fd45ecd7c"),
    (
        replace(
            CONFIG,
            cmd="httpd -f",
            cpus=0.5,
            extra_volumes=(Volume("/data", "/srv/data", "RW"),),
            registrations=("web.main",),
        ),
        None,
        "46d5bbc97fa1",
    ),
]


@pytest.mark.parametrize(("config", "registry", "expected"), PRE_PLACEMENT_HASHES)
def test_hash_without_placement_is_the_pre_placement_hash(
    config: InstanceConfig, registry: str | None, expected: str
) -> None:
    assert config_hash(config, DEPLOYMENT, registry) == expected
    assert config_hash(replace(config, pool=None, constraints=()), DEPLOYMENT, registry) == expected
    assert config_hash(replace(config, pool="batch"), DEPLOYMENT, registry) != expected


def test_pool_and_constraints_enter_the_hash_separately() -> None:
    pool = replace(CONFIG, pool="batch", constraints=(Constraint("pool", "LIKE", "batch"),))
    other_pool = replace(pool, pool="web", constraints=(Constraint("pool", "LIKE", "web"),))
    rules_only = replace(CONFIG, constraints=(Constraint("pool", "LIKE", "batch"),))
    hashes = {config_hash(c, DEPLOYMENT) for c in (CONFIG, pool, other_pool, rules_only)}
    assert len(hashes) == 4


@pytest.mark.parametrize(
    ("constraints", "placement"),
    [
        ((), ()),
        (
            (Constraint("pool", "LIKE", "batch"), Constraint("hostname", "UNLIKE", "lab2")),
            ("pool==batch", "hostname!=lab2"),
        ),
        ((Constraint("hostname", "UNIQUE"),), ()),
    ],
)
def test_desired_app_placement(
    constraints: tuple[Constraint, ...], placement: tuple[str, ...]
) -> None:
    assert desired_app(replace(CONFIG, constraints=constraints), DEPLOYMENT).placement == placement


@pytest.mark.parametrize(
    ("registry", "expected"),
    [
        (None, "services-web:paasta-x"),
        ("", "services-web:paasta-x"),
        ("127.0.0.1:5000", "127.0.0.1:5000/services-web:paasta-x"),
        ("registry.example/", "registry.example/services-web:paasta-x"),
    ],
)
def test_image_for(registry: str | None, expected: str) -> None:
    assert (
        image_for(replace(DEPLOYMENT, docker_image="services-web:paasta-x"), registry) == expected
    )


@pytest.mark.parametrize(
    ("desired_state", "instances", "replicas"),
    [("start", 3, 3), ("stop", 3, 0), ("start", 0, 0), ("stop", 0, 0)],
)
def test_replicas(desired_state: Any, instances: int, replicas: int) -> None:
    spec = desired_app(
        replace(CONFIG, instances=instances), replace(DEPLOYMENT, desired_state=desired_state)
    )
    assert spec.replicas == replicas


def test_desired_app_fields() -> None:
    config = replace(
        CONFIG, cmd="httpd -f -p 8888", extra_volumes=(Volume("/d", "/h", "RW"),), net="host"
    )
    spec = desired_app(config, DEPLOYMENT, "127.0.0.1:5000")
    assert spec.image == f"127.0.0.1:5000/{DEPLOYMENT.docker_image}"
    assert spec.config_hash == config_hash(config, DEPLOYMENT, "127.0.0.1:5000")
    assert (spec.service, spec.instance, spec.cluster) == ("web", "main", "local")
    assert spec.git_sha == DEPLOYMENT.git_sha
    assert spec.cmd == "httpd -f -p 8888"
    assert spec.volumes == (Volume("/d", "/h", "RW"),)
    assert spec.net == "host"
    assert spec.healthcheck == CONFIG.healthcheck
    assert spec.deploy_group == "local.main"
    assert spec.app_id == f"web.main.git01234567.config{spec.config_hash[:8]}"


@pytest.mark.parametrize(
    ("config_changes", "deploy_changes", "expected_extra"),
    [
        ({}, {}, {}),
        ({"monitoring": MonitoringConfig(team="ops")}, {}, {"PAASTA_MONITORING_TEAM": "ops"}),
        ({}, {"image_version": "7"}, {"PAASTA_IMAGE_VERSION": "7"}),
        ({"env": {"PORT": "9999", "GREETING": "hi"}}, {}, {"PORT": "9999"}),
        ({"cpus": 0.25, "mem": 128.5}, {}, {"PAASTA_RESOURCE_CPUS": "0.25"}),
    ],
)
def test_standard_env(
    config_changes: dict[str, Any], deploy_changes: dict[str, Any], expected_extra: dict[str, str]
) -> None:
    config = replace(CONFIG, **config_changes)
    env = standard_env(config, replace(DEPLOYMENT, **deploy_changes))
    expected = {
        "PAASTA_SERVICE": "web",
        "PAASTA_INSTANCE": "main",
        "PAASTA_CLUSTER": "local",
        "PAASTA_DEPLOY_GROUP": "local.main",
        "PAASTA_DOCKER_IMAGE": DEPLOYMENT.docker_image,
        "PAASTA_GIT_SHA": "01234567",
        "PAASTA_RESOURCE_CPUS": "1",
        "PAASTA_RESOURCE_MEM": "128.5" if config.mem == 128.5 else "4096",
        "PAASTA_RESOURCE_DISK": "1024",
        "PAASTA_PORT": "8888",
        "PORT": "8888",
        "GREETING": "hi",
        **expected_extra,
    }
    assert env == expected
    assert desired_app(config, replace(DEPLOYMENT, **deploy_changes)).env == expected
