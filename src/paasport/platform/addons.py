"""The Postgres add-on's operations: which server holds the databases, provisioning, rotation,
backups, destroy, and what ``addon list|info`` show.

The server is paasport.yaml's ``addons.postgres.url`` or, without one, the one-host server of
``platform.postgres_local`` (started on first need). A service's credentials go only into its
secrets (``config.secrets``, reserved names ``config.addons.POSTGRES_ENV_SECRETS``), never into
an output; each step is an ``addon`` event. ``platform.addon_provisioner`` (deployd) and
``cli.addon_cmds`` call these.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import time
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Literal

from paasport.config.addons import (
    POSTGRES,
    POSTGRES_ENV_SECRETS,
    POSTGRES_PASSWORD_SECRET,
    secret_values,
)
from paasport.config.secrets import SecretEntry, SecretStore, read_index, secrets_root
from paasport.config.state_files import exclusive_lock, private_dir
from paasport.config.system import SystemConfig
from paasport.config.tree import SoaTree, load_tree
from paasport.deploy.postgres import (
    BACKUP_SUFFIX,
    Credentials,
    DatabaseInfo,
    PostgresServer,
    database_name,
    server_address,
)
from paasport.engine.base import Engine
from paasport.errors import ConfigError, ConflictError, NotFoundError, TemporaryError
from paasport.monitoring.events import AddonAction, AddonData, Event, EventKind, EventLog, Level

SERVER_TIMEOUT_SECONDS = 10.0
LOCK_SECONDS = 30.0


# --- the server ----------------------------------------------------------------------------


@dataclass(frozen=True)
class AddonServer:
    """The server of this cluster's add-on databases: ``admin`` (superuser), the address
    tasks reach it at, and the address this host reaches it at (``addon psql``)."""

    admin: PostgresServer
    task_host: str
    local_host: str
    local_port: int
    own: bool  # paasport's one-host server

    @property
    def label(self) -> str:
        return self.admin.label

    def for_tasks(self, creds: Credentials) -> Credentials:
        return dataclasses.replace(creds, host=self.task_host)


def _bridge(system: SystemConfig, engine: Engine | None) -> tuple[str, str]:
    from paasport.engine.docker import DockerEngine
    from paasport.engine.docker_network import bridge_network

    own = isinstance(engine, DockerEngine)
    docker = (
        engine
        if isinstance(engine, DockerEngine)
        else DockerEngine(system.local_cluster, system.local.docker_host)
    )
    try:
        net = bridge_network(docker)
    finally:
        if not own:
            docker.close()
    return net.gateway, net.subnet


def open_server(
    system: SystemConfig, *, engine: Engine | None = None, start: bool = True
) -> AddonServer | None:
    """The add-on's server; the one-host one is initialised and started when ``start`` (else
    None when it was never set up). Raises ConfigError for a setup that cannot work."""
    cfg = system.addons.postgres
    pg_bin = Path(cfg.bin_dir)
    if cfg.url:
        host, port = server_address(cfg.url)
        if not (cfg.task_host or (host and not host.startswith("/"))):
            raise ConfigError(
                f"{system.source_file or 'paasport.yaml'}: addons.postgres.url names no host "
                "tasks could reach: set addons.postgres.task_host"
            )
        admin = PostgresServer(cfg.url, SERVER_TIMEOUT_SECONDS, pg_bin=pg_bin)
        return AddonServer(admin, cfg.task_host or host, host, port, own=False)
    if system.local.engine != "docker":
        raise ConfigError(
            f"cluster {system.local_cluster} runs on {system.local.engine}: the Postgres add-on "
            "needs a server its tasks reach on every host (addons.postgres.url in paasport.yaml)"
        )
    from paasport.platform.postgres_local import LocalPostgres

    local = LocalPostgres(system.state_dir, pg_bin)
    if not start and not local.exists():
        return None
    gateway, subnet = _bridge(system, engine)
    url = local.ensure_running([gateway], [subnet])
    layout = local.layout()
    assert layout is not None
    admin = PostgresServer(url, SERVER_TIMEOUT_SECONDS, pg_bin=pg_bin)
    return AddonServer(admin, cfg.task_host or gateway, "127.0.0.1", layout.port, own=True)


# --- events and locks ----------------------------------------------------------------------


def record(
    events: EventLog | None,
    system: SystemConfig,
    service: str,
    level: Level,
    message: str,
    action: AddonAction,
    **data: Any,
) -> None:
    if events is None:
        return
    payload = AddonData(addon=POSTGRES, action=action, **data).to_json()
    events.record(
        Event(
            time.time(),
            level,
            EventKind.ADDON,
            service,
            None,
            system.local_cluster,
            message,
            payload,
        )
    )


def addon_dir(system: SystemConfig, service: str | None = None) -> Path:
    """``<state_dir>/addons/postgres[/<service>]``: the service's backups."""
    base = system.state_dir / "addons" / POSTGRES
    return base / service if service else base


