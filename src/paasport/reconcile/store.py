"""The one desired-state store: this cluster's configs and deployments with one last-good policy.

``platform`` builds one per process and shares it: deployd subscribes to its changes, the
discovery agent, the monitor and the refresher read its snapshots; its watcher thread
(``run_watcher``) reloads one service at a time. ``accept`` is the policy, pure.
"""

from __future__ import annotations

import contextlib
import dataclasses
import logging
import os
import threading
import time
from collections.abc import Callable, Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import partial
from pathlib import Path
from typing import Protocol

from paasport.config.secrets import secrets_root
from paasport.config.system import SystemConfig, effective_registry
from paasport.config.tree import SoaTree, load_tree
from paasport.deploy.deployments import Deployments, read_deployments
from paasport.deploy.workflow import ServiceTarget, target_from_tree
from paasport.errors import ConfigError, NotFoundError, PaasportError
from paasport.monitoring.events import Event
from paasport.reconcile.scaling import Scale, read_scales, scaled
from paasport.reconcile.watch import Change, TreeWatcher
from paasport.types import (
    DeploymentState,
    InstanceConfig,
    JobConfig,
    MonitoringConfig,
    Namespace,
    RollbackPolicy,
)

log = logging.getLogger("paasport.store")

Key = tuple[str, str]  # (service, instance)
TreeLoader = Callable[[Path, Sequence[str] | None], SoaTree]
Subscriber = Callable[[set[Key]], None]
INSTANCE_FILE_KINDS = ("instances", "kubernetes", "marathon", "eks")


class Watcher(Protocol):
    """What the store needs from reconcile.watch.TreeWatcher."""

    def changes(self, timeout: float) -> list[Change]: ...

    def close(self) -> None: ...


class EventRecorder(Protocol):
    def record(self, event: Event) -> None: ...


@dataclass(frozen=True)
class ServiceDesired:
    """What one service asks of this cluster, as last accepted."""

    instances: Mapping[str, InstanceConfig] = field(default_factory=dict)
    namespaces: Mapping[str, Namespace] = field(default_factory=dict)
    monitoring: MonitoringConfig | None = None
    registry: str | None = None
    target: ServiceTarget | None = None  # for the deployments refresher (None: no git_url)
    auto_rollback: Mapping[str, RollbackPolicy] = field(default_factory=dict)  # by deploy group
    jobs: Mapping[str, JobConfig] = field(default_factory=dict)  # tron-<cluster>.yaml, by name
    addons: frozenset[str] = frozenset()  # add-ons some instance asks for (provisioned or not)


@dataclass(frozen=True)
class Loaded:
    """What one load of a service's folder yielded (before the policy)."""

    desired: ServiceDesired
    rejected: frozenset[str] = frozenset()  # instance names left out for errors
    incomplete: bool = False  # some file failed: the instance list may be incomplete
    smartstack_broken: bool = False
    emptied_on_purpose: bool = False  # an instance file of this cluster is literally {}
    problems: tuple[str, ...] = ()


REMOVAL_HINT = "write {} in the file to remove them on purpose, or remove the service folder"


def removes_every_instance(previous: Collection[str], loaded: Loaded) -> bool:
    """Whether going from the ``previous`` instances to ``loaded`` removes every one of them
    at once, which the store refuses (``accept``) and status reports. Pure.

    An instance rejected for an error, or of a service whose files are incomplete, is kept
    (not removed); a file that is ``{}`` on purpose lets them all go."""
    kept = set(loaded.desired.instances) | {
        name for name in previous if loaded.incomplete or name in loaded.rejected
    }
    return bool(previous) and not kept and not loaded.emptied_on_purpose


def removal_problem(where: str, previous: Iterable[str]) -> str:
    """The config problem ``removes_every_instance`` names (``where``: the instance file)."""
    names = ", ".join(sorted(previous))
    return f"{where}: this change would remove every instance of the service ({names})"


