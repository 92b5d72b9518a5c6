"""Load and validate a whole soa-configs tree into one frozen ``SoaTree``.

Called by the CLI (validate/list/info), deployd and the API; hands on typed InstanceConfig,
ServiceConfig, Namespace and MonitoringConfig values and every problem found (file:line).
Reads files here; the rules themselves live in ``config.fields``/``spec`` and ``config.merge``.
"""

from __future__ import annotations

import dataclasses
import json
import os
import re
import stat
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from paasport.config import fields as F
from paasport.config.addons import addon_of_secret
from paasport.config.facts_cache import SmartstackCache, cache_path, file_key
from paasport.config.merge import (
    build_instance,
    deep_merge,
    deploy_groups_of,
    dns_label_problem,
    monitoring_config,
    namespace_from,
    rollback_policies,
)
from paasport.config.schedule import parse_schedule
from paasport.config.secrets import read_index, secret_refs
from paasport.config.source import YamlDoc, load_yaml
from paasport.config.spec import Issue, Obj, field_name
from paasport.config.system import SystemConfig
from paasport.errors import ConfigError, ConfigProblem, NotFoundError
from paasport.types import (
    InstanceConfig,
    JobAction,
    JobConfig,
    MonitoringConfig,
    Namespace,
    RollbackPolicy,
    ServiceConfig,
)

INSTANCE_FILE = re.compile(r"(instances|kubernetes|marathon|eks)-(.+)\.yaml")
BATCH_FILE = re.compile(r"(adhoc|tron)-(.+)\.yaml")  # one-off instances, scheduled jobs
OTHER_PAASTA_FILE = re.compile(
    r"((flink|flinkeks|cassandracluster|cassandraclustereks|kafkacluster|nrtsearchservice"
    r"|nrtsearchserviceeks|monkrelays|paasta_native|chronos|crd|rollback)-.+"
    r"|data|dependencies)\.yaml"
)
_SERVICE_RE = re.compile(F.SERVICE_NAME)
_INSTANCE_RE = re.compile(F.INSTANCE_NAME)
_SERVICE_OWN = frozenset(F.SERVICE_OWN_FIELDS)


@dataclass(frozen=True)
class SoaTree:
    soa_dir: Path
    services: Mapping[str, ServiceConfig]
    instances: tuple[InstanceConfig, ...]
    namespaces: Mapping[str, Namespace]
    monitoring: Mapping[str, MonitoringConfig]
    problems: tuple[ConfigProblem, ...]
    # instances left out because of errors, and services whose instance list may be incomplete
    # (a broken file): the reconciler must leave what runs for them untouched.
    rejected_instances: frozenset[tuple[str, str, str]] = frozenset()
    incomplete_services: frozenset[str] = frozenset()
    clusters: tuple[str, ...] = ()  # every cluster some instance file names, sorted
    instance_files: Mapping[str, tuple[str, ...]] = field(default_factory=dict)  # per service
    # adhoc-<cluster>.yaml: one-off definitions (``paasport run``), never reconciled
    adhoc: tuple[InstanceConfig, ...] = ()
    jobs: tuple[JobConfig, ...] = ()  # tron-<cluster>.yaml: scheduled jobs
    # (service, cluster, instance, add-on): what each valid instance asks for, provisioned yet
    # or not (one waiting for its add-on's credentials is left out, with a note)
    addons: frozenset[tuple[str, str, str, str]] = frozenset()

    def addon_services(self, cluster: str, addon: str) -> tuple[str, ...]:
        """The services of which some instance on ``cluster`` asks for ``addon``."""
        return tuple(sorted({s for s, c, _, a in self.addons if c == cluster and a == addon}))

    def adhoc_for(
        self, service: str | None = None, cluster: str | None = None, instance: str | None = None
    ) -> tuple[InstanceConfig, ...]:
        return tuple(
            c
            for c in self.adhoc
            if (service is None or c.service == service)
            and (cluster is None or c.cluster == cluster)
            and (instance is None or c.instance == instance)
        )

    def jobs_for(
        self, service: str | None = None, cluster: str | None = None, job: str | None = None
    ) -> tuple[JobConfig, ...]:
        return tuple(
            j
            for j in self.jobs
            if (service is None or j.service == service)
            and (cluster is None or j.cluster == cluster)
            and (job is None or j.name == job)
        )

    def instances_for(
        self, service: str | None = None, cluster: str | None = None, instance: str | None = None
    ) -> tuple[InstanceConfig, ...]:
        return tuple(
            c
            for c in self.instances
            if (service is None or c.service == service)
            and (cluster is None or c.cluster == cluster)
            and (instance is None or c.instance == instance)
        )

    @property
    def errors(self) -> tuple[ConfigProblem, ...]:
        return tuple(p for p in self.problems if p.severity == "error")

    @property
    def warnings(self) -> tuple[ConfigProblem, ...]:
        return tuple(p for p in self.problems if p.severity == "warning")

    def raise_for_errors(self) -> None:
        if self.errors:
            raise ConfigError(self.errors)


