"""The system config (paasport.yaml): clusters and their engines, paths, discovery and alert sinks.

``load_system_config`` is called once per process by the CLI (``cli.options.settings_from``) and
``paasport up``; the frozen ``SystemConfig`` it returns is passed down explicitly, never re-read.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from paasport.config.fields import SYSTEM
from paasport.config.source import YamlDoc, load_yaml
from paasport.config.spec import Issue, field_name
from paasport.errors import ConfigError, ConfigProblem
from paasport.types import ServiceConfig

DEFAULT_CONFIG_PATH = Path("/etc/paasport/paasport.yaml")
DEFAULT_SOA_DIR = Path("/etc/paasport/soa-configs")
DEFAULT_STATE_DIR = Path("/var/lib/paasport")

EngineKind = Literal["docker", "swarm"]


@dataclass(frozen=True)
class ClusterConfig:
    name: str
    engine: EngineKind = "docker"
    docker_host: str | None = None  # None: the local engine (DOCKER_HOST or its socket)
    api_url: str | None = None  # the cluster's paasport API, for the CLI on other clusters' hosts


@dataclass(frozen=True)
class DiscoveryConfig:
    registry: Literal["sqlite", "zookeeper"] = "sqlite"
    zookeeper_hosts: str = "127.0.0.1:2181"
    zookeeper_path: str = "/paasport"
    # a host that dies leaves every proxy this long after its agent's last heartbeat
    zookeeper_session_timeout_seconds: float = 10.0
    proxy_bind: tuple[str, ...] = ("127.0.0.1",)
    haproxy_bin: str = "haproxy"


@dataclass(frozen=True)
class MonitoringSinksConfig:
    alertmanager_url: str | None = None
    webhook_url: str | None = None
    smtp_host: str | None = None
    smtp_port: int = 25
    smtp_from: str | None = None
    check_interval_seconds: float = 10.0


@dataclass(frozen=True)
class ApiConfig:
    """The HTTP API of ``paasport api`` and ``paasport up`` (docs/api.md)."""

    listen: str = "127.0.0.1:5054"  # PaaSTA's API port
    require_token_for_reads: bool = False  # mutations always need one


DEFAULT_PG_BIN = "/usr/lib/postgresql/15/bin"  # Debian 12's postgresql-15


@dataclass(frozen=True)
class PostgresAddonConfig:
    """Where the Postgres add-on's databases live: an existing server (``url``, a superuser's,
    never shown) or, without one, the server paasport runs itself under ``state_dir/postgres``."""

    url: str | None = field(default=None, repr=False)
    task_host: str | None = None  # the address tasks reach ``url``'s server at (default its host)
    backup_keep_days: int = 7
    bin_dir: str = DEFAULT_PG_BIN


@dataclass(frozen=True)
class AddonsConfig:
    postgres: PostgresAddonConfig = field(default_factory=PostgresAddonConfig)


def _default_clusters() -> Mapping[str, ClusterConfig]:
    return {"local": ClusterConfig("local", "docker")}


@dataclass(frozen=True)
class SystemConfig:
    clusters: Mapping[str, ClusterConfig] = field(default_factory=_default_clusters)
    local_cluster: str = "local"
    soa_dir: Path = DEFAULT_SOA_DIR
    state_dir: Path = DEFAULT_STATE_DIR
    docker_registry: str | None = None
    instance_defaults: Mapping[str, object] = field(default_factory=dict)
    discovery: DiscoveryConfig = field(default_factory=DiscoveryConfig)
    monitoring: MonitoringSinksConfig = field(default_factory=MonitoringSinksConfig)
    api: ApiConfig = field(default_factory=ApiConfig)
    addons: AddonsConfig = field(default_factory=AddonsConfig)
    # host access: extra_volumes hostPath prefixes instances may mount, and net: host
    allowed_host_paths: tuple[str, ...] = ()
    allow_host_network: bool = False
    source_file: str = ""  # "" when no file was found (all defaults)
    problems: tuple[ConfigProblem, ...] = ()  # warnings found while loading (errors raise)

    @property
    def local(self) -> ClusterConfig:
        return self.clusters[self.local_cluster]


def _problems(doc: YamlDoc, issues: list[Issue]) -> list[ConfigProblem]:
    out = list(doc.problems)
    for issue in issues:
        out.append(
            ConfigProblem(
                doc.file,
                doc.line_of(issue.path),
                "",
                field_name(issue.path),
                issue.message,
                issue.severity,
            )
        )
    return out


def system_config_from(
    data: Mapping[str, object],
    *,
    source_file: str,
    base_dir: Path,
    soa_dir: Path | None,
    state_dir: Path | None,
    problems: tuple[ConfigProblem, ...] = (),
) -> SystemConfig:
    """Build a SystemConfig from already-validated (normalized) values. Pure."""
    raw_clusters = data.get("clusters")
    clusters: dict[str, ClusterConfig] = {}
    if isinstance(raw_clusters, dict) and raw_clusters:
        for name, spec in raw_clusters.items():
            spec = spec if isinstance(spec, dict) else {}
            clusters[name] = ClusterConfig(
                name,
                spec.get("engine") or "docker",
                spec.get("docker_host"),
                (spec.get("api_url") or "").rstrip("/") or None,
            )
    else:
        clusters = dict(_default_clusters())

    def path_of(key: str, explicit: Path | None, env: str, default: Path) -> Path:
        if explicit is not None:
            return explicit
        if os.environ.get(env):
            return Path(os.environ[env])
        value = data.get(key)
        if isinstance(value, str):
            return base_dir / value
        return default

    disc = data.get("discovery") if isinstance(data.get("discovery"), dict) else {}
    mon = data.get("monitoring") if isinstance(data.get("monitoring"), dict) else {}
    api = data.get("api") if isinstance(data.get("api"), dict) else {}
    assert isinstance(disc, dict) and isinstance(mon, dict) and isinstance(api, dict)
    addons = data.get("addons") if isinstance(data.get("addons"), dict) else {}
    postgres = addons.get("postgres") if isinstance(addons, dict) else None
    assert postgres is None or isinstance(postgres, dict)
    disc_args: dict[str, Any] = {
        k: (tuple(v) if isinstance(v, list) else v) for k, v in disc.items()
    }
    defaults = data.get("instance_defaults")
    allowed = data.get("allowed_host_paths")
    return SystemConfig(
        clusters=clusters,
        local_cluster=str(data.get("local_cluster") or "local"),
        soa_dir=path_of("soa_dir", soa_dir, "PAASPORT_SOA_DIR", DEFAULT_SOA_DIR),
        state_dir=path_of("state_dir", state_dir, "PAASPORT_STATE_DIR", DEFAULT_STATE_DIR),
        docker_registry=data.get("docker_registry"),  # type: ignore[arg-type]
        instance_defaults=defaults if isinstance(defaults, dict) else {},
        discovery=DiscoveryConfig(**disc_args),
        monitoring=MonitoringSinksConfig(**mon),
        api=ApiConfig(**api),
        addons=AddonsConfig(PostgresAddonConfig(**(postgres or {}))),
        allowed_host_paths=tuple(p for p in allowed if isinstance(p, str))
        if isinstance(allowed, list)
        else (),
        allow_host_network=data.get("allow_host_network") is True,
        source_file=source_file,
        problems=problems,
    )


def config_path(path: Path | None = None) -> Path:
    """Where the system config is read from: the argument, ``$PAASPORT_CONFIG``, the default."""
    if path is not None:
        return path
    env = os.environ.get("PAASPORT_CONFIG")
    return Path(env) if env else DEFAULT_CONFIG_PATH


def default_config_text(soa_dir: Path, state_dir: Path) -> str:
    """The one-host paasport.yaml that ``paasport up`` writes when there is none. Pure."""
    return (
        "# paasport system config, written by `paasport up` (one host, the local Docker engine).\n"
        "# Every field: `paasport schema system`.\n"
        "local_cluster: local\n"
        "clusters:\n"
        "  local:\n"
        "    engine: docker\n"
        f"soa_dir: {json.dumps(str(soa_dir))}\n"
        f"state_dir: {json.dumps(str(state_dir))}\n"
        "# Host access, refused unless listed here: host path prefixes extra_volumes may mount\n"
        "# (/ and the Docker socket only when listed exactly), and net: host.\n"
        "allowed_host_paths: []\n"
        "allow_host_network: false\n"
    )


def load_system_config(
    path: Path | None = None,
    soa_dir: Path | None = None,
    state_dir: Path | None = None,
) -> SystemConfig:
    """Find and load paasport.yaml; a missing file means defaults (one docker cluster ``local``).

    Path: argument, ``$PAASPORT_CONFIG``, then /etc/paasport/paasport.yaml. soa_dir: argument,
    ``$PAASPORT_SOA_DIR``, the file's ``soa_dir`` (relative to the file), the default. Raises
    ConfigError naming file, line and field for an invalid file.
    """
    path = config_path(path)
    if not path.exists():
        return system_config_from(
            {}, source_file="", base_dir=Path.cwd(), soa_dir=soa_dir, state_dir=state_dir
        )
    doc = load_yaml(path)
    issues: list[Issue] = []
    data: object = {}
    if doc.data is not None and not doc.problems:
        data = SYSTEM.check(doc.data, (), issues)
    problems = _problems(doc, issues)
    if isinstance(data, dict):
        local = data.get("local_cluster") or "local"
        clusters = data.get("clusters") or {"local": {}}
        if isinstance(clusters, dict) and local not in clusters:
            problems.append(
                ConfigProblem(
                    doc.file,
                    doc.line_of(("local_cluster",)) if "local_cluster" in data else 1,
                    "",
                    "local_cluster",
                    f"expected one of the clusters ({', '.join(sorted(clusters))}), "
                    f'found "{local}"',
                )
            )
    errors = [p for p in problems if p.severity == "error"]
    if errors:
        raise ConfigError(errors)
    assert isinstance(data, dict)
    return system_config_from(
        data,
        source_file=str(path),
        base_dir=path.parent,
        soa_dir=soa_dir,
        state_dir=state_dir,
        problems=tuple(problems),
    )


def effective_registry(service: ServiceConfig | None, system: SystemConfig) -> str | None:
    """The registry of a service's images: service.yaml's docker_registry, else the system's."""
    return (service.docker_registry if service is not None else None) or system.docker_registry