def accept(
    previous: ServiceDesired | None, loaded: Loaded, where: str
) -> tuple[ServiceDesired, tuple[str, ...]]:
    """The last-good-config policy: (what this service runs now, its config problems). Pure.

    A broken smartstack.yaml changes nothing of the service; an instance rejected for an error,
    or missing from an incomplete service, keeps its last good config; a change that would remove
    every instance at once is an error (what runs stays) unless a file is ``{}`` on purpose.
    """
    problems = list(loaded.problems)
    new = loaded.desired
    if previous is None:
        return new, tuple(problems)
    if loaded.smartstack_broken:
        return previous, tuple(problems)
    instances = dict(new.instances)
    for name, config in previous.instances.items():
        if name not in instances and (loaded.incomplete or name in loaded.rejected):
            instances[name] = config
    if removes_every_instance(previous.instances, loaded):
        problems.append(
            f"{removal_problem(where, previous.instances)}; what runs is left as it is "
            f"({REMOVAL_HINT})"
        )
        return previous, tuple(problems)
    if loaded.incomplete:  # service.yaml / deploy.yaml may be the broken part: keep theirs
        return (
            ServiceDesired(
                instances=instances,
                namespaces=new.namespaces,
                monitoring=previous.monitoring,
                registry=previous.registry,
                target=previous.target,
                auto_rollback=previous.auto_rollback,
                jobs={**previous.jobs, **new.jobs},
                addons=previous.addons | new.addons,
            ),
            tuple(problems),
        )
    return dataclasses.replace(new, instances=instances), tuple(problems)


def _emptied_on_purpose(service_dir: Path, cluster: str) -> bool:
    """Some instance file of ``cluster`` holds exactly ``{}`` (comments aside)."""
    for kind in INSTANCE_FILE_KINDS:
        path = service_dir / f"{kind}-{cluster}.yaml"
        try:
            text = path.read_text(encoding="utf-8", errors="replace")
        except OSError:
            continue
        body = "".join(
            line for line in text.splitlines() if not line.lstrip().startswith("#")
        ).strip()
        if body == "{}":
            return True
    return False


def loaded_from_tree(
    tree: SoaTree, service: str, cluster: str, system: SystemConfig, service_dir: Path
) -> Loaded:
    """Read one service's part of a loaded tree into a ``Loaded``."""
    svc = tree.services.get(service)
    instances = {c.instance: c for c in tree.instances_for(service=service, cluster=cluster)}
    errors = [p for p in tree.errors if Path(p.file).parent.name == service]
    target: ServiceTarget | None = None
    if svc is not None and svc.git_url:
        try:
            target = target_from_tree(tree, service)
        except PaasportError:
            target = None
    incomplete = service in tree.incomplete_services or svc is None
    return Loaded(
        desired=ServiceDesired(
            instances=instances,
            namespaces={n: ns for n, ns in tree.namespaces.items() if ns.service == service},
            monitoring=tree.monitoring.get(service),
            registry=effective_registry(svc, system),
            target=target,
            auto_rollback=dict(svc.auto_rollback) if svc is not None else {},
            jobs={j.name: j for j in tree.jobs_for(service=service, cluster=cluster)},
            addons=frozenset(a for s, c, _, a in tree.addons if s == service and c == cluster),
        ),
        rejected=frozenset(
            i for s, c, i in tree.rejected_instances if s == service and c == cluster
        ),
        incomplete=incomplete,
        smartstack_broken=any(Path(p.file).name == "smartstack.yaml" for p in errors),
        emptied_on_purpose=_emptied_on_purpose(service_dir, cluster),
        problems=tuple(str(p) for p in errors),
    )


