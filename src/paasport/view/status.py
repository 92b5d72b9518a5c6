"""The status view: per instance desired vs running vs healthy, bounces, tasks, proxy, why.

``load_status`` loads the soa-configs tree once, reads each deployments.json once, lists the
engine once (``view.observe`` probes the live part, ``refused_removals`` applies the store's
rule) and asks ``view.proxy`` for this host's proxy and registry; ``paasport status`` renders
the StatusView, ``wait-for-deployment`` polls ``gather``, the API serves it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from contextlib import closing, nullcontext
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paasport.config import tree as tree_module
from paasport.config.system import SystemConfig, effective_registry
from paasport.config.tree import INSTANCE_FILE, SoaTree
from paasport.deploy import deployments as deployments_module
from paasport.deploy.deployments import Deployments
from paasport.engine.base import Engine, OneOff
from paasport.errors import EngineUnavailable, NotFoundError, PaasportError, UsageError
from paasport.monitoring.events import Event
from paasport.reconcile.scaling import OverrideRange, Scale, read_overrides, read_scales, scaled
from paasport.reconcile.store import (
    INSTANCE_FILE_KINDS,
    REMOVAL_HINT,
    loaded_from_tree,
    removal_problem,
    removes_every_instance,
)
from paasport.types import AppVersion, HealthCheck, InstanceConfig, Task
from paasport.view.observe import InstanceView, background_pool, observe_instances
from paasport.view.proxy import DiscoveryReading, read_discovery
from paasport.view.remote import ClusterAnswer, read_across


@dataclass(frozen=True)
class ConfigErrorView:
    """An instance (or a whole service: ``instance`` None) status cannot judge: a file is
    broken, and what runs for it is left as it is."""

    service: str
    instance: str | None
    cluster: str
    problems: tuple[str, ...]
    consequence: str  # what paasport does meanwhile
    state: str = "Config error"  # "Waiting": for its add-on's credentials (not an error)
    until: str = "until the file is fixed"

    @property
    def key(self) -> str:
        return f"{self.service}.{self.instance}" if self.instance else self.service

    @property
    def why(self) -> str:
        return f"{self.problems[0]} ({self.consequence} {self.until})"

    def to_json(self) -> dict[str, object]:
        """Same keys as an instance's entry, with nothing observed (docs/views.md)."""
        return unobserved_entry(
            self.service, self.instance, self.cluster, self.state, self.why, self.problems
        )


def unobserved_entry(
    service: str,
    instance: str | None,
    cluster: str,
    state: str,
    why: str,
    problems: Sequence[str],
) -> dict[str, object]:
    """A status entry with nothing observed (a config error, a cluster that did not answer):
    the keys of an instance's entry, ``expected`` None. Pure."""
    return {
        "service": service,
        "instance": instance,
        "cluster": cluster,
        "state": state,
        "ok": False,
        "why": why,
        "traffic": None,
        "autoscaling": None,
        "problems": list(problems),
        "desired_state": None,
        "git_sha": None,
        "config_hash": None,
        "expected": None,
        "running": None,
        "healthy": None,
        "bounce": None,
        "app_versions": [],
        "tasks": [],
        "events": [],
    }


@dataclass(frozen=True)
class StatusView:
    """Everything ``paasport status`` shows for one selection of instances."""

    instances: tuple[InstanceView, ...]
    config_errors: tuple[ConfigErrorView, ...]
    discovery: DiscoveryReading | None = None  # None: no selected instance is in discovery
    runs: tuple[OneOff, ...] = ()  # one-off tasks still there (``paasport run``, job actions)
    read_at: float = 0.0

    @property
    def ok(self) -> bool:
        return all(v.verdict.ok for v in self.instances) and not self.config_errors

    def to_json(self) -> list[dict[str, object]]:
        """``paasport status --json``: the instances, the config-error entries, then one entry
        per one-off run."""
        from paasport.view.runs import run_entry

        return [
            *(v.to_json() for v in self.instances), *(e.to_json() for e in self.config_errors),
            *(run_entry(r, self.read_at) for r in self.runs),
        ]  # fmt: skip