class _Problems:
    """Collects problems, turning spec Issues into file:line problems."""

    def __init__(self) -> None:
        self.items: list[ConfigProblem] = []

    def add(
        self,
        file: str,
        line: int,
        subject: str,
        fld: str,
        message: str,
        severity: str = "error",
    ) -> None:
        self.items.append(ConfigProblem(file, line, subject, fld, message, severity))

    def issues(
        self,
        doc: YamlDoc,
        issues: Sequence[Issue],
        subject: str = "",
        prefix: tuple[str | int, ...] = (),
    ) -> None:
        for issue in issues:
            self.items.append(
                ConfigProblem(
                    doc.file,
                    doc.line_of((*prefix, *issue.path)),
                    subject,
                    field_name(issue.path),
                    issue.message,
                    issue.severity,
                )
            )


def _shown(soa_dir: Path, service: str, name: str) -> str:
    return os.path.join(soa_dir, service, name)


def _check(spec: Obj, value: object) -> tuple[dict[str, Any], list[Issue]]:
    issues: list[Issue] = []
    out = spec.check({} if value is None else value, (), issues)
    return (out if isinstance(out, dict) else {}), issues


def _service_dirs(soa_dir: Path) -> list[str]:
    try:
        entries = list(os.scandir(soa_dir))
    except OSError as err:
        raise ConfigError(
            f"{soa_dir}: cannot read the soa-configs directory: {err.strerror}"
        ) from None
    return sorted(
        e.name for e in entries if not e.name.startswith((".", "_")) and _is_service_dir(e)
    )


def _is_service_dir(entry: os.DirEntry[str]) -> bool:
    """A folder, or a link that cannot be followed to a file: a service whose folder is a
    dangling link or a loop is unreadable (incomplete), not gone with all its instances."""
    try:
        if entry.is_dir():
            return True
        if not entry.is_symlink():
            return False
        os.stat(entry.path)
    except OSError:
        return True
    return False


@dataclass
class _Smartstack:
    namespaces: dict[str, Namespace]
    lines: dict[str, int]
    file: str
    problems: list[ConfigProblem]
    ok: bool


def _load_smartstack(soa_dir: Path, service: str, present: bool) -> _Smartstack:
    file = _shown(soa_dir, service, "smartstack.yaml")
    if not present:
        return _Smartstack({}, {}, file, [], True)
    doc = load_yaml(Path(file), file)
    out = _Problems()
    out.items.extend(doc.problems)
    namespaces: dict[str, Namespace] = {}
    lines: dict[str, int] = {}
    data = doc.data
    if data is None:
        data = {}
    if not isinstance(data, dict):
        out.add(file, 1, "", "", "expected a mapping of namespace names to namespaces")
        data = {}
    for name, raw in data.items():
        full = f"{service}.{name}"
        line = doc.line_of((name,))
        if name.startswith("_"):
            continue
        if not _INSTANCE_RE.fullmatch(name):
            out.add(
                file,
                line,
                full,
                "name",
                f'expected lowercase letters, digits, _ and - (not at either end), found "{name}"',
            )
            continue
        values, issues = _check(F.NAMESPACE, raw)
        out.issues(doc, issues, full, (name,))
        if any(i.severity == "error" for i in issues):
            continue
        namespaces[full] = namespace_from(service, name, values)
        lines[full] = doc.line_of((name, "proxy_port"))
    ok = not any(p.severity == "error" for p in out.items)
    return _Smartstack(namespaces, lines, file, out.items, ok)


def _other_smartstack(soa_dir: Path, service: str, cache: SmartstackCache | None) -> _Smartstack:
    """An unselected service's namespaces: from the cache while its file is unchanged."""
    file = _shown(soa_dir, service, "smartstack.yaml")
    try:
        st = os.stat(file)
    except OSError:
        return _Smartstack({}, {}, file, [], True)  # none (or a broken link): no namespaces
    if not stat.S_ISREG(st.st_mode):
        return _Smartstack({}, {}, file, [], True)
    if cache is None:
        return _load_smartstack(soa_dir, service, True)
    key = file_key(st)
    hit = cache.get(service, key)
    if hit is not None:
        return _Smartstack(hit[0], hit[1], file, [], hit[2])
    ss = _load_smartstack(soa_dir, service, True)
    cache.put(service, key, ss.namespaces, ss.lines, ss.ok)
    return ss


def _locate_in(
    path: tuple[str | int, ...],
    inst_doc: YamlDoc,
    instance: str,
    svc_doc: YamlDoc | None,
) -> tuple[str, int]:
    """Which file and line wrote the value at ``path`` (instance file first, then service.yaml)."""
    for k in range(len(path), 0, -1):
        prefix = path[:k]
        if inst_doc.has((instance, *prefix)):
            return inst_doc.file, inst_doc.line_of((instance, *prefix))
        if svc_doc is not None and svc_doc.has(prefix):
            return svc_doc.file, svc_doc.line_of(prefix)
    return inst_doc.file, inst_doc.line_of((instance,))


