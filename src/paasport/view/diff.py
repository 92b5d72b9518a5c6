"""The diff view: what deployd would do on this host's cluster if it applied soa-configs and
deployments.json as they are now (or with one deploy group marked at another sha), against
what runs.

``load_diff`` reads the tree once, each deployments.json once, the engine's listing and
capacity once, and from the event log the merged config of every app version paasport started
and the instance's past bounces; ``bounce.diff.plan_instance`` decides. ``paasport diff``, the
API's ``/v1/diff`` and ``mark-for-deployment --dry-run`` render it.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from paasport.bounce.desired import desired_app, version_document
from paasport.bounce.diff import (
    Headroom,
    InstanceFacts,
    InstancePlan,
    Revision,
    bounce_durations,
    plan_instance,
    plan_revisions,
)
from paasport.config.system import SystemConfig, effective_registry
from paasport.deploy.deployments import Deployments
from paasport.deploy.tags import docker_image_ref
from paasport.engine.base import Engine, NodeCapacity
from paasport.errors import PaasportError
from paasport.monitoring.events import EventKind
from paasport.types import AppVersion, DeploymentState, InstanceConfig
from paasport.view.events import load_events
from paasport.view.status import load_selected_tree, read_each_deployments


@dataclass(frozen=True)
class Marking:
    """A hypothetical mark: ``deploy_group`` at ``sha`` (``mark-for-deployment --dry-run``)."""

    deploy_group: str
    sha: str
    image_version: str | None = None


@dataclass(frozen=True)
class DiffView:
    cluster: str
    plans: tuple[InstancePlan, ...]
    problems: tuple[str, ...] = ()  # config errors and unreadable deployments, one line each

    @property
    def acting(self) -> tuple[InstancePlan, ...]:
        return tuple(p for p in self.plans if p.acts)

    def to_json(self) -> dict[str, Any]:
        return {"cluster": self.cluster, **plans_json(self.plans, self.problems)}


def plans_json(plans: Sequence[InstancePlan], problems: Sequence[str]) -> dict[str, Any]:
    """The plans of a diff document, with how many change and bounce. Pure."""
    return {
        "instances": [p.to_json() for p in plans],
        "changes": sum(1 for p in plans if p.acts),
        "bounces": sum(1 for p in plans if p.bounces),
        "problems": list(problems),
    }


def headroom(nodes: Sequence[NodeCapacity]) -> tuple[Headroom, ...]:
    """Each host's free capacity (size less reservations); a host that is not ready and active
    takes no new task. Pure."""
    return tuple(
        Headroom(
            n.node or n.node_id or "?",
            max(n.cpus - n.cpus_reserved, 0.0),
            max(n.mem_mb - n.mem_reserved_mb, 0.0),
            schedulable=n.state == "ready" and n.availability == "active",
        )
        for n in nodes
    )


def _deployment(
    config: InstanceConfig, deployments: Deployments | None, marking: Marking | None
) -> DeploymentState | None:
    state = (
        deployments.state_for(config.cluster, config.instance, config.deploy_group)
        if deployments
        else None
    )
    if marking is None or config.deploy_group != marking.deploy_group:
        return state
    image = docker_image_ref(config.service, marking.sha, marking.image_version)
    if state is None:
        return DeploymentState(image, marking.sha, marking.image_version)
    # a new deploy tag clears the group's old start/stop timestamp, as mark-for-deployment does
    return replace(
        state, docker_image=image, git_sha=marking.sha, image_version=marking.image_version
    )


def recorded_configs(
    system: SystemConfig, service: str | None
) -> tuple[dict[tuple[str, str, str], Mapping[str, Any]], dict[tuple[str, str], list[float]]]:
    """From the event log: (service, instance, config_hash) -> the merged config recorded when
    that version started, and (service, instance) -> its past bounce durations."""
    configs: dict[tuple[str, str, str], Mapping[str, Any]] = {}
    bounces: dict[tuple[str, str], list[tuple[float, str, str]]] = {}
    try:
        view = load_events(
            system, service=service, kinds=(EventKind.APP_VERSION, EventKind.BOUNCE), limit=None
        )
    except PaasportError:
        return {}, {}
    cluster = system.local_cluster
    for e in view.events:
        if not e.service or not e.instance or (e.cluster and e.cluster != cluster):
            continue
        if e.kind == EventKind.APP_VERSION:
            doc, hashed = e.data.get("config"), e.data.get("config_hash")
            if isinstance(doc, Mapping) and isinstance(hashed, str):
                configs[(e.service, e.instance, hashed)] = doc
        elif e.kind == EventKind.BOUNCE:
            target = str(e.data.get("target") or "")
            bounces.setdefault((e.service, e.instance), []).append((e.time, e.message, target))
    return configs, {key: bounce_durations(rows) for key, rows in bounces.items()}


def load_diff(
    system: SystemConfig,
    service: str | None = None,
    *,
    marking: Marking | None = None,
    engine: Engine | None = None,
) -> DiffView:
    """The plan of every instance of this host's cluster (``service``'s only when given)."""
    from paasport.engine.factory import engine_for

    cluster = system.local_cluster
    tree = load_selected_tree(system, service)
    configs = list(tree.instances_for(service=service, cluster=cluster))
    services = sorted({c.service for c in configs} | ({service} if service else set()))
    read, unreadable = read_each_deployments(system, services)
    problems = [str(p) for p in tree.errors]
    problems += [f"{s}: {why}" for s, why in sorted(unreadable.items())]
    own = engine is None
    engine = engine_for(system.local) if engine is None else engine
    try:
        listed = engine.list_app_versions(service)
        try:
            room: tuple[Headroom, ...] | None = headroom(engine.node_capacity())
        except PaasportError:
            room = None
    finally:
        if own:
            engine.close()
    by_key: dict[tuple[str, str], list[AppVersion]] = {}
    for av in listed:
        by_key.setdefault((av.service, av.instance), []).append(av)
    known, durations = recorded_configs(system, service)
    plans = []
    for c in configs:
        key = (c.service, c.instance)
        if c.service in unreadable:
            continue  # deployd keeps what it last read: no plan can be made
        state = _deployment(c, read.get(c.service), marking)
        registry = effective_registry(tree.services[c.service], system)
        desired = desired_app(c, state, registry) if state else None
        observed = by_key.pop(key, [])
        facts = InstanceFacts(
            c.service,
            c.instance,
            cluster,
            desired,
            version_document(c, state, registry) if state else None,
            observed,
            {h: doc for (s, i, h), doc in known.items() if (s, i) == key},
            method=c.bounce_method,
            margin=c.bounce_margin_factor,
            past_bounces=durations.get(key, ()),
            headroom=room,
        )
        plans.append(plan_instance(facts))
    for (svc, instance), observed in sorted(by_key.items()):
        if svc in tree.services and svc not in tree.incomplete_services:
            plans.append(
                plan_instance(
                    InstanceFacts(svc, instance, cluster, None, None, observed, configured=False)
                )
            )
    plans.sort(key=lambda p: (p.service, p.instance))
    return DiffView(cluster, tuple(plans), tuple(problems))


@dataclass(frozen=True)
class RevisionDiffView:
    """``diff --against REF``: soa-configs at REF against the working tree, every cluster."""

    ref: str
    sha: str
    plans: tuple[InstancePlan, ...]
    problems: tuple[str, ...] = ()

    @property
    def acting(self) -> tuple[InstancePlan, ...]:
        return tuple(p for p in self.plans if p.acts)

    def to_json(self) -> dict[str, Any]:
        return {"against": self.ref, "against_sha": self.sha,
                **plans_json(self.plans, self.problems)}  # fmt: skip


def _revisions(
    system: SystemConfig, soa_dir: Path, service: str | None, clusters: Sequence[str]
) -> tuple[dict[tuple[str, str, str], Revision], list[str]]:
    """Every instance of ``clusters`` as the tree at ``soa_dir`` declares it, with the
    deployments.json of that tree (the working tree's where it has none)."""
    from paasport.config.tree import load_tree
    from paasport.deploy import deployments as deployments_module

    tree = load_tree(soa_dir, [service] if service else None, system=system)
    problems = [str(p) for p in tree.errors]
    read: dict[str, Deployments | None] = {}
    out: dict[tuple[str, str, str], Revision] = {}
    for cluster in clusters:
        for c in tree.instances_for(service=service, cluster=cluster):
            if c.service not in read:
                try:
                    found = deployments_module.read_deployments(soa_dir, c.service)
                    if found is None and soa_dir != system.soa_dir:
                        found = deployments_module.read_deployments(system.soa_dir, c.service)
                    read[c.service] = found
                except PaasportError as err:
                    problems.append(f"{c.service}: {err}")
                    read[c.service] = None
            state = _deployment(c, read[c.service], None)
            registry = effective_registry(tree.services[c.service], system)
            out[(c.service, cluster, c.instance)] = Revision(
                desired_app(c, state, registry) if state else None,
                version_document(c, state, registry) if state else None,
                c.bounce_method,
                c.bounce_margin_factor,
            )
    return out, problems


def load_revision_diff(
    system: SystemConfig,
    ref: str,
    service: str | None = None,
    cluster: str | None = None,
) -> RevisionDiffView:
    """What changes for every instance of every cluster (or ``cluster``) between soa-configs at
    ``ref`` and as it is now (uncommitted edits included)."""
    import tempfile

    from paasport.deploy.git import export_revision

    clusters = [cluster] if cluster else sorted(system.clusters)
    new, problems = _revisions(system, system.soa_dir, service, clusters)
    with tempfile.TemporaryDirectory(prefix="paasport-against-") as tmp:
        sha = export_revision(system.soa_dir, ref, Path(tmp))
        if service and not (Path(tmp) / service).is_dir():
            old: dict[tuple[str, str, str], Revision] = {}
        else:
            old, _ = _revisions(system, Path(tmp), service, clusters)
    plans = [
        plan_revisions(svc, instance, where, old.get(key), new.get(key))
        for key in sorted(old.keys() | new.keys())
        for svc, where, instance in [key]
    ]
    return RevisionDiffView(ref, sha, tuple(plans), tuple(problems))
