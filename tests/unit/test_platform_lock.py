"""The cluster lock (platform.lock) and the gate deployd checks (reconcile.gate), over fakes."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import pytest
from test_reconcile_deployd import _world

from paasport.errors import RegistryUnavailable
from paasport.platform.lock import ClusterLock, Decision, decide, standby_line
from paasport.reconcile.deployd import Deployd
from paasport.reconcile.gate import GateClosed, GatedDrainer, GatedEngine
from paasport.types import AppSpec

from fake_engine import FakeDrainer, FakeEngine


@dataclass(frozen=True)
class C:
    node: str
    identifier: str


# (our prefix, contenders in sequence order or None) -> decision
DECIDE_CASES = [
    ("aa", None, Decision(False, "", False)),  # not connected / unreadable: never holding
    ("aa", [], Decision(False, "", True)),  # nobody queued: queue up
    ("aa", [C("aa__lock__01", "h1/1")], Decision(True, "h1/1", False)),
    ("aa", [C("bb__lock__01", "h2/2")], Decision(False, "h2/2", True)),  # we are not queued
    (
        "aa",
        [C("bb__lock__01", "h2/2"), C("aa__lock__02", "h1/1")],
        Decision(False, "h2/2", False),  # queued behind the holder: standby
    ),
    (
        "aa",
        [C("aa__lock__03", "h1/1"), C("bb__lock__04", "h2/2")],
        Decision(True, "h1/1", False),  # the holder died: we are first
    ),
    (
        "cc",  # a new session: the node of our old session (prefix aa) is not ours
        [C("aa__lock__01", "h1/1"), C("bb__lock__02", "h2/2")],
        Decision(False, "h1/1", True),
    ),
]


@pytest.mark.parametrize(("prefix", "contenders", "expect"), DECIDE_CASES)
def test_decide(prefix: str, contenders: list[C] | None, expect: Decision) -> None:
    assert decide(prefix, contenders) == expect


@dataclass
class FakeZk:
    """One ZooKeeper: a sequence counter and the lock's children."""

    children: list[C] = field(default_factory=list)
    seq: int = 0
    up: bool = True

    def expire(self, prefix_of: str) -> None:
        self.children = [c for c in self.children if not c.node.startswith(prefix_of)]


@dataclass
class FakeSeat:
    zk: FakeZk
    session_id: int | None = 1
    where: str = "zookeeper fake/paasport/locks/deployd-test"
    closed: bool = False

    def session(self) -> int | None:
        return self.session_id if self.zk.up else None

    def contenders(self) -> list[C]:
        if not self.zk.up:
            raise RegistryUnavailable("zookeeper fake: not connected")
        return list(self.zk.children)

    def enter(self, prefix: str, identifier: str) -> str:
        self.zk.seq += 1
        node = f"{prefix}__lock__{self.zk.seq:010d}"
        self.zk.children.append(C(node, identifier))
        return node

    def leave(self, nodes: tuple[str, ...]) -> None:
        self.zk.children = [c for c in self.zk.children if c.node not in nodes]

    def close(self) -> None:
        self.closed = True


def _lock(seat: FakeSeat, me: str, said: list[tuple[str, str]]) -> ClusterLock:
    return ClusterLock(
        lambda: seat, "test", me=me, on_change=lambda lvl, msg: said.append((lvl, msg))
    )


def test_first_holds_second_stands_by_and_takes_over_when_the_first_session_ends() -> None:
    zk = FakeZk()
    said: list[tuple[str, str]] = []
    first_seat, second_seat = FakeSeat(zk, 1), FakeSeat(zk, 2)
    first, second = _lock(first_seat, "h1/1", said), _lock(second_seat, "h2/2", said)
    first.poll()
    second.poll()
    second.poll()
    assert first.is_open() and not second.is_open()
    assert second.why_closed() == "deployd h1/1 holds the cluster lock"
    assert said.count(("info", standby_line("h1/1"))) == 1  # said once, not every round
    # the first is SIGKILLed: its session ends, ZooKeeper deletes its node
    zk.expire(first._prefix)
    second.poll()
    assert second.is_open()
    assert said[-1] == ("info", "holding the cluster lock of test: reconciling")


def test_a_suspended_connection_closes_the_gate_at_once_and_it_reopens_by_itself() -> None:
    zk = FakeZk()
    said: list[tuple[str, str]] = []
    seat = FakeSeat(zk, 1)
    lock = _lock(seat, "h1/1", said)
    lock.poll()
    assert lock.is_open()
    zk.up = False  # ZooKeeper cut: kazoo turns SUSPENDED, no poll needed to close the gate
    assert not lock.is_open()
    lock.poll()
    assert said[-1][0] == "warning" and "lost the cluster lock" in said[-1][1]
    zk.up = True  # back within the session timeout: the same session, the same node
    lock.poll()
    assert lock.is_open()