def _with_secret_versions(
    config: InstanceConfig,
    system: SystemConfig,
    doc: YamlDoc,
    svc_doc: YamlDoc | None,
    out: _Problems,
    prefix: tuple[str | int, ...] | None = None,
) -> InstanceConfig | None:
    """``config`` with the versions of the secrets its env uses (they enter its config hash: a
    changed secret bounces it); None, with a problem naming the field, when one is missing.
    Only this host's cluster: its secrets are in this state dir."""
    refs = secret_refs(config.env)
    if not refs:
        return config

    def _locate(path: tuple[str | int, ...], *_: object) -> tuple[str, int]:
        if prefix is None:
            return _locate_in(path, doc, config.instance, svc_doc)
        full = (*prefix, *path)
        return doc.file, doc.line_of(full if doc.has(full) else prefix)

    try:
        index = read_index(system.state_dir, config.cluster, config.service)
    except ConfigError as err:
        where, at = _locate(("env",), doc, config.instance, svc_doc)
        out.add(where, at, config.instance, "env", str(err), "error")
        return None
    missing = sorted(k for k, name in refs.items() if name not in index)
    asked = {k: addon_of_secret(refs[k]) for k in missing}
    waiting = sorted({a for a in asked.values() if a is not None and a in config.addons})
    for addon in waiting:  # not an error: deployd provisions it, then the instance starts
        where, at = _locate(("addons", addon), doc, config.instance, svc_doc)
        out.add(
            where, at, config.instance, f"addons.{addon}",
            f"waiting for its database on cluster {config.cluster}: deployd (paasport up) "
            "provisions it and keeps its credentials as secrets, then starts the instance",
            "note",
        )  # fmt: skip
    missing = [k for k in missing if asked[k] not in waiting]
    for key in missing:
        where, at = _locate(("env", key), doc, config.instance, svc_doc)
        out.add(
            where, at, config.instance, f"env.{key}",
            f"{refs[key]!r}: no such secret of {config.service} on cluster {config.cluster} "
            f"(paasport secret add -s {config.service} -n {refs[key]})",
            "error",
        )  # fmt: skip
    if missing or waiting:
        return None
    versions = tuple(sorted((name, index[name].version) for name in set(refs.values())))
    return dataclasses.replace(config, secret_versions=versions)


def _load_deployments_json(path: Path, file: str, out: _Problems) -> None:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        out.add(file, err.lineno, "", "", f"invalid JSON: {err.msg}")
        return
    except RecursionError:
        out.add(file, 1, "", "", "invalid JSON: nested too deeply")
        return
    except UnicodeDecodeError as err:
        out.add(file, 0, "", "", f"cannot read: {err}")
        return
    except ValueError as err:  # e.g. an integer of thousands of digits
        out.add(file, 1, "", "", f"invalid JSON: {err}")
        return
    except OSError as err:
        out.add(file, 0, "", "", f"cannot read: {err.strerror or err}")
        return
    if not isinstance(data, dict):
        out.add(file, 1, "", "", "expected a JSON object (deployments.json v2)")


