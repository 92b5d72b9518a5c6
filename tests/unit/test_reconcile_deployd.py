"""Unit tests of deployd's work queue, desired store and passes, over the fake engine."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path

from paasport.config.tree import SoaTree
from paasport.reconcile.deployd import Deployd, DeploydSettings, DesiredStore, WorkQueue
from paasport.reconcile.reconciler import ReconcilerSettings
from paasport.types import InstanceConfig, ServiceConfig

from fake_engine import FakeDrainer, FakeEngine, FakeEvents, FakeHealth

SHA = "b" * 40


def test_queue_never_hands_one_instance_to_two_workers() -> None:
    q = WorkQueue()
    stop = threading.Event()
    q.put(("web", "main"))
    assert q.get(stop, timeout=0) == ("web", "main")
    q.put(("web", "main"))  # while busy: parked
    assert q.get(stop, timeout=0) is None
    q.done(("web", "main"), None)
    assert q.get(stop, timeout=0) == ("web", "main")


def test_queue_earliest_due_wins_and_later_puts_do_not_delay() -> None:
    q = WorkQueue()
    stop = threading.Event()
    q.put(("a", "x"), delay=60)
    q.put(("a", "x"), delay=0)
    q.put(("a", "x"), delay=30)
    assert q.get(stop, timeout=0) == ("a", "x")
    q.done(("a", "x"), again_in=60)
    assert q.get(stop, timeout=0) is None
    assert q.pending() == 1


def _tree(soa_dir: Path, n: int, rejected: Sequence[str] = ()) -> SoaTree:
    instances = tuple(
        InstanceConfig(
            service="svc",
            cluster="test",
            instance=f"i{k:03d}",
            deploy_group="test.all",
            instances=1,
            drain_method="noop",
        )
        for k in range(n)
    )
    return SoaTree(
        soa_dir=soa_dir,
        services={"svc": ServiceConfig(name="svc")},
        instances=instances,
        namespaces={},
        monitoring={},
        problems=(),
        rejected_instances=frozenset(("svc", "test", r) for r in rejected),
    )


def _world(tmp_path: Path, n: int, rejected: Sequence[str] = ()) -> tuple[Deployd, FakeEngine]:
    (tmp_path / "svc").mkdir()
    (tmp_path / "svc" / "deployments.json").write_text(
        json.dumps(
            {
                "v2": {
                    "deployments": {
                        "test.all": {"docker_image": f"services-svc:paasta-{SHA}", "git_sha": SHA}
                    },
                    "controls": {},
                }
            }
        )
    )
    store = DesiredStore(tmp_path, "test", None, loader=lambda d, s: _tree(d, n, rejected))
    engine = FakeEngine()
    deployd = Deployd(
        store,
        engine,
        FakeHealth(),
        FakeDrainer(),
        FakeEvents(),
        DeploydSettings(reconciler=ReconcilerSettings(stop_grace_seconds=0)),
    )
    store.load_all()
    return deployd, engine


def test_noop_full_pass_lists_once_for_a_hundred_instances(tmp_path: Path) -> None:
    deployd, engine = _world(tmp_path, 100)
    deployd.full_pass()
    deployd.drain_queue()
    assert len(engine.live()) == 100
    deployd.drain_queue()  # settle the follow-up steps
    engine.calls.clear()
    assert deployd.full_pass() == 100
    deployd.drain_queue()
    assert engine.calls == {"list": 1}


def test_instances_gone_from_configs_are_removed_but_rejected_ones_kept(tmp_path: Path) -> None:
    deployd, engine = _world(tmp_path, 3)
    deployd.full_pass()
    deployd.drain_queue()
    assert len(engine.live()) == 3
    # i000 vanishes from the configs, i001 is left out for a config error
    deployd.store = DesiredStore(
        tmp_path, "test", None, loader=lambda d, s: _tree(d, 0, rejected=["i001"])
    )
    deployd.store.load_all()
    drainer = deployd.drainer
    assert isinstance(drainer, FakeDrainer)
    drainer.done.update(engine.tasks)  # every proxy acknowledged the drains
    for _ in range(5):
        deployd.full_pass()
        deployd.drain_queue()
    assert sorted(t.instance for t in engine.live()) == ["i001"]


def test_a_missing_soa_dir_never_removes_anything(tmp_path: Path) -> None:
    deployd, engine = _world(tmp_path, 2)
    deployd.full_pass()
    deployd.drain_queue()
    gone = tmp_path / "nowhere"
    deployd.store = DesiredStore(gone, "test", None, loader=lambda d, s: _tree(d, 0))
    deployd.full_pass()
    deployd.drain_queue()
    assert len(engine.live()) == 2
