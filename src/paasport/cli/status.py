"""``paasport status``: per instance desired vs running vs healthy, bounces, and why not healthy.

Loads the soa-configs, asks ``reconcile.observe`` for a live view (one engine list call, a live
probe per task, the event log) and renders it as text or ``--json``. Exit 1 when any instance
is not healthy.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable, Mapping, Sequence
from pathlib import Path

import click

from paasport.cli.options import (
    cluster_option,
    config_option,
    instance_option,
    json_option,
    print_json,
    service_option,
    soa_dir_option,
    state_dir_option,
)
from paasport.config.system import SystemConfig, load_system_config
from paasport.config.tree import INSTANCE_FILE, SoaTree
from paasport.errors import NotFoundError, PaasportError, UsageError
from paasport.monitoring.events import Event
from paasport.reconcile.observe import InstanceView, deployments_reader, observe_instances
from paasport.types import HealthCheck, InstanceConfig, Task


def _age(seconds: float) -> str:
    seconds = max(seconds, 0)
    if seconds < 120:
        return f"{seconds:.0f}s"
    if seconds < 7200:
        return f"{seconds / 60:.0f}m"
    if seconds < 172800:
        return f"{seconds / 3600:.0f}h"
    return f"{seconds / 86400:.0f}d"


def select_instances(
    system: SystemConfig, service: str | None, cluster: str | None, instance: str | None
) -> list[InstanceConfig]:
    """The configured instances status looks at (the local cluster unless -c says otherwise)."""
    from paasport.config.tree import load_tree

    if not system.soa_dir.is_dir():
        raise UsageError(f"soa-configs directory {system.soa_dir} does not exist (--soa-dir)")
    cluster = cluster or system.local_cluster
    if cluster != system.local_cluster:
        raise UsageError(
            f"this host runs cluster {system.local_cluster!r}; status of {cluster!r} needs a "
            "host of that cluster"
        )
    tree = load_tree(system.soa_dir, [service] if service else None, system=system)
    if service and service not in tree.services:
        raise NotFoundError(f"no service {service!r} in {system.soa_dir}")
    configs = list(tree.instances_for(service=service, cluster=cluster, instance=instance))
    if not configs and instance and not _maybe_broken(tree, service, cluster, instance):
        where = f"{service}: no" if service else "no service has an"
        raise NotFoundError(f"{where} instance {instance!r} on cluster {cluster}")
    return configs


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


def config_errors(
    system: SystemConfig, service: str | None, instance: str | None
) -> list[dict[str, object]]:
    """Instances of this cluster left out of the tree for a config error: deployd leaves what
    runs for them as it is, so status must name them (and fail) rather than omit them."""
    from paasport.config.tree import load_tree

    tree = load_tree(system.soa_dir, [service] if service else None, system=system)
    broken: list[tuple[str, str | None, list[str]]] = []
    for svc, cluster, inst in sorted(tree.rejected_instances):
        if cluster != system.local_cluster or (instance and inst != instance):
            continue
        problems = [
            str(p)
            for p in tree.errors
            if p.subject in (inst, "") and Path(p.file).parent.name == svc
        ] or [f"{svc}.{inst}: invalid configuration (run paasport validate -s {svc})"]
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
        error_entry(svc, inst, system.local_cluster, problems, "what runs is left as it is")
        for svc, inst, problems in broken
    ]


def error_entry(
    service: str, instance: str | None, cluster: str, problems: Sequence[str], consequence: str
) -> dict[str, object]:
    """A status entry (text and --json) for an instance, or a whole service (``instance``
    None), that status cannot judge because a file is broken."""
    return {
        "service": service,
        "instance": instance,
        "cluster": cluster,
        "state": "Config error",
        "ok": False,
        "why": f"{problems[0]} ({consequence} until the file is fixed)",
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


def deployments_errors(system: SystemConfig, services: Iterable[str]) -> dict[str, str]:
    """The services whose deployments.json cannot be read, with the reason: status must not
    call them "not deployed" (deployd keeps what it read last)."""
    from paasport.deploy.deployments import read_deployments

    out: dict[str, str] = {}
    for service in sorted(set(services)):
        try:
            read_deployments(system.soa_dir, service)
        except PaasportError as err:
            out[service] = str(err)
    return out


def gather(
    system: SystemConfig,
    configs: Sequence[InstanceConfig],
    with_events: bool = False,
) -> list[InstanceView]:
    """Live views of ``configs``: engine, probes and the event log of this host."""
    from paasport.config.tree import load_tree
    from paasport.engine.factory import engine_for
    from paasport.engine.health import probe
    from paasport.monitoring.events import EventLog, events_path

    engine = engine_for(system.local)
    services = sorted({c.service for c in configs})
    tree = load_tree(system.soa_dir, services, system=system) if services else None
    registries = {
        s: (
            (tree.services[s].docker_registry if tree and s in tree.services else None)
            or system.docker_registry
        )
        for s in services
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
        return observe_instances(
            configs,
            deployments_reader(system.soa_dir),
            engine,
            live_probe,
            events,
            registries,
            with_events=with_events,
        )
    finally:
        if log is not None:
            log.close()


ProxyStates = Mapping[str, Mapping[str, str]]  # task_id -> namespace -> up|drain|down|maint


def proxy_states(
    system: SystemConfig, configs: Sequence[InstanceConfig]
) -> tuple[ProxyStates, str]:
    """Each task's state in this host's proxy, per namespace (only when some instance is in
    discovery); the second value says what did not answer."""
    if not any(c.registrations for c in configs):
        return {}, ""
    from paasport.discovery.mesh import proxy_state_by_task
    from paasport.discovery.wiring import read_proxy

    reading = read_proxy(system)
    return proxy_state_by_task(reading.stats, reading.backends), reading.error


def _proxy_cell(view: InstanceView, task: Task, proxy: ProxyStates) -> str:
    states = proxy.get(task.task_id, {})
    cells = [f"{ns}: {states.get(ns, 'not registered')}" for ns in view.config.registrations]
    return ", ".join(cells) or "-"


def view_json(view: InstanceView, proxy: ProxyStates | None = None) -> dict[str, object]:
    c, d = view.config, view.deployment
    now = time.time()
    return {
        "service": c.service,
        "instance": c.instance,
        "cluster": c.cluster,
        "deploy_group": c.deploy_group,
        "desired_state": d.desired_state if d else None,
        "git_sha": d.git_sha if d else None,
        "config_hash": view.desired.config_hash if view.desired else None,
        "expected": view.facts.expected,
        "running": view.facts.running,
        "healthy": view.facts.healthy,
        "state": view.verdict.state,
        "ok": view.verdict.ok,
        "why": view.verdict.why,
        "bounce": (
            {
                "in_progress": view.bounce.in_progress,
                "method": view.bounce.method,
                "new_healthy": view.bounce.new_healthy,
                "new_total": view.bounce.new_total,
                "old_remaining": view.bounce.old_remaining,
                "waiting_on": view.bounce.waiting_on,
            }
            if view.bounce
            else None
        ),
        "app_versions": [
            {
                "git_sha": av.git_sha,
                "config_hash": av.config_hash,
                "new": view.desired is not None and av.config_hash == view.desired.config_hash,
                "tasks": len(av.tasks),
            }
            for av in view.versions
        ],
        "tasks": [
            {
                "id": tv.task.task_id,
                "name": tv.task.name,
                "host": tv.task.host,
                "port": tv.task.port,
                "state": tv.task.state,
                "health": tv.health,
                "detail": tv.detail,
                "age_seconds": round(now - tv.task.started_at, 1) if tv.task.started_at else None,
                "restarts": tv.task.restarts,
                "exit_code": tv.task.exit_code,
                "new": tv.is_new,
                "proxy": {
                    ns: (proxy or {}).get(tv.task.task_id, {}).get(ns, "not registered")
                    for ns in c.registrations
                },
            }
            for tv in view.tasks
        ],
        "events": [e.to_json() for e in view.events],
    }


def render(views: Sequence[InstanceView], verbose: int, proxy: ProxyStates | None = None) -> None:
    from rich.console import Console
    from rich.table import Table

    console = Console(highlight=False, width=None if sys.stdout.isatty() else 160)
    now = time.time()
    for view in views:
        c, d, f, v = view.config, view.deployment, view.facts, view.verdict
        colour = "green" if v.ok else "red"
        sha = d.git_sha[:8] if d else "-"
        console.print(
            f"[bold]{view.key}[/bold] ({c.cluster})  [{colour}]{v.state}[/{colour}]  "
            f"{f.healthy}/{f.expected} healthy, {f.running} running  "
            f"desired: {d.desired_state if d else 'not deployed'}  git {sha}"
        )
        for av in view.versions:
            new = view.desired is not None and av.config_hash == view.desired.config_hash
            console.print(
                f"  app version git {av.git_sha[:8]} config {av.config_hash[:8]} "
                f"({'new' if new else 'old'}): {len(av.tasks)} task(s)"
            )
        b = view.bounce
        if b is not None and b.in_progress and view.versions:
            console.print(
                f"  bounce: {b.method}, {b.new_healthy}/{f.expected} new healthy, "
                f"{b.old_remaining} old left; {b.waiting_on or 'in progress'}"
            )
        if v.why:
            console.print(f"  [{colour}]why:[/{colour}] {v.why}")
        if verbose >= 1 and view.tasks:
            table = Table(box=None, padding=(0, 2), show_edge=False)
            in_mesh = bool(c.registrations)
            columns = ["task", "host:port", "state", "health", "age", "restarts", "version"]
            for col in [*columns, "proxy"] if in_mesh else columns:
                table.add_column(col)
            for tv in view.tasks:
                t = tv.task
                health = tv.health + (f" ({tv.detail})" if tv.health != "healthy" else "")
                row = [
                    t.name or t.task_id[:12],
                    f"{t.host}:{t.port}" if t.port else t.host,
                    t.state + (f" ({t.exit_code})" if t.exit_code is not None else ""),
                    health,
                    _age(now - t.started_at) if t.started_at else "-",
                    str(t.restarts),
                    "new" if tv.is_new else "old",
                ]
                if in_mesh:
                    row.append(_proxy_cell(view, t, proxy or {}))
                table.add_row(*row)
            console.print(table)
        if verbose >= 2:
            for e in view.events[-10:]:
                stamp = time.strftime("%H:%M:%S", time.localtime(e.time))
                console.print(f"    {stamp} {e.level:<7} {e.kind}: {e.message}")


@click.command("status")
@service_option()
@cluster_option
@instance_option
@soa_dir_option
@config_option
@json_option
@state_dir_option
@click.option("-v", "--verbose", count=True, help="-v tasks, -vv recent events too")
def status(
    service: str | None,
    cluster: str | None,
    instance: str | None,
    soa_dir: Path | None,
    config_file: Path | None,
    as_json: bool,
    verbose: int,
    state_dir: Path | None,
) -> int:
    """Desired vs running vs healthy per instance, bounces in progress, and why not healthy."""
    system = load_system_config(config_file, soa_dir=soa_dir, state_dir=state_dir)
    configs = select_instances(system, service, cluster, instance)
    unreadable = deployments_errors(system, (c.service for c in configs))
    broken = config_errors(system, service, instance)
    broken += [
        error_entry(
            c.service,
            c.instance,
            c.cluster,
            [unreadable[c.service]],
            "deployd runs what it read last",
        )
        for c in configs
        if c.service in unreadable
    ]
    configs = [c for c in configs if c.service not in unreadable]
    views = gather(system, configs, with_events=verbose >= 2 or as_json)
    proxy, proxy_error = proxy_states(system, configs) if (verbose or as_json) else ({}, "")
    if as_json:
        print_json([*(view_json(v, proxy) for v in views), *broken])
    elif not views and not broken:
        click.echo("no instances configured for this cluster")
    else:
        render(views, verbose, proxy)
        for entry in broken:
            key = (
                f"{entry['service']}.{entry['instance']}" if entry["instance"] else entry["service"]
            )
            click.secho(
                f"{key} ({entry['cluster']})  Config error",
                fg="red",
                bold=True,
            )
            click.echo(f"  why: {entry['why']}")
        if proxy_error:
            click.echo(f"proxy: {proxy_error}", err=True)
    return 0 if all(v.verdict.ok for v in views) and not broken else 1