def _load_service(
    soa_dir: Path,
    service: str,
    files: list[str],
    system: SystemConfig,
    namespaces: Mapping[str, Namespace],
    out: _Problems,
    broken_smartstack: Collection[str] = (),
    batch: _Batch | None = None,
) -> tuple[ServiceConfig, MonitoringConfig, list[InstanceConfig], set[tuple[str, str, str]], bool]:
    """Load one service folder; returns (service, monitoring, instances, rejected, complete).
    Its adhoc instances and jobs go into ``batch``."""
    complete = True
    rejected: set[tuple[str, str, str]] = set()
    base = soa_dir / service

    # service.yaml
    svc_doc: YamlDoc | None = None
    svc_values: dict[str, Any] = {}
    svc_ok = True
    if "service.yaml" in files:
        svc_doc = load_yaml(base / "service.yaml", _shown(soa_dir, service, "service.yaml"))
        out.items.extend(svc_doc.problems)
        svc_values, issues = _check(F.SERVICE, svc_doc.data)
        out.issues(svc_doc, issues, service)
        svc_ok = not svc_doc.problems and not any(i.severity == "error" for i in issues)
    else:
        out.add(
            _shown(soa_dir, service, "service.yaml"),
            0,
            service,
            "",
            "missing: description and git_url are unknown",
            "warning",
        )
    service_defaults = {k: v for k, v in svc_values.items() if k not in _SERVICE_OWN}

    # deploy.yaml
    deploy_groups: tuple[str, ...] | None = None
    auto_rollback: dict[str, RollbackPolicy] = {}
    if "deploy.yaml" in files:
        doc = load_yaml(base / "deploy.yaml", _shown(soa_dir, service, "deploy.yaml"))
        out.items.extend(doc.problems)
        if not doc.problems:
            values, issues = _check(F.DEPLOY, doc.data)
            for i, step in enumerate(values.get("pipeline") or ()):
                if not isinstance(step, dict):
                    continue
                spec = F.PARALLEL if "parallel" in step else F.STEP
                step_issues: list[Issue] = []
                spec.check(step, ("pipeline", i), step_issues)
                issues.extend(step_issues)
            out.issues(doc, issues, service)
            if not any(i.severity == "error" for i in issues):
                deploy_groups = deploy_groups_of(values.get("pipeline") or ())
                auto_rollback = rollback_policies(values.get("pipeline") or ())

    # monitoring.yaml
    mon_values: dict[str, Any] = {}
    if "monitoring.yaml" in files:
        doc = load_yaml(base / "monitoring.yaml", _shown(soa_dir, service, "monitoring.yaml"))
        out.items.extend(doc.problems)
        mon_values, issues = _check(F.MONITORING, doc.data)
        out.issues(doc, issues, service)
    service_monitoring = monitoring_config(
        deep_merge(
            system.instance_defaults.get("monitoring") or {},  # type: ignore[arg-type]
            svc_values.get("monitoring") or {},
            mon_values,
        )
    )

    if "deployments.json" in files:
        _load_deployments_json(
            base / "deployments.json", _shown(soa_dir, service, "deployments.json"), out
        )

    # instance files
    instances: list[InstanceConfig] = []
    seen: dict[tuple[str, str], str] = {}  # (cluster, instance) -> file
    for name in files:
        match = INSTANCE_FILE.fullmatch(name)
        if match is None:
            continue
        cluster = match.group(2)
        file = _shown(soa_dir, service, name)
        doc = load_yaml(base / name, file)
        if doc.problems:
            out.items.extend(doc.problems)
            complete = False
            continue
        if doc.data is None:
            # a truncating save or `: >` must not read as "stop everything": {} says it on purpose
            out.add(file, 1, "", "", "empty file: write {} to mean no instances")
            complete = False
            continue
        if cluster not in system.clusters:
            out.add(
                file,
                0,
                "",
                "",
                f'cluster "{cluster}" is not in the system config: validated, '
                "not deployed from this host",
                "note",
            )
        data = doc.data
        if not isinstance(data, dict):
            out.add(file, 1, "", "", "expected a mapping of instance names to instances")
            complete = False
            continue
        for instance, raw in data.items():
            if instance.startswith("_"):
                continue  # a template: never run, content free
            line = doc.line_of((instance,))
            bad_name = None
            if not _INSTANCE_RE.fullmatch(instance):
                bad_name = (
                    "expected lowercase letters, digits, _ and - (not at either end), "
                    f'found "{instance}"'
                )
            else:
                bad_name = dns_label_problem(instance)
            if bad_name:
                out.add(file, line, instance, "name", bad_name)
                rejected.add((service, cluster, instance))
                continue
            if (cluster, instance) in seen:
                out.add(
                    file,
                    line,
                    instance,
                    "name",
                    f'expected instance names unique per cluster, found "{instance}" '
                    f"again (also in {seen[cluster, instance]})",
                )
                rejected.add((service, cluster, instance))
                continue
            seen[cluster, instance] = file
            values, issues = _check(F.INSTANCE, raw)
            out.issues(doc, issues, instance, (instance,))
            fields_ok = not any(i.severity == "error" for i in issues)
            config, rule_issues = build_instance(
                service=service,
                cluster=cluster,
                instance=instance,
                layers=(system.instance_defaults, service_defaults, values),
                monitoring_file=mon_values,
                namespaces=namespaces,
                deploy_groups=deploy_groups,
                source_file=file,
                source_line=line,
                build=fields_ok and svc_ok,
                allowed_host_paths=system.allowed_host_paths,
                allow_host_network=system.allow_host_network,
                broken_smartstack=broken_smartstack,
            )
            for issue in rule_issues:
                where, at = _locate_in(issue.path, doc, instance, svc_doc)
                out.add(where, at, instance, field_name(issue.path), issue.message, issue.severity)
            if config is not None and config.addons and batch is not None:
                batch.addons |= {(service, cluster, instance, a) for a in config.addons}
            if config is not None and cluster == system.local_cluster:
                config = _with_secret_versions(config, system, doc, svc_doc, out)
            if config is None:
                rejected.add((service, cluster, instance))
            else:
                instances.append(config)

    if batch is not None:
        monitoring_values = deep_merge(
            system.instance_defaults.get("monitoring") or {},  # type: ignore[arg-type]
            svc_values.get("monitoring") or {},
            mon_values,
        )
        context = _BatchContext(
            service, system, service_defaults, mon_values, monitoring_values, namespaces,
            deploy_groups, svc_ok, svc_doc, batch.addons,
        )  # fmt: skip
        for name in files:
            match = BATCH_FILE.fullmatch(name)
            if match is not None:
                _load_batch_file(context, base / name, _shown(soa_dir, service, name),
                                 match.group(1), match.group(2), out, batch)  # fmt: skip

    git_url = svc_values.get("git_url")
    if isinstance(git_url, str) and _is_local_path(git_url) and not os.path.isabs(git_url):
        git_url = os.path.normpath(os.path.join(os.path.abspath(base), git_url))
    svc = ServiceConfig(
        name=service,
        description=svc_values.get("description") or "",
        git_url=git_url,
        docker_registry=svc_values.get("docker_registry"),
        deploy_groups=deploy_groups or (),
        source_file=svc_doc.file if svc_doc is not None else "",
        auto_rollback=auto_rollback,
    )
    if not svc_ok:
        complete = False
    return svc, service_monitoring, instances, rejected, complete