@contextlib.contextmanager
def service_lock(system: SystemConfig, service: str) -> Iterator[None]:
    """One change to a service's add-on at a time (deployd's provisioner, the verbs)."""
    folder = private_dir(addon_dir(system))

    def busy() -> Exception:
        return TemporaryError(f"{service}: another paasport is changing its postgres add-on",
                              delay=2.0)  # fmt: skip

    with exclusive_lock(folder / f".{service}.lock", LOCK_SECONDS, busy):
        yield


# --- secrets -------------------------------------------------------------------------------


def has_credentials(index: Mapping[str, SecretEntry]) -> bool:
    return all(name in index for name in POSTGRES_ENV_SECRETS.values())


def stored_credentials(system: SystemConfig, service: str) -> dict[str, str] | None:
    """The service's add-on env (DATABASE_URL, PG*) as stored; None when not provisioned.
    Decrypted only for ``addon psql`` and the provisioner's own checks."""
    store = SecretStore(system.state_dir, system.local_cluster)
    if not has_credentials(read_index(system.state_dir, system.local_cluster, service)):
        return None
    refs = {key: f"SECRET({name})" for key, name in POSTGRES_ENV_SECRETS.items()}
    return store.resolve_env(service, refs)


def _store_credentials(system: SystemConfig, service: str, creds: Credentials) -> None:
    store = SecretStore(system.state_dir, system.local_cluster)
    store.put_many(service, secret_values(POSTGRES, creds.env()), time.time())


# --- operations ----------------------------------------------------------------------------


def still_asked(system: SystemConfig, service: str) -> bool:
    """Whether the service's files, read now, ask for the add-on on this cluster (deployd's
    store may lag an edit made just before ``addon destroy``)."""
    try:
        tree = load_tree(system.soa_dir, [service], system=system)
    except NotFoundError:
        return False
    return bool(asking_instances(tree, system.local_cluster, service))


def provision(
    system: SystemConfig,
    server: AddonServer,
    events: EventLog | None,
    service: str,
    *,
    check: Callable[[], bool] | None = None,
) -> Credentials | None:
    """The service's database and role (what is missing of them) and its credentials in its
    secrets; idempotent: a provisioned service keeps its role and password. ``check`` (under
    the service's lock): whether it is still wanted (None when it no longer is)."""
    cluster = system.local_cluster
    with service_lock(system, service):
        if check is not None and not check():
            return None
        before = stored_credentials(system, service)
        password = before["PGPASSWORD"] if before else None
        creds = server.for_tasks(server.admin.provision(service, cluster, password=password))
        if before != creds.env():
            _store_credentials(system, service, creds)
            record(
                events,
                system,
                service,
                "info",
                f"postgres add-on: database {creds.database} on {server.label}, role "
                f"{creds.user}; its credentials are the service's secrets",
                "provisioned",
                database=creds.database,
                role=creds.user,
                server=server.label,
            )
    return creds


def rotate(
    system: SystemConfig, server: AddonServer, events: EventLog | None, service: str
) -> tuple[Credentials, tuple[str, ...]]:
    """A new role and password in the service's secrets (its instances bounce onto them);
    returns them and the old roles, which deployd drops once nothing uses them."""
    cluster = system.local_cluster
    with service_lock(system, service):
        if stored_credentials(system, service) is None:
            raise NotFoundError(
                f"{service}: the postgres add-on is not provisioned on cluster "
                f"{cluster} (paasport addon list)"
            )
        old = server.admin.info(service, cluster).login_roles
        creds = server.for_tasks(server.admin.rotate(service, cluster))
        _store_credentials(system, service, creds)
    record(
        events,
        system,
        service,
        "info",
        f"postgres add-on: new role {creds.user} for database {creds.database}; the instances "
        f"bounce onto it, then {', '.join(old) or 'no old role'} is dropped once unused",
        "rotated",
        database=creds.database,
        role=creds.user,
        server=server.label,
    )
    return creds, old


