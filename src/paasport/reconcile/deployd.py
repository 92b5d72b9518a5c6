"""deployd: keeps every instance of this host's cluster converging to its declared state.

``paasport deployd`` and ``paasport up`` build a ``Deployd`` and call ``run_forever``. Threads: a
watcher (inotify on the tree: reloads only the changed service), an observer (one engine list
call per sweep: enqueues instances whose tasks changed, feeds the health monitor, and every
``full_pass_seconds`` enqueues everything, removing instances gone from the configs), and workers
that take one instance at a time from the work queue and call ``reconcile_instance``.
"""

from __future__ import annotations

import heapq
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Protocol

from paasport.config.system import SystemConfig
from paasport.config.tree import SoaTree, load_tree
from paasport.deploy.deployments import Deployments, read_deployments
from paasport.engine.base import Engine
from paasport.errors import ConfigError, PaasportError, TemporaryError
from paasport.monitoring import metrics
from paasport.monitoring.events import Event
from paasport.reconcile.drain import Drainer
from paasport.reconcile.reconciler import (
    EventSink,
    InstanceMemory,
    ReconcilerSettings,
    StepResult,
    reconcile_instance,
)
from paasport.reconcile.watch import Change, TreeWatcher
from paasport.types import AppVersion, DeploymentState, InstanceConfig, Task

log = logging.getLogger("paasport.deployd")

Key = tuple[str, str]  # (service, instance)


class Watcher(Protocol):
    """What deployd needs from reconcile.watch.TreeWatcher."""

    def changes(self, timeout: float) -> list[Change]: ...

    def close(self) -> None: ...


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


class WorkQueue:
    """Instances due for a step, earliest first; an instance is never handed to two workers.

    An instance put while a worker holds it is parked and requeued when that worker is done.
    """

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Key]] = []
        self._due: dict[Key, float] = {}
        self._busy: set[Key] = set()
        self._parked: dict[Key, float] = {}
        self._seq = 0

    def put(self, key: Key, delay: float = 0.0) -> None:
        due = time.monotonic() + delay
        with self._cond:
            if key in self._busy:
                self._parked[key] = min(due, self._parked.get(key, due))
                return
            self._push(key, due)

    def _push(self, key: Key, due: float) -> None:
        current = self._due.get(key)
        if current is not None and current <= due:
            return
        self._due[key] = due
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, key))
        self._cond.notify()

    def get(self, stop: threading.Event, timeout: float = 0.5) -> Key | None:
        """The next due instance (now marked busy), or None after ``timeout``/on stop."""
        deadline = time.monotonic() + timeout
        with self._cond:
            while not stop.is_set():
                now = time.monotonic()
                while self._heap:
                    due, _, key = self._heap[0]
                    if self._due.get(key) != due:
                        heapq.heappop(self._heap)  # superseded by an earlier put
                        continue
                    break
                if self._heap and self._heap[0][0] <= now:
                    _, _, key = heapq.heappop(self._heap)
                    del self._due[key]
                    self._busy.add(key)
                    return key
                wait = deadline - now
                if self._heap:
                    wait = min(wait, self._heap[0][0] - now)
                if wait <= 0 and now >= deadline:
                    return None
                self._cond.wait(max(wait, 0.001))
        return None

    def done(self, key: Key, again_in: float | None) -> None:
        with self._cond:
            self._busy.discard(key)
            due = self._parked.pop(key, None)
            if again_in is not None:
                want = time.monotonic() + again_in
                due = want if due is None else min(due, want)
            if due is not None:
                self._push(key, due)

    def pending(self) -> int:
        with self._cond:
            return len(self._due) + len(self._busy) + len(self._parked)


TreeLoader = Callable[[Path, Sequence[str] | None], SoaTree]