@dataclass
class _Batch:
    adhoc: list[InstanceConfig] = field(default_factory=list)
    jobs: list[JobConfig] = field(default_factory=list)
    addons: set[tuple[str, str, str, str]] = field(default_factory=set)  # SoaTree.addons


@dataclass(frozen=True)
class _BatchContext:
    service: str
    system: SystemConfig
    service_defaults: Mapping[str, Any]
    monitoring_file: Mapping[str, Any]
    monitoring_values: Mapping[str, Any]
    namespaces: Mapping[str, Namespace]
    deploy_groups: tuple[str, ...] | None
    service_ok: bool
    svc_doc: YamlDoc | None
    asked: set[tuple[str, str, str, str]]  # SoaTree.addons: one-offs and jobs ask too


# what a job's action takes from service.yaml (the rest is about long-running instances)
_ACTION_DEFAULTS = ("cpus", "mem", "disk", "env", "extra_volumes", "pool", "net", "addons")
_ACTION_OWN = ("cpus", "mem", "disk", "env", "extra_volumes", "pool")


def _name_problem(name: str) -> str | None:
    if not _INSTANCE_RE.fullmatch(name):
        return f'expected lowercase letters, digits, _ and - (not at either end), found "{name}"'
    return dns_label_problem(name)


def _load_batch_file(
    ctx: _BatchContext, path: Path, file: str, kind: str, cluster: str, out: _Problems,
    batch: _Batch,
) -> None:  # fmt: skip
    """One adhoc- or tron- file. Its errors leave out only its own entries: what runs as
    long-running instances never depends on them."""
    doc = load_yaml(path, file)
    if doc.problems:
        out.items.extend(doc.problems)
        return
    if cluster not in ctx.system.clusters:
        out.add(file, 0, "", "", f'cluster "{cluster}" is not in the system config: validated, '
                "not run from this host", "note")  # fmt: skip
    data = {} if doc.data is None else doc.data
    what = "instance names to adhoc instances" if kind == "adhoc" else "job names to jobs"
    if not isinstance(data, dict):
        out.add(file, 1, "", "", f"expected a mapping of {what}")
        return
    for name, raw in data.items():
        if not isinstance(name, str) or name.startswith("_"):
            continue  # a template
        problem = _name_problem(name)
        if problem:
            out.add(file, doc.line_of((name,)), name, "name", problem)
            continue
        if kind == "adhoc":
            config = _adhoc_instance(ctx, doc, cluster, name, raw, out)
            if config is not None:
                batch.adhoc.append(config)
        else:
            job = _job(ctx, doc, cluster, name, raw, out)
            if job is not None:
                batch.jobs.append(job)


def _build(
    ctx: _BatchContext, doc: YamlDoc, cluster: str, instance: str, layers: Sequence[Any],
    prefix: tuple[str | int, ...], fields_ok: bool, out: _Problems, subject: str,
) -> InstanceConfig | None:  # fmt: skip
    config, rule_issues = build_instance(
        service=ctx.service, cluster=cluster, instance=instance, layers=layers,
        monitoring_file=ctx.monitoring_file, namespaces=ctx.namespaces,
        deploy_groups=ctx.deploy_groups, source_file=doc.file,
        source_line=doc.line_of(prefix), build=fields_ok and ctx.service_ok,
        allowed_host_paths=ctx.system.allowed_host_paths,
        allow_host_network=ctx.system.allow_host_network,
    )  # fmt: skip
    for issue in rule_issues:
        at = doc.line_of((*prefix, *issue.path)) if doc.has((*prefix, *issue.path)) else (
            doc.line_of(prefix))  # fmt: skip
        out.add(doc.file, at, subject, field_name(issue.path), issue.message, issue.severity)
    if config is None:
        return None
    config = dataclasses.replace(config, instances=1, registrations=(), min_instances=None,
                                 max_instances=None, autoscaling=None)  # fmt: skip
    ctx.asked.update((ctx.service, cluster, instance, a) for a in config.addons)
    if cluster == ctx.system.local_cluster:
        return _with_secret_versions(config, ctx.system, doc, None, out, prefix)
    return config