def load_selected_tree(system: SystemConfig, service: str | None) -> SoaTree:
    """The soa-configs tree status reads (only ``service`` when given), loaded once."""
    if not system.soa_dir.is_dir():
        raise UsageError(f"soa-configs directory {system.soa_dir} does not exist (--soa-dir)")
    tree = tree_module.load_tree(system.soa_dir, [service] if service else None, system=system)
    if service and service not in tree.services:
        raise NotFoundError(f"no service {service!r} in {system.soa_dir}")
    return tree


def select_instances(
    system: SystemConfig,
    service: str | None,
    cluster: str | None,
    instance: str | None,
    *,
    tree: SoaTree | None = None,
) -> list[InstanceConfig]:
    """The configured instances status looks at (the local cluster unless -c says otherwise)."""
    cluster = _local_cluster(system, cluster)
    tree = tree if tree is not None else load_selected_tree(system, service)
    configs = list(tree.instances_for(service=service, cluster=cluster, instance=instance))
    if not configs and instance and not _maybe_broken(tree, service, cluster, instance):
        where = f"{service}: no" if service else "no service has an"
        raise NotFoundError(f"{where} instance {instance!r} on cluster {cluster}")
    return configs


def _local_cluster(system: SystemConfig, cluster: str | None) -> str:
    """``cluster`` (default: this host's), which must be this host's: status is local."""
    cluster = cluster or system.local_cluster
    if cluster != system.local_cluster:
        raise UsageError(
            f"this host runs cluster {system.local_cluster!r}; status of {cluster!r} needs a "
            "host of that cluster"
        )
    return cluster


def _maybe_broken(tree: SoaTree, service: str | None, cluster: str, instance: str) -> bool:
    """Whether ``instance`` may exist but was left out for a config error (status shows it)."""
    return any(
        (service is None or s == service) and c == cluster and i == instance
        for s, c, i in tree.rejected_instances
    ) or any(service is None or s == service for s in tree.incomplete_services)


def _file_of_service(file: str, service: str, cluster: str) -> bool:
    """Whether a problem in ``file`` concerns ``service`` on ``cluster``: its folder, or any of
    its files but another cluster's instance file."""
    path = Path(file)
    if path.name == service and not path.suffix:
        return True  # the service folder itself
    if path.parent.name != service:
        return False
    match = INSTANCE_FILE.fullmatch(path.name)
    return match is None or match.group(2) == cluster


def config_error_views(
    system: SystemConfig, tree: SoaTree, instance: str | None
) -> list[ConfigErrorView]:
    """Instances of this cluster left out of the tree for a config error: deployd leaves what
    runs for them as it is, so status must name them (and fail) rather than omit them."""
    broken: list[tuple[str, str | None, list[str]]] = []
    waiting: list[ConfigErrorView] = []
    for svc, cluster, inst in sorted(tree.rejected_instances):
        if cluster != system.local_cluster or (instance and inst != instance):
            continue
        mine = [p for p in tree.problems if p.subject in (inst, "")]
        mine = [p for p in mine if Path(p.file).parent.name == svc]
        notes = [str(p) for p in mine if p.severity == "note" and p.field.startswith("addons.")]
        problems = [str(p) for p in mine if p.severity == "error"]
        if notes and not problems:  # its add-on is being provisioned: not an error
            why = ("what runs is left as it is, nothing new starts", "Waiting", "until then")
            waiting.append(ConfigErrorView(svc, inst, cluster, tuple(notes), *why))
            continue
        invalid = f"{svc}.{inst}: invalid configuration (run paasport validate -s {svc})"
        problems = problems or [invalid]
        broken.append((svc, inst, problems))
    named = {svc for svc, _, _ in broken}
    for svc in sorted(tree.incomplete_services - named):
        # a file that could not be read at all (not YAML, a directory, a list...): its
        # instances are unknown, but what runs for them is kept, so say so instead of omitting
        problems = [
            str(p)
            for p in tree.errors
            if not p.subject and _file_of_service(p.file, svc, system.local_cluster)
        ]
        if problems:
            broken.append((svc, None, problems))
    return [
        ConfigErrorView(
            svc, inst, system.local_cluster, tuple(problems), "what runs is left as it is"
        )
        for svc, inst, problems in broken
    ] + waiting