class DesiredStore:
    """The configs and deployments of the local cluster, reloaded one service at a time."""

    def __init__(
        self,
        soa_dir: Path,
        cluster: str,
        default_registry: str | None,
        loader: TreeLoader | None = None,
        system: SystemConfig | None = None,
    ) -> None:
        self.soa_dir = soa_dir
        self.cluster = cluster
        self.default_registry = default_registry
        self._loader: TreeLoader = loader or (
            lambda soa, services: load_tree(soa, services, system=system)
        )
        self._lock = threading.Lock()
        self._configs: dict[Key, InstanceConfig] = {}
        # Instances left out for config errors, and services whose instance list may be
        # incomplete: what runs for them is left untouched, never removed.
        self._rejected: set[Key] = set()
        self._incomplete: set[str] = set()
        self._registries: dict[str, str | None] = {}
        self._deployments: dict[str, Deployments | None] = {}

    def load_all(self) -> set[Key]:
        try:
            tree = self._loader(self.soa_dir, None)
        except ConfigError as err:
            log.error("cannot load %s: %s", self.soa_dir, err)
            return set()
        services = set(tree.services) | {c.service for c in tree.instances}
        services |= set(tree.incomplete_services)
        with self._lock:
            self._configs.clear()
        affected: set[Key] = set()
        for service in sorted(services):
            affected |= self._absorb(service, tree)
            affected |= self.reload_deployments(service)
        return affected

    def reload_service(self, service: str) -> set[Key]:
        """Reload one service's folder; returns its instances before and after."""
        try:
            tree = self._loader(self.soa_dir, [service])
        except ConfigError as err:
            log.error("%s: keeping the previous config: %s", service, err)
            with self._lock:
                self._incomplete.add(service)
            return set()
        return self._absorb(service, tree) | self.reload_deployments(service)

    def _absorb(self, service: str, tree: SoaTree) -> set[Key]:
        configs = {
            (c.service, c.instance): c
            for c in tree.instances_for(service=service, cluster=self.cluster)
        }
        rejected = {
            (s, i) for s, c, i in tree.rejected_instances if s == service and c == self.cluster
        }
        for problem in tree.problems:
            if problem.severity == "error" and Path(problem.file).parent.name == service:
                log.error("config error (what runs is left as it is): %s", problem)
        svc = tree.services.get(service)
        with self._lock:
            before = {k for k in self._configs if k[0] == service}
            for key in before:
                del self._configs[key]
            self._configs.update(configs)
            self._rejected = {k for k in self._rejected if k[0] != service} | rejected
            if service in tree.incomplete_services:
                self._incomplete.add(service)
            else:
                self._incomplete.discard(service)
            self._registries[service] = (svc.docker_registry if svc else None) or (
                self.default_registry
            )
        return before | set(configs)

    def reload_deployments(self, service: str) -> set[Key]:
        try:
            deployments = read_deployments(self.soa_dir, service)
        except ConfigError as err:
            log.error("%s: keeping the previous deployments: %s", service, err)
            return set()
        with self._lock:
            self._deployments[service] = deployments
            return {k for k in self._configs if k[0] == service}

    def config(self, key: Key) -> InstanceConfig | None:
        with self._lock:
            return self._configs.get(key)

    def deployment(self, key: Key) -> DeploymentState | None:
        with self._lock:
            config = self._configs.get(key)
            deployments = self._deployments.get(key[0])
        if config is None or deployments is None:
            return None
        return deployments.state_for(self.cluster, key[1], config.deploy_group)

    def registry(self, service: str) -> str | None:
        with self._lock:
            return self._registries.get(service, self.default_registry)

    def keep_untouched(self, key: Key) -> bool:
        """An instance missing from the configs is removed only when it is really gone: the
        soa-configs folder exists, and the instance was not left out for a config error."""
        if not self.soa_dir.is_dir():
            return True
        with self._lock:
            if key in self._configs:
                return False
            return key in self._rejected or key[0] in self._incomplete

    def keys(self) -> set[Key]:
        with self._lock:
            return set(self._configs)


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
    ) -> None:
        self.store = store
        self.engine = engine
        self.health = health
        self.drainer = drainer
        self.events = events
        self.settings = settings or DeploydSettings()
        self.queue = WorkQueue()
        self.on_step = on_step
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
        self.watcher_factory: Callable[[Path], Watcher] = TreeWatcher

    # ---- one pass, usable without threads (tests, benchmarks) ----

    def observe(self) -> dict[Key, tuple[AppVersion, ...]]:
        """One engine list call; remember it as the snapshot workers may use."""
        started = time.time()
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
        keys = self.all_keys(self.observe())
        for key in sorted(keys):
            self.queue.put(key)
        return len(keys)

    def step(self, key: Key) -> StepResult | None:
        """One reconcile step for one instance (the caller guarantees nobody else runs it)."""
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
        started = time.monotonic()
        result = reconcile_instance(
            config,
            deployment,
            observed,
            self.engine,
            self.health,
            self.drainer,
            self.events,
            time.time(),
            memory=memory,
            settings=self.settings.reconciler,
            registry=self.store.registry(key[0]),
            service=key[0],
            instance=key[1],
        )
        memory.last_step_finished = time.time()
        metrics.reconcile_duration_seconds.observe(time.monotonic() - started)
        return result

    def drain_queue(self, timeout: float = 60.0) -> None:
        """Run queued steps in this thread until the queue is empty (tests, benchmarks)."""
        stop = threading.Event()
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            key = self.queue.get(stop, timeout=0.0)
            if key is None:
                return
            self._work(key)

    # ---- threads ----

    def run_forever(self, stop: threading.Event | None = None) -> None:
        """Start everything and block until ``stop`` is set (Ctrl-C in ``paasport up``)."""
        self._stop = stop or threading.Event()
        threading.Thread(target=self._wake_on_stop, name="deployd-stop", daemon=True).start()
        affected = self.store.load_all()
        log.info(
            "deployd: %d instance(s) of cluster %s in %s",
            len(self.store.keys()),
            self.store.cluster,
            self.store.soa_dir,
        )
        threads = [
            threading.Thread(target=self._watch_loop, name="deployd-watch", daemon=True),
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
        self._stop.wait()
        for t in threads:
            t.join(timeout=15)

    def _wake_on_stop(self) -> None:
        self._stop.wait()
        self._kick_observer.set()
        self._kick_health.set()

    def _guard(self, what: str, fn: Callable[[], object]) -> None:
        try:
            fn()
        except PaasportError as err:
            log.warning("%s: %s", what, err)
        except Exception:  # a bug must not kill the loop; log it with its traceback
            log.exception("%s failed", what)

    def _watch_loop(self) -> None:
        """Reload what changed. A watcher that fails is rebuilt, and everything is reloaded
        (changes may have been missed meanwhile): a silently dead watcher thread would leave
        every later config change and deploy unnoticed."""
        failed = False
        while not self._stop.is_set():
            try:
                watcher = self.watcher_factory(self.store.soa_dir)
            except Exception:
                log.exception("cannot watch %s; retrying", self.store.soa_dir)
                self._stop.wait(self.settings.sweep_seconds)
                continue
            try:
                if failed:
                    self._guard("reloading every service", self._reload_everything)
                while not self._stop.is_set():
                    for change in watcher.changes(timeout=0.5):
                        self._guard(f"reloading {change.service}", partial(self._absorb, change))
            except Exception:
                log.exception("watching %s failed; watching it again", self.store.soa_dir)
                failed = True
                self._stop.wait(self.settings.sweep_seconds)
            finally:
                watcher.close()

    def _absorb(self, change: Change) -> None:
        if change.only_deployments:
            keys = self.store.reload_deployments(change.service)
        else:
            keys = self.store.reload_service(change.service)
        log.info("%s changed: %d instance(s) to check", change.service, len(keys))
        for key in keys:
            self.queue.put(key)

    def _reload_everything(self) -> None:
        for key in sorted(self.store.load_all()):
            self.queue.put(key)

    def _observe_loop(self) -> None:
        next_full = 0.0
        while not self._stop.is_set():
            now = time.monotonic()
            if now >= next_full:
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
        try:
            result = self.step(key)
            self._attempts.pop(key, None)
            self._last_error.pop(key, None)
            if result is not None:
                again = result.again_in
                if result.performed:
                    self._kick_observer.set()
                if self.on_step is not None:
                    self.on_step(key, result)
        except TemporaryError as err:
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
        if self._last_error.get(key) == message:
            return
        self._last_error[key] = message
        log.error("%s.%s: %s", key[0], key[1], message)
        try:
            self.events.record(
                Event(
                    time=time.time(),
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