def test_a_new_session_never_reuses_the_old_node() -> None:
    zk = FakeZk()
    seat = FakeSeat(zk, 1)
    lock = _lock(seat, "h1/1", [])
    other = _lock(FakeSeat(zk, 2), "h2/2", [])
    lock.poll()
    other.poll()
    # our session expired (ZooKeeper deleted our node, the other took over) and kazoo
    # connected a new session: closed at once, then queued again behind the new holder
    zk.expire(lock._prefix)
    seat.session_id = 3
    assert not lock.is_open()
    other.poll()
    lock.poll()
    assert other.is_open() and not lock.is_open()
    assert [c.identifier for c in zk.children] == ["h2/2", "h1/1"]


def test_an_unreachable_zookeeper_at_start_is_retried() -> None:
    zk = FakeZk(up=False)
    opened: list[FakeSeat] = []

    def open_seat() -> FakeSeat:
        if not zk.up:
            raise RegistryUnavailable("zookeeper fake: connect: not connected within 5s")
        opened.append(FakeSeat(zk, 1))
        return opened[-1]

    lock = ClusterLock(open_seat, "test", me="h1/1")
    lock.poll()
    assert not lock.is_open() and "not connected within" in lock.why_closed()
    zk.up = True
    lock.poll()
    assert lock.is_open() and len(opened) == 1


class _AbandonedSeat(FakeSeat):
    """A registry client abandoned after a missed deadline: reconnects on the next call."""

    abandoned: bool = True

    def session(self) -> int | None:
        return None if self.abandoned else super().session()

    def contenders(self) -> list[C]:
        self.abandoned = False
        return super().contenders()


def test_an_abandoned_client_is_reconnected_by_the_next_round() -> None:
    seat = _AbandonedSeat(FakeZk(), 7)
    lock = _lock(seat, "h1/1", [])
    lock.poll()
    assert lock.is_open()


def test_release_leaves_the_queue_so_the_next_takes_over_at_once() -> None:
    zk = FakeZk()
    seat = FakeSeat(zk, 1)
    lock = _lock(seat, "h1/1", [])
    other = _lock(FakeSeat(zk, 2), "h2/2", [])
    lock.poll()
    other.poll()
    lock.release()
    assert seat.closed and not lock.is_open()
    other.poll()
    assert other.is_open()


class _Gate:
    def __init__(self, open_: bool) -> None:
        self.open = open_

    def is_open(self) -> bool:
        return self.open

    def why_closed(self) -> str:
        return "" if self.open else "deployd h1/1 holds the cluster lock"


SPEC = AppSpec(
    service="svc",
    instance="main",
    cluster="test",
    config_hash="c" * 40,
    git_sha="b" * 40,
    image="img",
    replicas=1,
)


@pytest.mark.parametrize(
    "mutation",
    [
        lambda e, d, t: e.create_app_version(SPEC, 1),
        lambda e, d, t: e.scale_app_version(SPEC, 2),
        lambda e, d, t: e.stop_task(t.task_id, 0),
        lambda e, d, t: e.delete_app_version("svc", "main", "c" * 40),
        lambda e, d, t: d.start(t, None),
        lambda e, d, t: d.forget(t),
    ],
)
def test_a_closed_gate_refuses_every_mutation(mutation: object) -> None:
    engine, drainer = FakeEngine(), FakeDrainer()
    engine.create_app_version(SPEC, 1)
    task = next(iter(engine.tasks.values()))
    before = dict(engine.tasks)
    gate = _Gate(False)
    with pytest.raises(GateClosed, match="deployd h1/1 holds the cluster lock"):
        mutation(GatedEngine(engine, gate), GatedDrainer(drainer, gate), task)  # type: ignore[operator]
    assert engine.tasks == before and not drainer.started
    gate.open = True
    mutation(GatedEngine(engine, gate), GatedDrainer(drainer, gate), task)  # type: ignore[operator]


def _deployd(tmp_path: Path, gate: _Gate) -> tuple[Deployd, FakeEngine]:
    deployd, engine = _world(tmp_path, 3)
    deployd.gate = gate
    return deployd, engine


def test_a_standby_deployd_does_nothing_and_acts_once_it_holds_the_lock(tmp_path: Path) -> None:
    gate = _Gate(False)
    deployd, engine = _deployd(tmp_path, gate)
    deployd.full_pass()
    deployd.drain_queue(timeout=1)
    assert engine.tasks == {}
    gate.open = True
    deployd.full_pass()
    deployd.drain_queue()
    assert len(engine.live()) == 3


def test_reopening_forgets_what_was_remembered(tmp_path: Path) -> None:
    gate = _Gate(True)
    deployd, _ = _deployd(tmp_path, gate)
    deployd.full_pass()
    deployd.drain_queue()
    assert deployd._memory
    gate.open = False
    assert deployd.step(("svc", "i000")) is None
    gate.open = True
    assert deployd.acting() and not deployd._memory