def config_errors(
    system: SystemConfig, service: str | None, instance: str | None
) -> list[dict[str, object]]:
    """``config_error_views`` as JSON entries, loading the tree of ``service`` itself."""
    tree = tree_module.load_tree(system.soa_dir, [service] if service else None, system=system)
    return [e.to_json() for e in config_error_views(system, tree, instance)]


def refused_removals(
    system: SystemConfig,
    tree: SoaTree,
    listed: Iterable[AppVersion],
    service: str | None = None,
    instance: str | None = None,
) -> list[ConfigErrorView]:
    """Instances the engine runs on this cluster that the configs no longer name, where the
    store (``reconcile.store.removes_every_instance``, inside ``paasport up``) refuses the
    change because it would remove every instance of the service: what runs is left as it
    is, so status names each of them (and fails) rather than omit them."""
    cluster = system.local_cluster
    configured = {(c.service, c.instance) for c in tree.instances_for(cluster=cluster)}
    running: dict[str, set[str]] = {}
    for av in listed:
        if av.cluster == cluster and av.tasks:
            running.setdefault(av.service, set()).add(av.instance)
    found: list[ConfigErrorView] = []
    for svc, names in sorted(running.items()):
        gone = sorted(n for n in names if (svc, n) not in configured)
        folder = system.soa_dir / svc
        if (service and svc != service) or not gone or not folder.is_dir():
            continue  # a removed folder really removes the service
        if not removes_every_instance(names, loaded_from_tree(tree, svc, cluster, system, folder)):
            continue
        files = [folder / f"{kind}-{cluster}.yaml" for kind in INSTANCE_FILE_KINDS]
        where = ", ".join(str(f) for f in files if f.exists()) or f"{files[0]} (no such file)"
        problem = f"{removal_problem(where, names)}; {REMOVAL_HINT}"
        found += [
            ConfigErrorView(svc, name, cluster, (problem,), "what runs is left as it is")
            for name in gone
            if not instance or name == instance
        ]
    return found


def error_entry(
    service: str, instance: str | None, cluster: str, problems: Sequence[str], consequence: str
) -> dict[str, object]:
    """A status entry (text and --json) for an instance, or a whole service (``instance``
    None), that status cannot judge because a file is broken."""
    return ConfigErrorView(service, instance, cluster, tuple(problems), consequence).to_json()


def read_each_deployments(
    system: SystemConfig, services: Iterable[str]
) -> tuple[dict[str, Deployments | None], dict[str, str]]:
    """Each service's deployments.json read once: the readable ones (None: never deployed),
    and the unreadable ones with the reason (not "not deployed": deployd keeps what it read)."""
    read: dict[str, Deployments | None] = {}
    errors: dict[str, str] = {}
    for service in sorted(set(services)):
        try:
            read[service] = deployments_module.read_deployments(system.soa_dir, service)
        except PaasportError as err:
            errors[service] = str(err)
    return read, errors


def deployments_errors(system: SystemConfig, services: Iterable[str]) -> dict[str, str]:
    """The services whose deployments.json cannot be read, with the reason."""
    return read_each_deployments(system, services)[1]


def _reader(
    system: SystemConfig, known: Mapping[str, Deployments | None] | None
) -> Callable[[str], Deployments | None]:
    def read(service: str) -> Deployments | None:
        if known is not None and service in known:
            return known[service]
        try:
            return deployments_module.read_deployments(system.soa_dir, service)
        except PaasportError:
            return None  # unreadable reads as "not deployed" here; load_status names it

    return read


