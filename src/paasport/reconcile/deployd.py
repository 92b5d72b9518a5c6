"""deployd: keeps every instance of this host's cluster converging to its declared state.

``paasport deployd`` and ``paasport up`` (through ``paasport.platform``) build a ``Deployd`` and
call ``run_forever``. It subscribes to the desired-state store (``reconcile.store``, whose watcher
reloads only the changed service), runs an observer (one engine list call per sweep: enqueues
instances whose tasks changed, feeds the health monitor, and every ``full_pass_seconds`` enqueues
everything, removing instances gone from the configs), and workers that take one instance at a
time from the work queue (``reconcile.queue``) and call ``reconcile_instance``.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from typing import Protocol

from paasport.engine.base import Engine
from paasport.errors import PaasportError, TemporaryError
from paasport.monitoring import metrics
from paasport.monitoring.events import Event
from paasport.reconcile.drain import Drainer
from paasport.reconcile.gate import Gate, GatedDrainer, GatedEngine, OpenGate
from paasport.reconcile.queue import WorkQueue
from paasport.reconcile.reconciler import (
    EventSink,
    InstanceMemory,
    ReconcilerSettings,
    StepResult,
    reconcile_instance,
)
from paasport.reconcile.store import DesiredStore, Watcher
from paasport.types import AppVersion, Task

__all__ = ["Deployd", "DeploydSettings", "DesiredStore", "Watcher", "WorkQueue", "retry_delay"]

log = logging.getLogger("paasport.deployd")

Key = tuple[str, str]  # (service, instance)


class HealthMonitorLike(Protocol):
    """What deployd needs from engine.health.HealthMonitor."""

    def update(self, tasks: Sequence[Task], *, complete: bool = ...) -> object: ...

    def with_health(self, app_versions: Sequence[AppVersion]) -> tuple[AppVersion, ...]: ...


@dataclass(frozen=True)
class DeploydSettings:
    """Loop timings; tests and benchmarks shorten them."""

    workers: int = 4
    sweep_seconds: float = 0.5  # observer: one engine list call per sweep
    health_seconds: float = 0.05  # how often due health checks run (only due tasks are probed)
    full_pass_seconds: float = 30.0
    max_retry_seconds: float = 60.0
    reconciler: ReconcilerSettings = field(default_factory=ReconcilerSettings)


def retry_delay(attempts: int, asked: float, cap: float, backoff: bool = True) -> float:
    """Backoff after ``attempts`` temporary failures in a row: 1 s, 2 s, 4 s ... up to ``cap``
    (or what the error asked for, within the cap); without ``backoff`` (a registry outage) what
    the error asked for every time. The exponent is bounded, so an instance that fails for days
    never overflows the float (which would kill its worker thread)."""
    if not backoff:
        return min(cap, max(asked, 0.1))
    return min(cap, max(asked, 0.5 * 2.0 ** min(attempts, 32)))


@dataclass
class _Snapshot:
    started: float = 0.0
    by_key: Mapping[Key, tuple[AppVersion, ...]] = field(default_factory=dict)


class Deployd:
    """The reconcile loop of one host; ``run_forever`` until ``stop`` is set."""

    def __init__(
        self,
        store: DesiredStore,
        engine: Engine,
        health: HealthMonitorLike,
        drainer: Drainer,
        events: EventSink,
        settings: DeploydSettings | None = None,
        on_step: Callable[[Key, StepResult], None] | None = None,
        *,
        clock: Callable[[], float] = time.time,
        monotonic: Callable[[], float] = time.monotonic,
        gate: Gate | None = None,
    ) -> None:
        self.store = store
        self.gate: Gate = gate if gate is not None else OpenGate()
        self._was_open = True  # the memory below was built while the gate was open
        self.engine = engine
        self.health = health
        self.drainer = drainer
        self.events = events
        self.settings = settings or DeploydSettings()
        self.clock = clock  # wall time (events, task ages)
        self.monotonic = monotonic  # durations and deadlines
        self.queue = WorkQueue(monotonic)
        self.on_step = on_step
        # Shared by the worker threads (each key is held by one worker at a time, but the dicts
        # are not): every access goes through _state_lock.
        self._state_lock = threading.Lock()
        self._memory: dict[Key, InstanceMemory] = {}
        self._attempts: dict[Key, int] = {}
        self._last_error: dict[Key, str] = {}
        self._snapshot = _Snapshot()
        self._snap_lock = threading.Lock()
        self._fingerprints: dict[Key, tuple[tuple[str, str], ...]] = {}
        self._health_prints: dict[Key, tuple[tuple[str, str], ...]] = {}
        self._stop = threading.Event()
        # Set when a step changed something: the observer lists (and the health loop probes)
        # at once instead of waiting for the next sweep, so new tasks count as soon as they pass.
        self._kick_observer = threading.Event()
        self._kick_health = threading.Event()
        self._full_due = False  # the gate opened again: the observer does a full pass next

    # ---- one pass, usable without threads (tests, benchmarks) ----

    def observe(self) -> dict[Key, tuple[AppVersion, ...]]:
        """One engine list call; remember it as the snapshot workers may use."""
        started = self.clock()
        versions = self.engine.list_app_versions()
        by_key: dict[Key, list[AppVersion]] = {}
        for av in versions:
            by_key.setdefault((av.service, av.instance), []).append(av)
        frozen = {k: tuple(v) for k, v in by_key.items()}
        with self._snap_lock:
            self._snapshot = _Snapshot(started, frozen)
        return frozen

    def all_keys(self, observed: Iterable[Key]) -> set[Key]:
        return self.store.keys() | set(observed)

    def full_pass(self) -> int:
        """Enqueue every instance (configured or running); returns how many."""
        snapshot = self.observe()
        keys = self.all_keys(snapshot)
        for key in sorted(keys):
            self.queue.put(key)
        if self.acting():
            live = {t.task_id for vs in snapshot.values() for av in vs for t in av.tasks}
            swept = GatedDrainer(self.drainer, self.gate).sweep(live, self.clock())
            if swept:
                log.info("deployd: dropped %d old fence(s) of tasks lost with their hosts", swept)
        return len(keys)

    def acting(self) -> bool:
        """Whether the gate is open; on opening again every instance's memory is forgotten
        (drains, crash times: the holder meanwhile may have changed them) and a full pass
        enqueued, so the engine and the registry are read afresh."""
        open_now = self.gate.is_open()
        with self._state_lock:
            reopened = open_now and not self._was_open
            self._was_open = open_now
            if reopened:
                self._memory.clear()
        if reopened:
            log.info("deployd: acting again; reading every instance afresh")
            self._full_due = True
            self._kick_observer.set()
        return open_now

    def step(self, key: Key) -> StepResult | None:
        """One reconcile step for one instance (the caller guarantees nobody else runs it);
        None when there is nothing to do or the gate is closed (a standby does nothing)."""
        if not self.acting():
            return None
        with self._state_lock:
            memory = self._memory.setdefault(key, InstanceMemory())
        config = self.store.config(key)
        if config is None and self.store.keep_untouched(key):
            return None
        deployment = self.store.deployment(key)
        with self._snap_lock:
            snap = self._snapshot
        if snap.started > memory.last_step_finished:
            observed: Sequence[AppVersion] = snap.by_key.get(key, ())
        else:
            observed = self.engine.list_app_versions(key[0], key[1])
        started = self.monotonic()
        result = reconcile_instance(
            config,
            deployment,
            observed,
            GatedEngine(self.engine, self.gate),
            self.health,
            GatedDrainer(self.drainer, self.gate),
            self.events,
            self.clock(),
            memory=memory,
            settings=self.settings.reconciler,
            registry=self.store.registry(key[0]),
            service=key[0],
            instance=key[1],
        )
        memory.last_step_finished = self.clock()
        metrics.reconcile_duration_seconds.observe(self.monotonic() - started)
        return result

    def drain_queue(self, timeout: float = 60.0) -> None:
        """Run queued steps in this thread until the queue is empty (tests, benchmarks)."""
        stop = threading.Event()
        deadline = self.monotonic() + timeout
        while self.monotonic() < deadline:
            key = self.queue.get(stop, timeout=0.0)
            if key is None:
                return
            self._work(key)

    # ---- threads ----

    def run_forever(self, stop: threading.Event | None = None) -> None:
        """Start everything and block until ``stop`` is set (Ctrl-C in ``paasport up``)."""
        self._stop = stop or threading.Event()
        threading.Thread(target=self._wake_on_stop, name="deployd-stop", daemon=True).start()
        self.store.subscribe(self._enqueue)
        self.store.start(self._stop)  # a no-op when the platform started the shared store
        affected = self.store.keys()
        log.info(
            "deployd: %d instance(s) of cluster %s in %s",
            len(affected),
            self.store.cluster,
            self.store.soa_dir,
        )
        threads = [
            threading.Thread(target=self._observe_loop, name="deployd-observe", daemon=True),
            threading.Thread(target=self._health_loop, name="deployd-health", daemon=True),
        ]
        threads += [
            threading.Thread(target=self._worker_loop, name=f"deployd-worker-{i}", daemon=True)
            for i in range(self.settings.workers)
        ]
        for key in sorted(affected):
            self.queue.put(key)
        for t in threads:
            t.start()
        while not self._stop.wait(1.0):  # until stopped; a bounded wait keeps signals prompt
            pass
        for t in threads:
            t.join(timeout=15)

    def _wake_on_stop(self) -> None:
        while not self._stop.wait(1.0):
            pass
        self._kick_observer.set()
        self._kick_health.set()

    def _guard(self, what: str, fn: Callable[[], object]) -> None:
        try:
            fn()
        except PaasportError as err:
            log.warning("%s: %s", what, err)
        except Exception:  # a bug must not kill the loop; log it with its traceback
            log.exception("%s failed", what)

    def _enqueue(self, keys: set[Key]) -> None:
        """The store's change notification: every instance a reload touched gets a step."""
        for key in sorted(keys):
            self.queue.put(key)

    def _observe_loop(self) -> None:
        next_full = 0.0
        while not self._stop.is_set():
            now = self.monotonic()
            self.acting()  # notices a gate that opened again even when no step is queued
            if now >= next_full or self._full_due:
                self._full_due = False
                next_full = now + self.settings.full_pass_seconds
                self._guard("full pass", self.full_pass)
            else:
                self._guard("observe", self._sweep)
            self._kick_health.set()
            self._kick_observer.wait(self.settings.sweep_seconds)
            self._kick_observer.clear()

    def _sweep(self) -> None:
        snapshot = self.observe()
        for key, versions in snapshot.items():
            fp = tuple(sorted((t.task_id, t.state) for av in versions for t in av.tasks))
            if self._fingerprints.get(key) != fp:
                self._fingerprints[key] = fp
                self.queue.put(key)
        for key in set(self._fingerprints) - set(snapshot):
            del self._fingerprints[key]
            self.queue.put(key)

    def _health_loop(self) -> None:
        while not self._stop.is_set():
            self._guard("health checks", self._health_once)
            self._kick_health.wait(self.settings.health_seconds)
            self._kick_health.clear()

    def _health_once(self) -> None:
        with self._snap_lock:
            snap = self._snapshot
        tasks = [t for versions in snap.by_key.values() for av in versions for t in av.tasks]
        self.health.update(tasks, complete=True)  # every task of the cluster: forget the rest
        for key, versions in snap.by_key.items():
            fp = tuple(
                sorted(
                    (t.task_id, t.health)
                    for av in self.health.with_health(versions)
                    for t in av.tasks
                )
            )
            if self._health_prints.get(key) != fp:
                self._health_prints[key] = fp
                self.queue.put(key)

    def _worker_loop(self) -> None:
        while not self._stop.is_set():
            key = self.queue.get(self._stop)
            if key is not None:  # _work handles step errors; this guards the worker itself
                self._guard(f"worker on {key[0]}.{key[1]}", partial(self._work, key))

    def _work(self, key: Key) -> None:
        again: float | None = None
        if not self.acting():  # a standby: look again soon (the reopening enqueues everything)
            self.queue.done(key, 1.0)
            return
        try:
            result = self.step(key)
            with self._state_lock:
                self._attempts.pop(key, None)
                self._last_error.pop(key, None)
            if result is not None:
                again = result.again_in
                if result.performed:
                    self._kick_observer.set()
                if self.on_step is not None:
                    self.on_step(key, result)
        except TemporaryError as err:
            with self._state_lock:
                attempts = self._attempts[key] = self._attempts.get(key, 0) + 1
            again = retry_delay(attempts, err.delay, self.settings.max_retry_seconds, err.backoff)
            quiet = not err.backoff and attempts % 60 != 1  # retried each second: log once a minute
            log.log(
                logging.DEBUG if quiet else logging.WARNING,
                "%s.%s: %s (retry in %.1fs)",
                *key,
                err,
                again,
            )
        except PaasportError as err:
            again = self.settings.max_retry_seconds
            self._report(key, str(err))
        except Exception as err:  # a bug must not stop the other instances
            log.exception("%s.%s: reconcile failed", key[0], key[1])
            again = self.settings.max_retry_seconds
            self._report(key, f"internal error: {err!r}")
        finally:
            self.queue.done(key, again)

    def _report(self, key: Key, message: str) -> None:
        with self._state_lock:
            if self._last_error.get(key) == message:
                return
            self._last_error[key] = message
        log.error("%s.%s: %s", key[0], key[1], message)
        try:
            self.events.record(
                Event(
                    time=self.clock(),
                    level="error",
                    kind="reconcile",
                    service=key[0],
                    instance=key[1],
                    cluster=self.engine.cluster,
                    message=message,
                )
            )
        except PaasportError as err:
            log.warning("cannot record event: %s", err)
