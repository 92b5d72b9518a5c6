"""One reconciler per cluster: the ZooKeeper lock (many hosts) or a flock per state dir (one).

``platform.build`` takes it for ``paasport up`` and ``paasport deployd``. With the sqlite registry
a second process on the same state dir gets ``LockHeld`` naming the PID that holds the flock.
With ZooKeeper every deployd of the cluster queues in ``<zookeeper_path>/locks/deployd-<cluster>``
(``discovery.zk_lock``); the first acts, the others stand by (``ClusterLock`` is their gate,
checked by ``reconcile.deployd`` before each mutation) and the next takes over when its session
ends. ``decide`` is the pure rule; ``ClusterLock.poll`` does one round of bounded calls.
"""

from __future__ import annotations

import contextlib
import fcntl
import logging
import os
import socket
import threading
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from paasport.errors import PaasportError

log = logging.getLogger("paasport.lock")


class LockHeld(PaasportError):
    """Another process already reconciles this state dir and cluster."""

    exit_code = 1


def lock_path(state_dir: Path, cluster: str) -> Path:
    return Path(state_dir) / f"deployd-{cluster}.lock"


class ReconcilerLock:
    """Held from ``acquire`` until ``release`` (or the process ends: the kernel drops it)."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._fd: int | None = None

    def acquire(self) -> ReconcilerLock:
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o600)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            holder = os.pread(fd, 32, 0).decode(errors="replace").strip() or "unknown"
            os.close(fd)
            raise LockHeld(
                f"another paasport (PID {holder}) already reconciles this cluster with state "
                f"dir {self.path.parent} (lock {self.path}); stop it first"
            ) from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        self._fd = fd
        return self

    def release(self) -> None:
        if self._fd is not None:
            os.ftruncate(self._fd, 0)
            fcntl.flock(self._fd, fcntl.LOCK_UN)
            os.close(self._fd)
            self._fd = None

    # the gate of a one-host deployd: holding the flock is holding the cluster
    def is_open(self) -> bool:
        return self._fd is not None

    def why_closed(self) -> str:
        return "" if self._fd is not None else "the state dir lock was released"


def acquire_reconciler_lock(state_dir: Path, cluster: str) -> ReconcilerLock:
    """Take the lock or raise ``LockHeld`` at once (never waits)."""
    return ReconcilerLock(lock_path(state_dir, cluster)).acquire()


# ---- the cluster lock (ZooKeeper) ----------------------------------------------------------


class ContenderLike(Protocol):
    @property
    def node(self) -> str: ...

    @property
    def identifier(self) -> str: ...


@dataclass(frozen=True)
class Decision:
    """Where this process stands in the lock after one look at its contenders."""

    holding: bool
    holder: str  # the holder's identifier ("" none, or unknown)
    enter: bool  # queue up: no node of ours (of this session) is among the contenders


def decide(prefix: str, contenders: Sequence[ContenderLike] | None) -> Decision:
    """Pure: the first contender holds the lock; ours are the nodes named with ``prefix``
    (fresh for each session, so a node of a dead session never counts as ours). ``None``:
    not connected, or the contenders could not be read — never holding then."""
    if contenders is None:
        return Decision(False, "", False)
    ours = [c for c in contenders if c.node.startswith(prefix)]
    first = contenders[0] if contenders else None
    holding = first is not None and first.node.startswith(prefix)
    holder = first.identifier if first is not None else ""
    return Decision(holding, holder, enter=not ours)


def standby_line(holder: str) -> str:
    who = holder or "(unknown)"
    return f"standby: deployd {who} holds the cluster lock; taking over when it stops"


class SeatLike(Protocol):
    """discovery.zk_lock.ZkLockSeat, as the lock uses it (fakes in unit tests)."""

    @property
    def where(self) -> str: ...

    def session(self) -> int | None: ...

    def contenders(self) -> Sequence[ContenderLike]: ...

    def enter(self, prefix: str, identifier: str) -> str: ...

    def leave(self, nodes: tuple[str, ...]) -> None: ...

    def close(self) -> None: ...


def identifier() -> str:
    """``host/pid``: who holds the lock, as the standby's line names it."""
    return f"{socket.gethostname()}/{os.getpid()}"