def _adhoc_instance(ctx: _BatchContext, doc: YamlDoc, cluster: str, name: str, raw: object,
                    out: _Problems) -> InstanceConfig | None:  # fmt: skip
    values, issues = _check(F.ADHOC, raw)
    out.issues(doc, issues, name, (name,))
    fields_ok = not any(i.severity == "error" for i in issues)
    defaults = {k: v for k, v in ctx.service_defaults.items() if k in F.ADHOC_FIELDS}
    layers = (ctx.system.instance_defaults, defaults, values)
    return _build(ctx, doc, cluster, name, layers, (name,), fields_ok, out, name)


def _actions_of(raw: object, doc: YamlDoc, job: str, out: _Problems
                ) -> list[tuple[str, object, tuple[str | int, ...]]]:  # fmt: skip
    """(name, raw action, its path) of a job's actions, a mapping or PaaSTA's older list."""
    found: list[tuple[str, object, tuple[str | int, ...]]] = []
    if isinstance(raw, dict):
        return [(str(k), v, (job, "actions", k)) for k, v in raw.items()]
    for i, item in enumerate(raw if isinstance(raw, list) else ()):
        name = item.get("name") if isinstance(item, dict) else None
        if not isinstance(name, str):
            out.add(doc.file, doc.line_of((job, "actions", i)), job, f"actions[{i}].name",
                    "required: expected the action's name in a list of actions")  # fmt: skip
            continue
        found.append((name, {k: v for k, v in item.items() if k != "name"}, (job, "actions", i)))
    return found


def _ordered(requires: Mapping[str, tuple[str, ...]]) -> list[str] | None:
    """The actions in an order where each comes after what it requires; None on a cycle."""
    done: list[str] = []
    left = dict(requires)
    while left:
        ready = sorted(a for a, needs in left.items() if all(n in done for n in needs))
        if not ready:
            return None
        done.extend(ready)
        for a in ready:
            del left[a]
    return done


def _job(ctx: _BatchContext, doc: YamlDoc, cluster: str, name: str, raw: object,
         out: _Problems) -> JobConfig | None:  # fmt: skip
    values, issues = _check(F.JOB, raw)
    out.issues(doc, issues, name, (name,))
    ok = not any(i.severity == "error" for i in issues)
    schedule, why = parse_schedule(values.get("schedule"), values.get("time_zone"))
    if "schedule" in values and schedule is None:
        fld = "time_zone" if why.startswith("time_zone") else "schedule"
        out.add(doc.file, doc.line_of((name, fld)), name, fld, why.removeprefix("time_zone: "))
        ok = False
    other = values.get("service")
    if other is not None and other != ctx.service:
        out.add(doc.file, doc.line_of((name, "service")), name, "service",
                f"expected this service ({ctx.service}): paasport runs a job with its own "
                f"service's image, found {other!r}")  # fmt: skip
        ok = False
    job_group = values.get("deploy_group")
    defaults = {k: v for k, v in ctx.service_defaults.items() if k in _ACTION_DEFAULTS}
    actions: dict[str, JobAction] = {}
    requires: dict[str, tuple[str, ...]] = {}
    listed = _actions_of(values.get("actions"), doc, name, out) if "actions" in values else []
    if "actions" in values and not listed:
        out.add(doc.file, doc.line_of((name, "actions")), name, "actions",
                "expected at least one action")  # fmt: skip
        ok = False
    for action, araw, path in listed:
        subject = f"{name}.{action}"
        problem = _name_problem(action)
        if problem:
            out.add(doc.file, doc.line_of(path), subject, "name", problem)
            ok = False
            continue
        avalues, aissues = _check(F.ACTION, araw)
        out.issues(doc, aissues, subject, path)
        fields_ok = not any(i.severity == "error" for i in aissues)
        if avalues.get("service") not in (None, ctx.service):
            out.add(
                doc.file,
                doc.line_of((*path, "service")),
                subject,
                "service",
                f"expected this service ({ctx.service}), found {avalues['service']!r}",
            )
            fields_ok = False  # fmt: skip
        group = avalues.get("deploy_group") or job_group
        if group is None:
            out.add(doc.file, doc.line_of(path), subject, "deploy_group",
                    "required: expected a deploy group (of the action or its job) whose sha "
                    "the action runs")  # fmt: skip
            ok = False
            continue
        own = {k: avalues[k] for k in _ACTION_OWN if k in avalues}
        own.update(cmd=avalues.get("command", ""), deploy_group=group)
        config = _build(ctx, doc, cluster, subject, (ctx.system.instance_defaults, defaults, own),
                        path, fields_ok, out, subject)  # fmt: skip
        if config is None:
            ok = False
            continue
        actions[action] = JobAction(
            action, config, tuple(avalues.get("requires") or ()), int(avalues.get("retries", 0)),
            float(avalues.get("retries_delay", 0.0)), avalues.get("expected_runtime"),
        )  # fmt: skip
        requires[action] = actions[action].requires
    for action, needs in requires.items():
        for need in needs:
            if need not in requires and need not in {a for a, _, _ in listed}:
                path = next(p for a, _, p in listed if a == action)
                out.add(
                    doc.file,
                    doc.line_of((*path, "requires")),
                    f"{name}.{action}",
                    "requires",
                    f'expected an action of job {name}, found "{need}"',
                )
                ok = False  # fmt: skip
    order = _ordered({a: tuple(n for n in r if n in requires) for a, r in requires.items()})
    if order is None:
        out.add(doc.file, doc.line_of((name, "actions")), name, "actions",
                "expected actions without a cycle of requires")  # fmt: skip
        ok = False
    if not ok or schedule is None or order is None or not actions:
        return None
    monitoring = monitoring_config(deep_merge(ctx.monitoring_values,
                                              values.get("monitoring") or {}))  # fmt: skip
    return JobConfig(
        service=ctx.service, cluster=cluster, name=name, schedule=schedule.text,
        time_zone=schedule.time_zone, actions=tuple(actions[a] for a in order),
        deploy_group=job_group or actions[order[0]].config.deploy_group,
        enabled=bool(values.get("enabled", True)),
        allow_overlap=bool(values.get("allow_overlap", False)),
        expected_runtime=float(values.get("expected_runtime") or 86400.0),
        monitoring=monitoring, source_file=doc.file, source_line=doc.line_of((name,)),
    )  # fmt: skip