def asking_instances(tree: SoaTree, cluster: str, service: str) -> list[str]:
    return sorted(
        i for s, c, i, a in tree.addons if s == service and c == cluster and a == POSTGRES
    )


def destroy(
    system: SystemConfig,
    server: AddonServer,
    events: EventLog | None,
    tree: SoaTree,
    service: str,
) -> list[str]:
    """Drop the database and its roles and remove the credentials (the backups stay); refused
    while an instance still asks for the add-on. Returns the removed secret names."""
    cluster = system.local_cluster
    asking = asking_instances(tree, cluster, service)
    if asking:
        raise ConflictError(
            f"{service}: instance(s) {', '.join(asking)} on cluster {cluster} still ask for the "
            "postgres add-on: remove addons.postgres from the config first (the database stays "
            "until then)"
        )
    with service_lock(system, service):
        db = database_name(service, cluster)
        server.admin.destroy(service, cluster)
        store = SecretStore(system.state_dir, cluster)
        removed = store.remove_many(service, POSTGRES_ENV_SECRETS.values())
    record(
        events,
        system,
        service,
        "warning",
        f"postgres add-on: database {db} and its roles dropped, credentials removed",
        "destroyed",
        database=db,
        server=server.label,
    )
    return removed


@dataclass(frozen=True)
class Backup:
    name: str
    path: Path
    bytes: int
    time: float

    def to_json(self) -> dict[str, object]:
        return {"name": self.name, "path": str(self.path), "bytes": self.bytes, "time": self.time}


def backups(system: SystemConfig, service: str) -> list[Backup]:
    """The service's backups on this host, oldest first."""
    folder = addon_dir(system, service)
    prefix = f"{database_name(service, system.local_cluster)}-"
    found: list[Backup] = []
    with contextlib.suppress(FileNotFoundError):
        for entry in os.scandir(folder):
            if (
                entry.is_file()
                and entry.name.startswith(prefix)
                and entry.name.endswith(BACKUP_SUFFIX)
            ):
                info = entry.stat()
                found.append(Backup(entry.name, Path(entry.path), info.st_size, info.st_mtime))
    return sorted(found, key=lambda b: (b.time, b.name))


def backup(
    system: SystemConfig,
    server: AddonServer,
    events: EventLog | None,
    service: str,
    keep_days: int | None = None,
) -> Backup:
    """``pg_dump`` of the service's database into ``addon_dir``; older ones than ``keep_days``
    (default ``addons.postgres.backup_keep_days``) are removed."""
    days = keep_days if keep_days is not None else system.addons.postgres.backup_keep_days
    folder = private_dir(addon_dir(system, service))
    path = server.admin.backup(service, system.local_cluster, folder, days)
    info = path.stat()
    done = Backup(path.name, path, info.st_size, info.st_mtime)
    record(
        events,
        system,
        service,
        "info",
        f"postgres add-on: backup {done.name} ({done.bytes} bytes), kept {days} days",
        "backup",
        database=database_name(service, system.local_cluster),
        file=done.name,
        bytes=done.bytes,
        server=server.label,
    )
    return done


def choose_backup(found: list[Backup], name: str | None) -> Backup:
    """The named backup (its file name, or a unique prefix of it) or the newest. Pure."""
    if not found:
        raise NotFoundError("no backup yet (paasport addon backup)")
    if name is None:
        return found[-1]
    matches = [b for b in found if b.name == name] or [b for b in found if b.name.startswith(name)]
    if len(matches) != 1:
        listed = ", ".join(b.name for b in found[-5:])
        what = "no" if not matches else "more than one"
        raise NotFoundError(f"{what} backup named {name!r} (newest: {listed})")
    return matches[0]


def restore(
    system: SystemConfig,
    server: AddonServer,
    events: EventLog | None,
    service: str,
    chosen: Backup,
) -> None:
    with service_lock(system, service):
        server.admin.restore(service, system.local_cluster, chosen.path)
    record(
        events,
        system,
        service,
        "warning",
        f"postgres add-on: database restored from {chosen.name}",
        "restore",
        database=database_name(service, system.local_cluster),
        file=chosen.name,
        bytes=chosen.bytes,
        server=server.label,
    )


# --- views ---------------------------------------------------------------------------------

AddonState = Literal["provisioned", "waiting", "orphaned", "none"]