def gather(
    system: SystemConfig,
    configs: Sequence[InstanceConfig],
    with_events: bool = False,
    *,
    tree: SoaTree | None = None,
    deployments: Mapping[str, Deployments | None] | None = None,
    discovery: DiscoveryReading | None = None,
    engine: Engine | None = None,
    listed: Sequence[AppVersion] | None = None,
) -> list[InstanceView]:
    """Live views of ``configs``: engine, probes, the event log and (given) the proxy of this
    host. ``tree``, ``deployments`` and the engine's listing (``listed``) already read are
    used, never read again; an ``engine`` given is the caller's to close."""
    from paasport.engine.factory import engine_for

    own = engine is None
    engine = engine_for(system.local) if engine is None else engine
    try:
        return _gather(system, configs, with_events, tree, deployments, discovery, engine, listed)
    finally:
        if own:
            engine.close()


def _gather(
    system: SystemConfig,
    configs: Sequence[InstanceConfig],
    with_events: bool,
    tree: SoaTree | None,
    deployments: Mapping[str, Deployments | None] | None,
    discovery: DiscoveryReading | None,
    engine: Engine,
    listed: Sequence[AppVersion] | None,
) -> list[InstanceView]:
    from paasport.engine.health import probe
    from paasport.monitoring.events import EventLog, events_path

    services = sorted({c.service for c in configs})
    if tree is None and services:
        tree = tree_module.load_tree(system.soa_dir, services, system=system)
    registries = {
        s: effective_registry(tree.services.get(s) if tree else None, system) for s in services
    }
    path = events_path(system.state_dir)
    log = EventLog(path) if path.exists() else None

    def events(service: str, instance: str, since: float) -> list[Event]:
        if log is None:
            return []
        return list(log.query(service=service, instance=instance, since=since))

    def live_probe(task: Task, check: HealthCheck) -> tuple[bool, str]:
        result = probe(task, check, engine.exec_in_task)
        return result.ok, result.detail

    try:
        views = observe_instances(
            configs,
            _reader(system, deployments),
            engine,
            live_probe,
            events,
            registries,
            with_events=with_events,
            discovery=discovery,
            listed=listed,
        )
        said = _traffic_verdicts(log, services) if log is not None else {}
        return [
            dataclasses.replace(v, traffic=said[(v.config.service, v.config.instance)])
            if (v.config.service, v.config.instance) in said else v
            for v in views
        ]  # fmt: skip
    finally:
        if log is not None:
            log.close()


TRAFFIC_VERDICT_SECONDS = 900.0  # a canary comparison older than this is not shown


def _traffic_verdicts(log: Any, services: Sequence[str]) -> dict[tuple[str, str], str]:
    """(service, instance) -> the auto-rollback guard's newest comparison of its new version's
    (or canary's) errors through the proxy with the rest's (``canary`` events)."""

    wanted = set(services)
    found: dict[tuple[str, str], str] = {}
    since = time.time() - TRAFFIC_VERDICT_SECONDS
    service = next(iter(wanted)) if len(wanted) == 1 else None  # one query either way
    for event in log.query(service=service, since=since, kinds=("canary",)):
        if event.instance and event.service in wanted:
            found[(event.service, event.instance)] = event.message
    return found


ONE_OFF_SECONDS = 30.0  # the one-off listing: the engine's own deadline comes first


