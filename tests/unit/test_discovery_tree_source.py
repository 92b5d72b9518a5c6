"""A config error never takes running tasks out of the proxy: the agent's config source keeps
the last good config of a rejected instance or of a service with a broken smartstack.yaml."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from paasport.discovery.agent import TreeSource, keep_last_good
from paasport.types import InstanceConfig, Namespace

WEB_NS = Namespace("web", "main", 20001)
API_NS = Namespace("api", "main", 20002)
WEB = InstanceConfig("web", "c1", "main", "c1.main", instances=3, registrations=("web.main",))
WEB_NEW = InstanceConfig("web", "c1", "main", "c1.main", instances=5, registrations=("web.main",))
WEB_BARE = InstanceConfig("web", "c1", "main", "c1.main", instances=3)  # its namespace is gone
CANARY = InstanceConfig("web", "c1", "canary", "c1.canary", registrations=("web.main",))
API = InstanceConfig("api", "c1", "main", "c1.main", registrations=("api.main",))
PREVIOUS = ({"web.main": WEB_NS, "api.main": API_NS}, (WEB, CANARY, API))

CASES = [
    # (name, loaded, rejected, broken smartstack, namespaces, instances)
    (
        "a valid tree replaces the previous one",
        ({"web.main": WEB_NS, "api.main": API_NS}, (WEB_NEW, API)),
        set(),
        set(),
        {"web.main", "api.main"},
        [WEB_NEW, API],
    ),
    (
        "a removed instance goes away",
        ({"web.main": WEB_NS, "api.main": API_NS}, (WEB, API)),
        set(),
        set(),
        {"web.main", "api.main"},
        [WEB, API],
    ),
    (
        "a rejected instance keeps its last good config",
        ({"web.main": WEB_NS, "api.main": API_NS}, (CANARY, API)),
        {("web", "main")},
        set(),
        {"web.main", "api.main"},
        [WEB, CANARY, API],
    ),
    (
        "a broken smartstack.yaml keeps the service's namespaces and instances",
        ({"api.main": API_NS}, (WEB_BARE, API)),
        {("web", "canary")},  # its explicit registration no longer resolves
        {"web"},
        {"web.main", "api.main"},
        [WEB, CANARY, API],
    ),
    (
        "a rejected instance never seen before stays out",
        ({"api.main": API_NS}, (API,)),
        {("new", "main")},
        set(),
        {"api.main"},
        [API],
    ),
]


def key(c: InstanceConfig) -> tuple[str, str, int, tuple[str, ...]]:
    return (c.service, c.instance, c.instances, c.registrations)


@pytest.mark.parametrize(
    "name,loaded,rejected,broken,namespaces,instances", CASES, ids=[c[0] for c in CASES]
)
def test_keep_last_good(
    name: str,
    loaded: tuple[dict[str, Namespace], tuple[InstanceConfig, ...]],
    rejected: set[tuple[str, str]],
    broken: set[str],
    namespaces: set[str],
    instances: list[InstanceConfig],
) -> None:
    got_ns, got_instances = keep_last_good(loaded, PREVIOUS, frozenset(rejected), frozenset(broken))
    assert set(got_ns) == namespaces
    assert sorted(map(key, got_instances)) == sorted(map(key, instances))


def write(path: Path, text: str, stamp: float) -> None:
    path.write_text(text)
    os.utime(path, (stamp, stamp))


def test_tree_source_keeps_serving_a_broken_instance(tmp_path: Path) -> None:
    svc = tmp_path / "web"
    svc.mkdir()
    write(svc / "service.yaml", "description: x\n", 1000)
    write(svc / "deploy.yaml", "pipeline:\n  - step: c1.main\n", 1000)
    write(svc / "smartstack.yaml", "main:\n  proxy_port: 20001\n", 1000)
    write(svc / "instances-c1.yaml", "main:\n  instances: 3\n", 1000)
    source = TreeSource(tmp_path, "c1", min_interval=0.0)
    namespaces, instances = source()
    assert [(c.instance, c.instances, c.registrations) for c in instances] == [
        ("main", 3, ("web.main",))
    ]
    write(svc / "instances-c1.yaml", "main:\n  instances: three\n", 2000)
    assert source() == (namespaces, instances)
    write(svc / "smartstack.yaml", "main:\n  proxy_port: nope\n", 3000)
    assert source() == (namespaces, instances)
    write(svc / "smartstack.yaml", "main:\n  proxy_port: 20001\n", 4000)
    write(svc / "instances-c1.yaml", "main:\n  instances: 4\n", 4000)
    _, fixed = source()
    assert [(c.instance, c.instances) for c in fixed] == [("main", 4)]