_URL_LIKE = re.compile(r"[a-zA-Z][a-zA-Z0-9+.-]*://|[^/@:]+@[^/:]+:")


def _is_local_path(url: str) -> bool:
    """A git_url without a scheme or ``user@host:`` is a filesystem path."""
    return _URL_LIKE.match(url) is None


def _classify_files(soa_dir: Path, service: str, files: list[str], out: _Problems) -> None:
    for name in files:
        file = _shown(soa_dir, service, name)
        if OTHER_PAASTA_FILE.fullmatch(name):
            out.add(file, 0, "", "", "a PaaSTA file kind paasport does not read", "warning")
        elif name.endswith((".yaml", ".yml")) and not (
            INSTANCE_FILE.fullmatch(name)
            or BATCH_FILE.fullmatch(name)
            or name in ("service.yaml", "deploy.yaml", "smartstack.yaml", "monitoring.yaml")
        ):
            out.add(file, 0, "", "", "not a soa-configs file kind; ignored", "warning")


_KNOWN_FILES = frozenset(
    ("service.yaml", "deploy.yaml", "smartstack.yaml", "monitoring.yaml", "deployments.json")
)


def _not_a_file(path: str) -> str:
    try:
        os.stat(path)
    except OSError as err:  # a dangling link or a loop: say which
        return f"a link that cannot be followed ({err.strerror or err})"
    return "a special file"


def _list_files(path: Path, shown: str) -> tuple[list[str], list[ConfigProblem]]:
    """The files of one service folder, and errors for what cannot be read: an unreadable folder
    or a soa-configs file name that is not a file. Either makes the service incomplete, so the
    reconciler leaves what runs for it alone instead of reading "no instances"."""
    try:
        entries = list(os.scandir(path))
    except OSError as err:
        why = err.strerror or str(err)
        return [], [ConfigProblem(shown, 0, "", "", f"cannot read the service folder: {why}")]
    files: list[str] = []
    problems: list[ConfigProblem] = []
    for entry in entries:
        try:
            is_file = entry.is_file()
            is_dir = not is_file and entry.is_dir()
        except OSError:
            is_file = is_dir = False
        if is_file:
            files.append(entry.name)
        elif entry.name in _KNOWN_FILES or INSTANCE_FILE.fullmatch(entry.name):
            found = "a directory" if is_dir else _not_a_file(entry.path)
            problems.append(
                ConfigProblem(
                    os.path.join(shown, entry.name), 0, "", "", f"expected a file, found {found}"
                )
            )
    return sorted(files), problems