def load_status(
    system: SystemConfig,
    service: str | None = None,
    cluster: str | None = None,
    instance: str | None = None,
    *,
    with_events: bool = False,
    tree: SoaTree | None = None,
    engine: Engine | None = None,
) -> StatusView:
    """The status of the selected instances: one tree load, one read per deployments.json,
    one engine listing, one proxy and registry reading (when some instance is in discovery).
    ``engine``: a long-lived one to use (the API's); default: the cluster's, closed after."""
    if not system.soa_dir.is_dir():
        raise UsageError(f"soa-configs directory {system.soa_dir} does not exist (--soa-dir)")
    from paasport.engine.factory import engine_for

    _local_cluster(system, cluster)
    tree = tree if tree is not None else load_selected_tree(system, service)
    not_found: NotFoundError | None = None
    try:
        configs = select_instances(system, service, cluster, instance, tree=tree)
    except NotFoundError as err:  # unless it still runs (below): said before the engine is asked
        not_found, configs = err, []
    own = engine is None
    engine = engine_for(system.local) if engine is None else engine
    with closing(engine) if own else nullcontext(engine):
        # the one-off tasks, read while the app versions are (two engine calls, one wait)
        one_offs = background_pool().submit(engine.list_one_offs, service)
        try:
            listed = engine.list_app_versions(service)  # the one listing of this status call
        except EngineUnavailable:
            if not_found is not None:
                raise not_found from None
            raise
        refused = refused_removals(system, tree, listed, service, instance)
        if not_found is not None and not refused:
            raise not_found
        # with refused removals, -i may name an instance that runs but is no longer configured
        view = _status(system, tree, configs, instance, refused, with_events, engine, listed)
        runs = [r for r in one_offs.result(timeout=ONE_OFF_SECONDS)
                if instance is None or r.instance == instance]  # fmt: skip
        return dataclasses.replace(view, runs=tuple(runs), read_at=time.time())


def _status(
    system: SystemConfig,
    tree: SoaTree,
    configs: list[InstanceConfig],
    instance: str | None,
    refused: list[ConfigErrorView],
    with_events: bool,
    engine: Engine,
    listed: Sequence[AppVersion],
) -> StatusView:
    read, unreadable = read_each_deployments(system, (c.service for c in configs))
    broken = config_error_views(system, tree, instance) + refused
    broken += [
        ConfigErrorView(
            c.service,
            c.instance,
            c.cluster,
            (unreadable[c.service],),
            "deployd runs what it read last",
        )
        for c in configs
        if c.service in unreadable
    ]
    configs = [c for c in configs if c.service not in unreadable]
    scales = read_scales(system.state_dir) if any(c.autoscaled for c in configs) else {}
    configs = [scaled(c, scales) for c in configs]  # the autoscaler's count is the one expected
    discovery = read_discovery(system) if any(c.registrations for c in configs) else None
    views = gather(
        system,
        configs,
        with_events,
        tree=tree,
        deployments=read,
        discovery=discovery,
        engine=engine,
        listed=listed,
    )
    if scales or any(c.autoscaled for c in configs):
        overrides = read_overrides(system.state_dir)
        views = [
            dataclasses.replace(v, autoscaling=autoscaling_json(v.config, scales, overrides))
            if v.config.autoscaled else v
            for v in views
        ]  # fmt: skip
    return StatusView(tuple(views), tuple(broken), discovery)


def autoscaling_json(
    config: InstanceConfig,
    scales: Mapping[tuple[str, str], Scale],
    overrides: Mapping[tuple[str, str], OverrideRange],
) -> dict[str, object]:
    """An autoscaled instance's range, the autoscaler's metric and target, its last decision
    and the override in force. Pure."""
    key = (config.service, config.instance)
    scale, override = scales.get(key), overrides.get(key)
    auto = config.autoscaling
    return {
        "min_instances": config.min_instances if config.min_instances is not None else 1,
        "max_instances": config.max_instances,
        "metrics_provider": auto.metrics_provider if auto else "cpu",
        "setpoint": scale.setpoint if scale else (auto.setpoint if auto else None),
        "metric": scale.metric if scale else None,
        "target": scale.target if scale else None,
        "last_decision": scale.reason if scale else None,
        "decided_at": scale.decided_at if scale else None,
        "read_at": scale.read_at if scale else None,
        "override": {"min": override.min_instances, "max": override.max_instances,
                     "until": override.until} if override else None,
    }  # fmt: skip


@dataclass(frozen=True)
class ClusterPlan:
    """Which clusters a status reads: ``clusters`` (the local one read directly, the others
    through their API) and ``skipped``, those with instances but no ``api_url``."""

    clusters: tuple[str, ...]
    skipped: tuple[str, ...] = ()
    tree: SoaTree | None = None  # the tree loaded to decide, for load_status to reuse


