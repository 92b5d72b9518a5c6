"""Unit tests of deployd's work queue, desired store and passes, over the fake engine."""

from __future__ import annotations

import json
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import pytest

from paasport.config.tree import SoaTree
from paasport.errors import EngineUnavailable, RegistryUnavailable, TemporaryError
from paasport.reconcile.deployd import (
    Deployd,
    DeploydSettings,
    DesiredStore,
    WorkQueue,
    retry_delay,
)
from paasport.reconcile.reconciler import ReconcilerSettings
from paasport.reconcile.watch import Change
from paasport.types import InstanceConfig, ServiceConfig, Task

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


@pytest.mark.parametrize(
    ("attempts", "asked", "expect"),
    [
        (1, 0.1, 1.0),
        (3, 0.1, 4.0),
        (3, 10.0, 10.0),  # the error asked for longer
        (7, 0.1, 60.0),  # capped
        (1, 500.0, 60.0),  # even what the error asked for is capped
        (5000, 0.1, 60.0),  # days of failures: no float overflow
    ],
)
def test_retry_delay(attempts: int, asked: float, expect: float) -> None:
    assert retry_delay(attempts, asked, cap=60.0) == expect


@pytest.mark.parametrize(
    ("attempts", "asked", "expect"),
    [
        (1, 1.0, 1.0),
        (6, 1.0, 1.0),  # with backoff: 32 s
        (5000, 1.0, 1.0),
        (3, 0.0, 0.1),  # never a busy loop
        (3, 500.0, 60.0),  # capped
    ],
)
def test_retry_delay_without_backoff(attempts: int, asked: float, expect: float) -> None:
    assert retry_delay(attempts, asked, cap=60.0, backoff=False) == expect


def test_registry_errors_retry_without_backoff_engine_errors_with() -> None:
    assert RegistryUnavailable("zookeeper: not connected").backoff is False
    assert EngineUnavailable("dockerd: no answer").backoff is True
    assert TemporaryError("x", backoff=False).backoff is False


class _OutageDrainer(FakeDrainer):
    """A RegistryDrainer stand-in whose registry is down until ``up_at`` on a virtual clock."""

    def __init__(self, up_at: float) -> None:
        super().__init__()
        self.now = 0.0
        self.up_at = up_at
        self.answered = 0

    def marked(self, tasks: Sequence[Task]) -> dict[str, float]:
        if self.now < self.up_at:
            raise RegistryUnavailable("zookeeper 127.0.0.1:2181/paasport: read: not connected")
        self.answered += 1
        return super().marked(tasks)


@pytest.mark.parametrize("outage", [5.0, 20.0, 33.0, 50.0])
def test_steps_resume_within_two_seconds_of_the_registry_answering(
    tmp_path: Path, outage: float
) -> None:
    """A bounce begun during a ZooKeeper outage resumed 22-30 s after ZooKeeper returned: the
    backoff had grown to 32 s. Time is virtual: each retry moves it by the delay deployd chose."""
    deployd, engine = _world(tmp_path, 1)
    for _ in range(2):  # deploy, then settle
        deployd.full_pass()
        deployd.drain_queue()
    assert len(engine.live()) == 1
    deployd.observe()
    drainer = _OutageDrainer(up_at=outage)
    deployd.drainer = drainer
    deployd._memory.clear()  # deployd restarted: it asks the registry for drains begun before
    key = ("svc", "i000")
    delays: list[float] = []
    done = deployd.queue.done

    def record(k: tuple[str, str], again_in: float | None) -> None:
        delays.append(again_in or 0.0)
        done(k, again_in)

    deployd.queue.done = record  # type: ignore[method-assign]
    for _ in range(200):
        deployd._work(key)
        if drainer.answered:
            break
        drainer.now += delays[-1]
    assert drainer.answered, f"never resumed: {delays}"
    lag = drainer.now - outage
    assert 0 <= lag <= 2.0, f"resumed {lag:.1f}s after the registry answered (delays {delays})"
    assert max(delays[:-1]) <= 2.0


class _FlakyEngine(FakeEngine):
    def list_app_versions(self, service: str | None = None, instance: str | None = None) -> Any:
        raise TemporaryError("engine busy", delay=0.1)


def test_an_instance_failing_for_days_is_still_retried(tmp_path: Path) -> None:
    """The retry delay once overflowed after ~1000 attempts, killing the worker thread and
    never requeueing the instance."""
    deployd, _ = _world(tmp_path, 1)
    deployd.engine = _FlakyEngine()
    key = ("svc", "i000")
    deployd._attempts[key] = 5000
    deployd._work(key)
    assert deployd.queue.pending() == 1  # requeued, at the cap
    assert deployd._attempts[key] == 5001


class _Watcher:
    def __init__(self, script: list[object], stop: threading.Event) -> None:
        self.script, self.stop, self.closed = script, stop, False

    def changes(self, timeout: float) -> list[Change]:
        if not self.script:
            self.stop.set()
            return []
        step = self.script.pop(0)
        if isinstance(step, Exception):
            raise step
        assert isinstance(step, list)
        return step

    def close(self) -> None:
        self.closed = True


def test_a_failing_watcher_is_rebuilt_and_changes_still_count(tmp_path: Path) -> None:
    """A watcher error once ended the watch thread silently: no config change or deploy was
    noticed again until deployd restarted."""
    deployd, _ = _world(tmp_path, 2)
    deployd.store.subscribe(deployd._enqueue)
    deployd.store.retry_seconds = 0.0
    stop = threading.Event()
    first = _Watcher([OSError("inotify read failed")], stop)
    second = _Watcher([[Change("svc", only_deployments=True)]], stop)
    watchers = [first, second]
    deployd.store.watcher_factory = lambda soa_dir: watchers.pop(0)
    deployd.store.run_watcher(stop)
    assert first.closed and second.closed and not watchers
    keys = set()
    while (key := deployd.queue.get(stop=threading.Event(), timeout=0)) is not None:
        keys.add(key)
    assert keys == {("svc", "i000"), ("svc", "i001")}
