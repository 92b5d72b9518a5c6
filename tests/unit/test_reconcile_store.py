"""The desired-state store's one last-good policy, as every consumer sees it (issues 9 and 10):
a broken instances file keeps hello routed (agent view), running (deployd) and monitored."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from paasport.config.system import ClusterConfig, SystemConfig
from paasport.discovery.agent import registrations_by_instance
from paasport.monitoring.events import Event
from paasport.monitoring.sources import StoreSource
from paasport.platform.lock import LockHeld, acquire_reconciler_lock
from paasport.reconcile.store import (
    DesiredStore,
    Loaded,
    ServiceDesired,
    accept,
    removes_every_instance,
)
from paasport.types import InstanceConfig, RollbackPolicy

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "soa-configs"
MAIN = InstanceConfig("web", "c1", "main", "c1.main", instances=3)
MAIN5 = InstanceConfig("web", "c1", "main", "c1.main", instances=5)
CANARY = InstanceConfig("web", "c1", "canary", "c1.canary")
BEFORE = ServiceDesired({"main": MAIN, "canary": CANARY}, registry="r1")

POLICY = [
    # (name, loaded, kept instances with their `instances`, registry, a problem added)
    ("a valid change applies", Loaded(ServiceDesired({"main": MAIN5}, registry="r2")),
     {"main": 5}, "r2", False),
    ("a rejected instance keeps its last good config",
     Loaded(ServiceDesired({"canary": CANARY}), rejected=frozenset({"main"}), incomplete=True),
     {"main": 3, "canary": 1}, "r1", False),
    ("an incomplete service keeps missing instances and its registry",
     Loaded(ServiceDesired({"main": MAIN5}, registry="r2"), incomplete=True),
     {"main": 5, "canary": 1}, "r1", False),
    ("a broken smartstack.yaml changes nothing",
     Loaded(ServiceDesired({"main": MAIN5}), smartstack_broken=True),
     {"main": 3, "canary": 1}, "r1", False),
    ("removing every instance at once is refused", Loaded(ServiceDesired({})),
     {"main": 3, "canary": 1}, "r1", True),
    ("unless the file is {} on purpose", Loaded(ServiceDesired({}), emptied_on_purpose=True),
     {}, None, False),
]  # fmt: skip


@pytest.mark.parametrize(("name", "loaded", "kept", "registry", "problem"), POLICY,
                         ids=[p[0] for p in POLICY])  # fmt: skip
def test_accept(
    name: str, loaded: Loaded, kept: dict[str, int], registry: str | None, problem: bool
) -> None:
    got, problems = accept(BEFORE, loaded, "web/instances-c1.yaml")
    assert {n: c.instances for n, c in got.instances.items()} == kept
    assert got.registry == registry
    assert bool(problems) == problem
    if problem:
        assert problems[0].startswith("web/instances-c1.yaml: ")


def test_a_reload_keeps_what_deploy_yaml_says_of_auto_rollback() -> None:
    policies = {"c1.main": RollbackPolicy(window_seconds=60)}
    loaded = Loaded(ServiceDesired({"main": MAIN5}, registry="r2", auto_rollback=policies))
    got, _ = accept(BEFORE, loaded, "web/instances-c1.yaml")
    assert got.auto_rollback == policies  # every field of the new load, not only some
    broken = Loaded(ServiceDesired({"main": MAIN5}), incomplete=True)
    kept, _ = accept(got, broken, "web/instances-c1.yaml")
    assert kept.auto_rollback == policies  # a broken deploy.yaml keeps the last good one


class _Events:
    def __init__(self) -> None:
        self.events: list[Event] = []

    def record(self, event: Event) -> None:
        self.events.append(event)


BREAKAGES = {
    "syntax error": b"main2: [unclosed\n",
    "non-UTF-8 byte": b"main:\n  instances: \xff\n",
    "empty file": b"",
}


@pytest.mark.parametrize("breakage", list(BREAKAGES), ids=list(BREAKAGES))
def test_a_broken_instances_file_keeps_hello_routed_running_and_monitored(
    tmp_path: Path, breakage: str
) -> None:
    soa = tmp_path / "soa"
    shutil.copytree(EXAMPLES, soa)
    system = SystemConfig(soa_dir=soa, clusters={"local": ClusterConfig("local")})
    events = _Events()
    store = DesiredStore(soa, "local", system=system, events=events)
    store.load_all()
    keys = {("hello", "main"), ("hello", "canary")}
    assert keys <= store.keys()
    path = soa / "hello" / "instances-local.yaml"
    if breakage == "empty file":
        path.write_bytes(b"")
    else:
        path.write_bytes(path.read_bytes() + BREAKAGES[breakage])
    store.reload_service("hello")

    namespaces, instances = store.agent_view()  # the discovery agent routes this
    routed = registrations_by_instance(instances, namespaces)
    assert routed[("hello", "main")] == ("hello.main",)
    assert routed[("hello", "canary")] == ("hello.main",)
    for key in keys:  # deployd keeps running it with its last good config
        config = store.config(key)
        assert config is not None and not store.keep_untouched(key)
    assert store.config(("hello", "main")).instances == 2  # type: ignore[union-attr]
    monitored = {(c.service, c.instance) for c in StoreSource(store).instances()}
    assert keys <= monitored  # so its alerts are not resolved as "no longer configured"
    assert store.problems()["hello"]
    assert [e.kind for e in events.events if e.service == "hello"] == ["config"]


def test_removing_the_service_folder_removes_its_instances(tmp_path: Path) -> None:
    soa = tmp_path / "soa"
    shutil.copytree(EXAMPLES, soa)
    system = SystemConfig(soa_dir=soa, clusters={"local": ClusterConfig("local")})
    store = DesiredStore(soa, "local", system=system)
    store.load_all()
    shutil.rmtree(soa / "hello")
    store.reload_service("hello")
    assert not [k for k in sorted(store.keys()) if k[0] == "hello"]
    assert not store.keep_untouched(("hello", "main"))


def test_a_second_reconciler_on_the_same_state_dir_refuses(tmp_path: Path) -> None:
    first = acquire_reconciler_lock(tmp_path, "local")
    try:
        with pytest.raises(LockHeld, match=r"PID \d+"):
            acquire_reconciler_lock(tmp_path, "local")
        acquire_reconciler_lock(tmp_path, "other").release()  # another cluster is fine
    finally:
        first.release()
    acquire_reconciler_lock(tmp_path, "local").release()  # free again once released


def test_a_second_deployd_gets_one_line_naming_the_pid(tmp_path: Path) -> None:
    import os
    import subprocess
    import sys

    soa, state = tmp_path / "soa", tmp_path / "state"
    soa.mkdir()
    held = acquire_reconciler_lock(state, "local")
    try:
        done = subprocess.run(
            [sys.executable, "-m", "paasport", "deployd", "--soa-dir", str(soa),
             "--state-dir", str(state)],
            capture_output=True, text=True, timeout=60, check=False,
        )  # fmt: skip
    finally:
        held.release()
    assert done.returncode == 1, done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1 and f"PID {os.getpid()}" in lines[0], done.stderr


@pytest.mark.parametrize(
    ("previous", "loaded", "refused"),
    [
        ({"main"}, Loaded(ServiceDesired()), True),
        ({"main"}, Loaded(ServiceDesired(), emptied_on_purpose=True), False),
        ({"main"}, Loaded(ServiceDesired(), incomplete=True), False),  # kept: files broken
        ({"main"}, Loaded(ServiceDesired(), rejected=frozenset({"main"})), False),
        ({"main", "canary"}, Loaded(ServiceDesired({"main": MAIN})), False),  # one goes
        (set(), Loaded(ServiceDesired()), False),  # nothing ran
    ],
)
def test_removes_every_instance_is_the_rule_accept_and_status_share(
    previous: set[str], loaded: Loaded, refused: bool
) -> None:
    assert removes_every_instance(previous, loaded) is refused
    before = ServiceDesired({name: MAIN for name in previous})
    kept, problems = accept(before, loaded, "f.yaml")
    assert (kept is before and bool(problems)) is refused