class DesiredStore:
    """The configs and deployments of the local cluster, reloaded one service at a time.

    Thread-safe. Readers get snapshots (``instances``, ``namespaces``, ``agent_view``...);
    ``subscribe`` registers a callback with the instances a reload touched.
    """

    def __init__(
        self,
        soa_dir: Path,
        cluster: str,
        default_registry: str | None = None,
        loader: TreeLoader | None = None,
        system: SystemConfig | None = None,
        events: EventRecorder | None = None,
        clock: Callable[[], float] = time.time,
    ) -> None:
        self.soa_dir = soa_dir
        self.cluster = cluster
        self.system = system or SystemConfig(soa_dir=soa_dir, docker_registry=default_registry)
        self.default_registry = default_registry
        if default_registry is None:
            self.default_registry = self.system.docker_registry
        self._loader: TreeLoader = loader or (
            lambda soa, services: load_tree(soa, services, system=self.system)
        )
        self.events = events
        self.clock = clock
        self.watcher_factory: Callable[[Path], Watcher] = TreeWatcher
        self.retry_seconds = 0.5
        self._lock = threading.RLock()
        self._services: dict[str, ServiceDesired] = {}
        self._problems: dict[str, tuple[str, ...]] = {}
        self._incomplete: set[str] = set()
        self._rejected: set[Key] = set()
        self._deployments: dict[str, Deployments | None] = {}
        self._subscribers: list[Subscriber] = []
        self._loaded = False
        self._watching = False
        self._secret_stamps: dict[str, tuple[int, int]] | None = None
        # the autoscaler's counts (reconcile.scaling): kept across restarts in the state dir
        self._scales: dict[Key, Scale] = read_scales(system.state_dir) if system is not None else {}

    # ---- loading ----

    @property
    def loaded(self) -> bool:
        return self._loaded

    def ensure_loaded(self) -> None:
        with self._lock:
            if not self._loaded:
                self.load_all()

    def load_all(self) -> set[Key]:
        """Load the whole tree (at start, and after a watcher failure); returns every instance
        before and after."""
        with self._lock:
            self._loaded = True
            before = self._keys()
            try:
                tree = self._loader(self.soa_dir, None)
            except ConfigError as err:
                log.error("cannot load %s: %s", self.soa_dir, err)
                return before
            services = set(tree.services) | {c.service for c in tree.instances}
            services |= set(tree.incomplete_services)
            for service in sorted(services):
                self._absorb(service, tree)
                self._read_deployments(service)
            if self.soa_dir.is_dir():
                for gone in set(self._services) - services:
                    if not (self.soa_dir / gone).is_dir():
                        self._forget(gone)
            return before | self._keys()

    def reload_service(self, service: str) -> set[Key]:
        """Reload one service's folder; returns its instances before and after."""
        with self._lock:
            before = self._keys(service)
            if self.soa_dir.is_dir() and not (self.soa_dir / service).is_dir():
                self._forget(service)  # the folder itself was removed: its instances go
                return before
            try:
                tree = self._loader(self.soa_dir, [service])
            except (ConfigError, NotFoundError) as err:
                self._incomplete.add(service)
                self._note(service, (f"{service}: keeping the previous config: {err}",))
                return set()
            self._absorb(service, tree)
            self._read_deployments(service)
            return before | self._keys(service)

    def reload_deployments(self, service: str) -> set[Key]:
        with self._lock:
            self._read_deployments(service)
            return self._keys(service)

    def _absorb(self, service: str, tree: SoaTree) -> None:
        loaded = loaded_from_tree(tree, service, self.cluster, self.system, self.soa_dir / service)
        where = str(self.soa_dir / service / f"instances-{self.cluster}.yaml")
        accepted, problems = accept(self._services.get(service), loaded, where)
        self._services[service] = accepted
        self._rejected = {k for k in self._rejected if k[0] != service} | {
            (service, name) for name in loaded.rejected
        }
        if loaded.incomplete or problems:
            self._incomplete.add(service)
        else:
            self._incomplete.discard(service)
        self._note(service, problems)

    def _forget(self, service: str) -> None:
        self._services.pop(service, None)
        self._deployments.pop(service, None)
        self._incomplete.discard(service)
        self._rejected = {k for k in self._rejected if k[0] != service}
        self._problems.pop(service, None)

    def _note(self, service: str, problems: tuple[str, ...]) -> None:
        """Remember the service's problems; log and record the new ones (kind "config")."""
        seen = set(self._problems.get(service, ()))
        if problems:
            self._problems[service] = problems
        else:
            self._problems.pop(service, None)
        for problem in problems:
            if problem in seen:
                continue
            log.error("config error (what runs is left as it is): %s", problem)
            if self.events is None:
                continue
            try:
                self.events.record(
                    Event(
                        time=self.clock(),
                        level="error",
                        kind="config",
                        service=service,
                        instance="",
                        cluster=self.cluster,
                        message=f"config error (what runs is left as it is): {problem}",
                    )
                )
            except PaasportError as err:
                log.warning("cannot record event: %s", err)

    def _read_deployments(self, service: str) -> None:
        try:
            self._deployments[service] = read_deployments(self.soa_dir, service)
        except ConfigError as err:
            log.error("%s: keeping the previous deployments: %s", service, err)

    def _keys(self, service: str | None = None) -> set[Key]:
        return {
            (name, inst)
            for name, desired in self._services.items()
            if service is None or name == service
            for inst in desired.instances
        }

    # ---- reading (every consumer) ----

    def config(self, key: Key) -> InstanceConfig | None:
        with self._lock:
            desired = self._services.get(key[0])
            config = desired.instances.get(key[1]) if desired else None
            return scaled(config, self._scales) if config is not None else None

    def set_scale(self, key: Key, scale: Scale) -> None:
        """The autoscaler's new count for ``key``: deployd converges to it (never a bounce)."""
        with self._lock:
            before = self._scales.get(key)
            self._scales[key] = scale
        if before is None or before.target != scale.target:
            self._publish({key})

    def scales(self) -> dict[Key, Scale]:
        with self._lock:
            return dict(self._scales)

    def keys(self) -> set[Key]:
        with self._lock:
            return self._keys()

    def instances(self) -> tuple[InstanceConfig, ...]:
        """Every instance of this cluster, with the last good config of broken ones."""
        self.ensure_loaded()
        with self._lock:
            return tuple(
                scaled(config, self._scales)
                for name in sorted(self._services)
                for _, config in sorted(self._services[name].instances.items())
            )

    def namespaces(self) -> dict[str, Namespace]:
        self.ensure_loaded()
        with self._lock:
            return {n: ns for d in self._services.values() for n, ns in d.namespaces.items()}

    def agent_view(self) -> tuple[dict[str, Namespace], tuple[InstanceConfig, ...]]:
        """The discovery agent's ConfigSource: (namespaces, instances)."""
        with self._lock:
            return self.namespaces(), self.instances()

    def monitoring(self, service: str) -> MonitoringConfig | None:
        with self._lock:
            desired = self._services.get(service)
            return desired.monitoring if desired else None

    def deployment(self, key: Key) -> DeploymentState | None:
        with self._lock:
            desired = self._services.get(key[0])
            config = desired.instances.get(key[1]) if desired else None
            deployments = self._deployments.get(key[0])
        if config is None or deployments is None:
            return None
        return deployments.state_for(self.cluster, key[1], config.deploy_group)

    def addon_services(self, addon: str) -> tuple[str, ...]:
        """The services some instance of which asks for ``addon`` (the add-on provisioner)."""
        self.ensure_loaded()
        with self._lock:
            return tuple(sorted(n for n, d in self._services.items() if addon in d.addons))

    def jobs(self) -> tuple[JobConfig, ...]:
        """Every scheduled job of this cluster, as last accepted."""
        self.ensure_loaded()
        with self._lock:
            return tuple(j for _, d in sorted(self._services.items()) for j in d.jobs.values())

    def job_deployment(self, job: JobConfig) -> DeploymentState | None:
        """What the job's deploy group runs (None: never marked)."""
        with self._lock:
            deployments = self._deployments.get(job.service)
        if deployments is None:
            return None
        return deployments.state_for(self.cluster, job.name, job.deploy_group)

    def deployments(self, configs: Iterable[InstanceConfig]) -> dict[Key, DeploymentState | None]:
        """The monitor's LoadDeployments."""
        return {(c.service, c.instance): self.deployment((c.service, c.instance)) for c in configs}

    def service_desired(self, service: str) -> ServiceDesired | None:
        """All that is known of one service (the auto-rollback guard reads its policies)."""
        self.ensure_loaded()
        with self._lock:
            return self._services.get(service)

    def services(self) -> tuple[str, ...]:
        self.ensure_loaded()
        with self._lock:
            return tuple(sorted(self._services))

    def registry(self, service: str) -> str | None:
        with self._lock:
            desired = self._services.get(service)
            return desired.registry if desired else self.default_registry

    def targets(self) -> list[ServiceTarget]:
        """The refresher's services: every last good target with a git_url."""
        self.ensure_loaded()
        with self._lock:
            return [d.target for _, d in sorted(self._services.items()) if d.target is not None]

    def problems(self) -> dict[str, tuple[str, ...]]:
        """Config problems per service (for status and events): what is not applied, and why."""
        with self._lock:
            return dict(self._problems)

    def keep_untouched(self, key: Key) -> bool:
        """An instance missing from the configs is removed only when it is really gone: the
        soa-configs folder exists, and the instance was not left out for a config error."""
        if not self.soa_dir.is_dir():
            return True
        with self._lock:
            desired = self._services.get(key[0])
            if desired is not None and key[1] in desired.instances:
                return False
            return key in self._rejected or key[0] in self._incomplete

    # ---- watching ----

    def subscribe(self, callback: Subscriber) -> None:
        """``callback(keys)`` after each reload, from the watcher thread."""
        with self._lock:
            self._subscribers.append(callback)

    def start(self, stop: threading.Event) -> bool:
        """Load (once) and start the watcher thread (once); True when this call started it."""
        self.ensure_loaded()
        with self._lock:
            if self._watching:
                return False
            self._watching = True
        threading.Thread(
            target=self.run_watcher, args=(stop,), name="store-watch", daemon=True
        ).start()
        return True

    def _publish(self, keys: set[Key]) -> None:
        with self._lock:
            subscribers = list(self._subscribers)
        for callback in subscribers:
            try:
                callback(keys)
            except Exception:  # one consumer's bug must not stop the others' updates
                log.exception("store subscriber failed")

    def apply(self, change: Change) -> set[Key]:
        """Reload what one change names and tell the subscribers."""
        if change.only_deployments:
            keys = self.reload_deployments(change.service)
        else:
            keys = self.reload_service(change.service)
        log.info("%s changed: %d instance(s) to check", change.service, len(keys))
        self._publish(keys)
        return keys

    def run_watcher(self, stop: threading.Event) -> None:
        """Reload what changed until ``stop``. A watcher that fails is rebuilt, and everything
        is reloaded (changes may have been missed meanwhile)."""
        failed = False
        while not stop.is_set():
            try:
                watcher = self.watcher_factory(self.soa_dir)
            except Exception:
                log.exception("cannot watch %s; retrying", self.soa_dir)
                stop.wait(self.retry_seconds)
                continue
            try:
                if failed:
                    self._guard("reloading every service", lambda: self._publish(self.load_all()))
                while not stop.is_set():
                    for change in watcher.changes(timeout=0.5):
                        self._guard(f"reloading {change.service}", partial(self.apply, change))
                    self._guard("reading the secrets", self._reload_for_secrets)
            except Exception:
                log.exception("watching %s failed; watching it again", self.soa_dir)
                failed = True
                stop.wait(self.retry_seconds)
            finally:
                watcher.close()

    def _reload_for_secrets(self) -> None:
        """A service whose secrets changed (``paasport secret add|update|rm``, in the state dir,
        not soa-configs) is loaded again: their versions are in its instances' config hash."""
        folder = secrets_root(self.system.state_dir) / self.cluster
        stamps: dict[str, tuple[int, int]] = {}
        with contextlib.suppress(FileNotFoundError, NotADirectoryError):
            for entry in os.scandir(folder):
                if entry.name.endswith(".json") and not entry.name.startswith("."):
                    info = entry.stat()
                    stamps[entry.name[: -len(".json")]] = (info.st_mtime_ns, info.st_size)
        before, self._secret_stamps = self._secret_stamps, stamps
        if before is None:
            return
        for service in sorted(set(stamps) | set(before)):
            if stamps.get(service) != before.get(service) and service in self._services:
                keys = self.reload_service(service)
                log.info("%s: its secrets changed: %d instance(s) to check", service, len(keys))
                self._publish(keys)

    @staticmethod
    def _guard(what: str, fn: Callable[[], object]) -> None:
        try:
            fn()
        except PaasportError as err:
            log.warning("%s: %s", what, err)
        except Exception:  # a bug must not kill the watcher thread
            log.exception("%s failed", what)