def load_tree(
    soa_dir: Path,
    services: Sequence[str] | None = None,
    *,
    system: SystemConfig | None = None,
) -> SoaTree:
    """Load, merge and validate ``soa_dir`` (only ``services`` when given).

    Every smartstack.yaml is read even when ``services`` is given: registrations and proxy port
    uniqueness are tree-wide rules. ``system`` supplies instance defaults and the known
    clusters (default: a SystemConfig with one cluster ``local``).
    """
    system = system if system is not None else SystemConfig(soa_dir=soa_dir)
    out = _Problems()
    all_dirs = _service_dirs(soa_dir)
    if services is not None:
        missing = [s for s in services if s not in all_dirs]
        if missing:
            raise NotFoundError(
                f"no service {', '.join(missing)} in {soa_dir} "
                f"(known: {', '.join(all_dirs) or 'none'})"
            )
    selected = list(services) if services is not None else all_dirs
    chosen = set(selected)

    files_of: dict[str, list[str]] = {}
    unreadable: set[str] = set()
    broken_smartstack: set[str] = set()
    for name in selected:
        files_of[name], listing_problems = _list_files(soa_dir / name, str(soa_dir / name))
        if listing_problems:
            unreadable.add(name)
            if any(p.file.endswith("/smartstack.yaml") for p in listing_problems):
                broken_smartstack.add(name)
            if name in chosen:
                out.items.extend(listing_problems)

    # phase 1: every namespace of the tree
    namespaces: dict[str, Namespace] = {}
    ns_where: dict[str, tuple[str, int]] = {}
    # the other services' facts come from a cache when only some services are loaded
    cache = None
    if services is not None:
        cache = SmartstackCache(cache_path(soa_dir, system.state_dir), soa_dir)
    for name in all_dirs:
        if name in chosen:
            ss = _load_smartstack(soa_dir, name, "smartstack.yaml" in files_of[name])
        else:
            ss = _other_smartstack(soa_dir, name, cache)
        namespaces.update(ss.namespaces)
        for full, line in ss.lines.items():
            ns_where[full] = (ss.file, line)
        if not ss.ok:
            broken_smartstack.add(name)
        if name in chosen:
            out.items.extend(ss.problems)

    if cache is not None:
        cache.save()

    # proxy ports unique across the whole tree
    by_port: dict[int, list[str]] = {}
    for full, ns in namespaces.items():
        if ns.proxy_port is not None:
            by_port.setdefault(ns.proxy_port, []).append(full)
    for port, users in by_port.items():
        if len(users) < 2:
            continue
        for full in users:
            if full.split(".", 1)[0] not in chosen:
                continue
            others = ", ".join(
                f"{o} in {ns_where[o][0]}:{ns_where[o][1]}" for o in users if o != full
            )
            file, line = ns_where[full]
            out.add(
                file,
                line,
                full,
                "proxy_port",
                f"expected a port no other namespace uses, found {port} (also used by {others})",
            )

    # phase 2: the selected services
    svc_configs: dict[str, ServiceConfig] = {}
    monitoring: dict[str, MonitoringConfig] = {}
    instances: list[InstanceConfig] = []
    rejected: set[tuple[str, str, str]] = set()
    incomplete: set[str] = set()
    clusters: set[str] = set()
    instance_files: dict[str, tuple[str, ...]] = {}
    batch = _Batch()
    for name in selected:
        files = files_of[name]
        if not _SERVICE_RE.fullmatch(name) or len(name) > 63 or dns_label_problem(name):
            out.add(
                str(soa_dir / name),
                0,
                name,
                "name",
                "expected a service name of lowercase letters, digits, _ and - "
                "(at most 63 characters, a DNS-1123 label once _ becomes --)",
            )
            incomplete.add(name)
            continue
        _classify_files(soa_dir, name, files, out)
        svc, mon, insts, rej, complete = _load_service(
            soa_dir, name, files, system, namespaces, out, broken_smartstack, batch
        )
        if name in broken_smartstack:
            # built without the broken file's namespace defaults they would differ from what
            # runs: leave them all out, so every consumer keeps the last good config
            rej |= {(c.service, c.cluster, c.instance) for c in insts}
            insts = []
            complete = False
        svc_configs[name] = svc
        monitoring[name] = mon
        instances.extend(insts)
        rejected |= rej
        if not complete or name in unreadable:
            incomplete.add(name)
        own_files = tuple(f for f in files if INSTANCE_FILE.fullmatch(f))
        instance_files[name] = own_files
        for f in own_files:
            match = INSTANCE_FILE.fullmatch(f)
            assert match is not None
            clusters.add(match.group(2))

    for p in system.problems:
        out.items.append(p)
    problems = tuple(sorted(set(out.items), key=lambda p: (p.file, p.line, p.subject, p.field)))
    return SoaTree(
        soa_dir=soa_dir,
        services=svc_configs,
        instances=tuple(instances),
        namespaces=namespaces,
        monitoring=monitoring,
        problems=problems,
        rejected_instances=frozenset(rejected),
        incomplete_services=frozenset(incomplete),
        clusters=tuple(sorted(clusters)),
        instance_files=instance_files,
        adhoc=tuple(batch.adhoc),
        jobs=tuple(batch.jobs),
        addons=frozenset(batch.addons),
    )