class ClusterLock:
    """This process's seat in the cluster lock, kept by ``run`` (a thread) and read by the gate.

    ``is_open`` holds only while the last round found our node first AND the client is still
    connected with the session that node belongs to: a suspended connection or an expired
    session closes the gate at once, before ZooKeeper lets anyone else take the lock.
    """

    def __init__(
        self,
        open_seat: Callable[[], SeatLike],
        cluster: str,
        *,
        me: str | None = None,
        interval: float = 0.5,
        on_change: Callable[[str, str], None] | None = None,
    ) -> None:
        self.open_seat = open_seat
        self.cluster = cluster
        self.me = me or identifier()
        self.interval = interval
        self.on_change = on_change  # (level, message): the event log
        self._seat: SeatLike | None = None
        self._session: int | None = None
        self._prefix = ""
        self._holding = False
        self._holder = ""
        self._why = "not connected to zookeeper yet"
        self._said_standby = False
        self._reported_open = False
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)

    # ---- the gate ----

    def is_open(self) -> bool:
        seat = self._seat
        return self._holding and seat is not None and seat.session() == self._session

    def why_closed(self) -> str:
        return self._why

    @property
    def holder(self) -> str:
        return self._holder

    def wait_open(self, timeout: float) -> bool:
        with self._changed:
            self._changed.wait_for(self.is_open, timeout=timeout)
        return self.is_open()

    # ---- one round ----

    def poll(self) -> Decision:
        """Connect if needed, queue up if needed, look who holds the lock (bounded calls)."""
        decision = Decision(False, self._holder, False)
        try:
            decision = self._round()
        except PaasportError as err:
            self._holding = False
            self._why = f"the cluster lock cannot be read: {err}"
        self._report(decision)
        with self._changed:
            self._changed.notify_all()
        return decision

    def _round(self) -> Decision:
        if self._seat is None:
            self._seat = self.open_seat()
        seat = self._seat
        session = seat.session()
        if session is None:
            # a client the registry abandoned (a call past its deadline) reconnects only on
            # its next call: make one (bounded), then look again
            with contextlib.suppress(PaasportError):
                seat.contenders()
            session = seat.session()
        if session is None:
            self._holding = False
            self._why = f"not connected to {seat.where}"
            return decide(self._prefix, None)
        if session != self._session:  # a new session: our nodes went with the old one
            self._holding = False
            self._session = session
            self._prefix = uuid.uuid4().hex
        decision = decide(self._prefix, seat.contenders())
        if decision.enter:
            seat.enter(self._prefix, self.me)
            decision = decide(self._prefix, seat.contenders())
        self._holder = decision.holder
        self._holding = decision.holding
        self._why = "" if decision.holding else f"deployd {decision.holder} holds the cluster lock"
        return decision

    def _report(self, decision: Decision) -> None:
        """Say each change once: held, lost, standing by (behind whom)."""
        now_open, was_open = self.is_open(), self._reported_open
        self._reported_open = now_open
        if now_open and not was_open:
            self._said_standby = False
            self._say("info", f"holding the cluster lock of {self.cluster}: reconciling")
        elif was_open and not now_open:
            self._say(
                "warning",
                f"lost the cluster lock of {self.cluster} ({self._why}): no new action until "
                "it is held again",
            )
        elif not now_open and decision.holder and not self._said_standby:
            self._said_standby = True
            self._say("info", standby_line(decision.holder))

    def _say(self, level: str, message: str) -> None:
        log.log(logging.WARNING if level == "warning" else logging.INFO, "%s", message)
        if self.on_change is not None:
            try:
                self.on_change(level, message)
            except PaasportError as err:
                log.warning("cannot record event: %s", err)

    def run(self, stop: threading.Event) -> None:
        """Poll every ``interval`` until ``stop``, then leave the lock."""
        while not stop.is_set():
            self.poll()
            stop.wait(self.interval)

    def start(self, stop: threading.Event) -> threading.Thread:
        thread = threading.Thread(target=self.run, args=(stop,), name="cluster-lock", daemon=True)
        thread.start()
        return thread

    def release(self) -> None:
        """Leave the queue and end the session (the next contender takes over at once)."""
        seat, self._seat = self._seat, None
        self._holding = False
        if seat is None:
            return
        try:
            if self._prefix and seat.session() is not None:
                mine = tuple(c.node for c in seat.contenders() if c.node.startswith(self._prefix))
                seat.leave(mine)
        except PaasportError as err:
            log.debug("leaving the cluster lock: %s", err)
        finally:
            seat.close()