def addon_state(asked: bool, database: bool, credentials: bool) -> AddonState:
    """One service's add-on on this cluster, from what asks and what exists. Pure."""
    if asked:
        return "provisioned" if database and credentials else "waiting"
    return "orphaned" if database or credentials else "none"


@dataclass(frozen=True)
class AddonEntry:
    service: str
    cluster: str
    database: str
    state: AddonState
    instances: tuple[str, ...]  # the instances that ask for it

    def to_json(self) -> dict[str, object]:
        return {
            "service": self.service,
            "cluster": self.cluster,
            "addon": POSTGRES,
            "database": self.database,
            "state": self.state,
            "instances": list(self.instances),
        }


def _services_with_credentials(system: SystemConfig) -> set[str]:
    folder = secrets_root(system.state_dir) / system.local_cluster
    found: set[str] = set()
    with contextlib.suppress(FileNotFoundError, NotADirectoryError):
        for entry in os.scandir(folder):
            if entry.name.endswith(".json") and not entry.name.startswith("."):
                service = entry.name[: -len(".json")]
                index = read_index(system.state_dir, system.local_cluster, service)
                if POSTGRES_PASSWORD_SECRET in index:
                    found.add(service)
    return found


def list_addons(
    system: SystemConfig, tree: SoaTree, server: AddonServer | None
) -> list[AddonEntry]:
    """Every service of this cluster with the add-on: asked for, or a database/credentials
    left after its config dropped it (orphaned: kept until ``addon destroy``)."""
    cluster = system.local_cluster
    asked: dict[str, list[str]] = {}
    for s, c, i, a in sorted(tree.addons):
        if c == cluster and a == POSTGRES:
            asked.setdefault(s, []).append(i)
    databases = set()
    if server is not None:
        databases = {s for s, c, _ in server.admin.databases() if c == cluster}
    credentials = _services_with_credentials(system)
    out = []
    for service in sorted(set(asked) | databases | credentials):
        state = addon_state(service in asked, service in databases, service in credentials)
        out.append(
            AddonEntry(
                service,
                cluster,
                database_name(service, cluster),
                state,
                tuple(asked.get(service, ())),
            )
        )
    return out


@dataclass(frozen=True)
class AddonInfo:
    entry: AddonEntry
    server: str
    database: DatabaseInfo | None
    secrets: tuple[SecretEntry, ...]
    backups: tuple[Backup, ...]

    def to_json(self) -> dict[str, object]:
        db = self.database
        return {
            **self.entry.to_json(),
            "server": self.server,
            "size_bytes": db.size_bytes if db else None,
            "connections": db.connections if db else None,
            "owner": db.owner if db else None,
            "roles": list(db.login_roles) if db else [],
            "current_role": db.login_roles[-1] if db and db.login_roles else None,
            "secrets": [s.to_json() for s in self.secrets],
            "backups": [b.to_json() for b in self.backups],
        }


def addon_info(
    system: SystemConfig, tree: SoaTree, server: AddonServer | None, service: str
) -> AddonInfo:
    entries = {e.service: e for e in list_addons(system, tree, server)}
    entry = entries.get(service)
    if entry is None:
        raise NotFoundError(
            f"{service}: no postgres add-on on cluster {system.local_cluster} "
            "(addons: {postgres: {}} in its service.yaml asks for one)"
        )
    db = None
    if server is not None:
        with contextlib.suppress(NotFoundError):
            db = server.admin.info(service, system.local_cluster)
    index = read_index(system.state_dir, system.local_cluster, service)
    own = tuple(e for n, e in sorted(index.items()) if n in POSTGRES_ENV_SECRETS.values())
    return AddonInfo(
        entry, server.label if server else "none", db, own, tuple(backups(system, service))
    )


def stamp(t: float) -> str:
    return datetime.fromtimestamp(t, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def psql_env(system: SystemConfig, server: AddonServer, service: str) -> dict[str, str]:
    """The service's own credentials, pointed at the address this host reaches the server at
    (``addon psql`` runs here, not in a task): for psql's environment, never its argv."""
    env = stored_credentials(system, service)
    if env is None:
        raise NotFoundError(
            f"{service}: the postgres add-on is not provisioned on cluster "
            f"{system.local_cluster} (paasport addon list)"
        )
    creds = Credentials(
        server.local_host, server.local_port, env["PGUSER"], env["PGPASSWORD"], env["PGDATABASE"]
    )
    return creds.env()