def plan_clusters(
    system: SystemConfig, service_clusters: Iterable[str], cluster: str | None
) -> ClusterPlan:
    """``-c CLUSTER``: that one (it must be the local one or have an ``api_url``); otherwise
    every cluster the service has instances on, the local one first. Pure."""
    local = system.local_cluster
    if cluster is not None:
        known = system.clusters.get(cluster)
        if known is None:
            names = ", ".join(sorted(system.clusters))
            raise UsageError(f"-c {cluster}: no such cluster in paasport.yaml (clusters: {names})")
        if cluster != local and not known.api_url:
            raise UsageError(
                f"this host runs cluster {local!r}; cluster {cluster!r} has no api_url in "
                f"paasport.yaml (clusters.{cluster}.api_url), so it can only be read on one "
                "of its hosts"
            )
        return ClusterPlan((cluster,))
    named = set(service_clusters) & set(system.clusters)
    others = sorted(named - {local})
    asked = tuple(c for c in others if system.clusters[c].api_url)
    skipped = tuple(c for c in others if not system.clusters[c].api_url)
    return ClusterPlan(((local,) if local in named or not asked else ()) + asked, skipped)


def every_askable_cluster(system: SystemConfig) -> ClusterPlan:
    """This host's cluster, then every other with an ``api_url`` (sorted): a reading of every
    service (the dashboard's overview, ``diff`` without -s). Pure."""
    local = system.local_cluster
    others = sorted(n for n, c in system.clusters.items() if n != local and c.api_url)
    return ClusterPlan((local, *others))


def clusters_to_read(system: SystemConfig, service: str | None, cluster: str | None) -> ClusterPlan:
    """plan_clusters for ``service`` (no service: the local cluster, or ``-c``'s)."""
    if service is None or cluster is not None:
        return (
            plan_clusters(system, (), cluster) if cluster else ClusterPlan((system.local_cluster,))
        )
    tree = load_selected_tree(system, service)
    plan = plan_clusters(system, tree.clusters, None)
    return ClusterPlan(plan.clusters, plan.skipped, tree)


def reading_plan(system: SystemConfig, service: str | None, cluster: str | None) -> ClusterPlan:
    """``clusters_to_read`` for the verbs that also work without soa-configs (events, logs,
    mesh-status): nothing is loaded when no other cluster has an ``api_url`` and ``-c`` names
    no other cluster (this host's cluster, then)."""
    local = system.local_cluster
    remote = any(c.api_url for name, c in system.clusters.items() if name != local)
    if (cluster is None or cluster == local) and not remote:
        return ClusterPlan((local,))
    return clusters_to_read(system, service, cluster)


def status_path(service: str | None, instance: str | None) -> str:
    """The API path of a status reading (docs/api.md)."""
    if service is None:
        return "/v1/status"
    if instance is None:
        return f"/v1/services/{service}/status"
    return f"/v1/services/{service}/{instance}/status"


def status_of_clusters(
    system: SystemConfig,
    clusters: Sequence[str],
    service: str | None,
    instance: str | None,
    *,
    with_events: bool,
    token: str | None,
    engine: Engine | None = None,
) -> tuple[ClusterAnswer, ...]:
    """Each cluster's ``status --json`` list, in parallel: the local cluster read here (through
    ``engine`` when given), the others from their API (2 s each); a cluster that cannot be read
    is its one line."""

    def local() -> object:
        found = load_status(
            system, service, system.local_cluster, instance, with_events=with_events, engine=engine
        )
        return found.to_json()

    params = {"events": "1"} if with_events else {}
    return read_across(system, clusters, local, status_path(service, instance), params, token=token)


def answer_entries(
    answer: ClusterAnswer, service: str | None, instance: str | None
) -> list[dict[str, object]]:
    """A cluster's answer as ``status --json`` entries; a cluster that did not answer is one
    entry in state ``Unreachable`` with the line saying why. Pure."""
    if answer.answered:
        data = answer.data if isinstance(answer.data, list) else []
        return [dict(e) for e in data if isinstance(e, Mapping)]
    why = answer.error
    return [unobserved_entry(service or "", instance, answer.cluster, "Unreachable", why, [why])]
