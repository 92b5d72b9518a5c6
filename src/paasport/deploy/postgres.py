"""The Postgres adapter: the only place paasport talks to a PostgreSQL server (psycopg 3,
``pg_dump``, ``pg_restore``), for the Postgres add-on. Its callers (the add-on's reconciler and
CLI) get ``Credentials`` and ``DatabaseInfo`` values back; every failure is a paasport error
naming the server (host:port, never the password).

Roles of one add-on database ``<db>`` = ``<service>_<cluster>`` (see ``database_name``):

    <db>_owner   NOLOGIN group role: owns the database, its ``public`` schema and every object
    <db>_u1 ...  LOGIN roles with a random password, members of ``<db>_owner``; the newest one is
                 the service's. Each starts its sessions in that database as the group
                 (``ALTER ROLE .. IN DATABASE .. SET role``), so what it creates belongs to the
                 group; default privileges grant the group what one creates after ``RESET ROLE``,
                 and the role's leftovers are reassigned to the group before it is dropped.

So ``rotate`` adds ``<db>_u<N+1>`` and the tables stay usable by old and new alike until
``drop_role_if_unused`` drops the old one. The admin URL must name a superuser.
"""

from __future__ import annotations

import contextlib
import hashlib
import math
import os
import re
import secrets
import shutil
import string
import subprocess
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import quote

import psycopg
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict, make_conninfo

from paasport.errors import (
    ConfigError,
    ConflictError,
    NotFoundError,
    PermanentError,
    TemporaryError,
    UsageError,
)

# Room below Postgres' 63-byte identifiers for "_owner" and "_u<generation>".
MAX_DATABASE_NAME = 48
PASSWORD_LENGTH = 32
DUMP_TIMEOUT_SECONDS = 3600.0
RETRY_DELAY_SECONDS = 5.0
BACKUP_SUFFIX = ".dump"
_PASSWORD_ALPHABET = string.ascii_letters + string.digits
_COMMENT_PREFIX = "paasport add-on database of "
# connection lost, deadlock or serialization, out of resources, server shutting down
_TEMPORARY_SQLSTATES = ("08", "40", "53", "57P")


# --- names (pure) ---------------------------------------------------------------------------


def database_name(service: str, cluster: str) -> str:
    """``<service>_<cluster>`` as a plain lower-case identifier of at most 48 characters (a hash
    of the full name ends a shortened one; names Postgres reserves get an ``s_`` prefix)."""
    raw = f"{service}_{cluster}"
    name = re.sub(r"_+", "_", re.sub(r"[^a-z0-9_]", "_", raw.lower())).strip("_")
    if not service.strip() or not cluster.strip() or not name.strip("_"):
        raise UsageError(
            f"no database name can be made of service {service!r}, cluster {cluster!r}"
        )
    if name[0].isdigit() or name.startswith("pg_"):
        name = f"s_{name}"
    if len(name) > MAX_DATABASE_NAME:
        digest = hashlib.sha256(raw.encode()).hexdigest()[:8]
        name = f"{name[: MAX_DATABASE_NAME - 9].rstrip('_')}_{digest}"
    return name


def owner_role(database: str) -> str:
    return f"{database}_owner"


def login_role(database: str, generation: int) -> str:
    return f"{database}_u{generation}"


def login_generation(database: str, role: str) -> int | None:
    """N for the login role ``<database>_uN``, None for any other role name."""
    match = re.fullmatch(re.escape(database) + r"_u([1-9][0-9]*)", role)
    return int(match.group(1)) if match else None


def database_comment(service: str, cluster: str) -> str:
    """The mark that tells this service's database from a foreign one of the same name."""
    return f"{_COMMENT_PREFIX}service {service}, cluster {cluster}"


def parse_comment(comment: str) -> tuple[str, str] | None:
    """(service, cluster) of a ``database_comment``; None for any other comment."""
    match = re.fullmatch(
        re.escape(_COMMENT_PREFIX) + r"service ([a-z0-9][a-z0-9_-]*), cluster (\S+)", comment
    )
    return (match.group(1), match.group(2)) if match else None


def server_label(admin_url: str) -> str:
    """``host:port`` of a libpq URL or conninfo, for messages (never its password)."""
    try:
        params = conninfo_to_dict(admin_url)
    except psycopg.Error:
        raise ConfigError("the Postgres admin URL is not a valid libpq URL") from None
    host = str(params.get("host") or params.get("hostaddr") or "local socket")
    return f"{host}:{params.get('port') or 5432}"


def server_address(admin_url: str) -> tuple[str, int]:
    """(host, port) of a libpq URL: host "" when it names none (the local socket)."""
    try:
        params = conninfo_to_dict(admin_url)
    except psycopg.Error:
        raise ConfigError("the Postgres admin URL is not a valid libpq URL") from None
    return str(params.get("host") or params.get("hostaddr") or ""), int(params.get("port") or 5432)


def backup_name(database: str, now: float) -> str:
    stamp = datetime.fromtimestamp(now, UTC).strftime("%Y%m%dT%H%M%S.%fZ")
    return f"{database}-{stamp}{BACKUP_SUFFIX}"


def backups_to_remove(
    files: Mapping[str, float], database: str, now: float, keep_days: int
) -> list[str]:
    """The backup files of ``database`` (name -> mtime) older than ``keep_days``; other files
    and other databases' backups are never in the list."""
    pattern = re.compile(re.escape(database) + r"-\d{8}T\d{6}\.\d{6}Z" + re.escape(BACKUP_SUFFIX))
    cutoff = now - keep_days * 86400
    return sorted(n for n, mtime in files.items() if pattern.fullmatch(n) and mtime < cutoff)


def new_password() -> str:
    return "".join(secrets.choice(_PASSWORD_ALPHABET) for _ in range(PASSWORD_LENGTH))


@dataclass(frozen=True)
class Credentials:
    """How a service reaches its database; the password stays out of ``repr``."""

    host: str
    port: int
    user: str
    password: str = field(repr=False)
    database: str

    @property
    def url(self) -> str:
        auth = f"{quote(self.user, safe='')}:{quote(self.password, safe='')}"
        if self.host.startswith("/"):  # a socket directory
            socket = quote(self.host, safe="")
            return f"postgresql://{auth}@/{self.database}?host={socket}&port={self.port}"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"postgresql://{auth}@{host}:{self.port}/{quote(self.database, safe='')}"

    def env(self) -> dict[str, str]:
        return {
            "DATABASE_URL": self.url,
            "PGHOST": self.host,
            "PGPORT": str(self.port),
            "PGUSER": self.user,
            "PGPASSWORD": self.password,
            "PGDATABASE": self.database,
        }


@dataclass(frozen=True)
class DatabaseInfo:
    database: str
    owner: str
    login_roles: tuple[str, ...]  # oldest first; the last one is the service's
    size_bytes: int
    connections: int
    comment: str


# --- the server (I/O) -----------------------------------------------------------------------


def _reason(err: BaseException) -> str:
    """libpq's own words, first line, without its ``connection to server at ...`` preamble."""
    text = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
    return re.sub(r"^.*failed: (FATAL: +)?", "", text)


class PostgresServer:
    """One Postgres server reached with a superuser URL; each call opens one short connection
    (autocommit) with ``connect_timeout`` and ``statement_timeout`` set from ``timeout``."""

    def __init__(self, admin_url: str, timeout: float = 10.0, *, pg_bin: Path | None = None):
        self.label = server_label(admin_url)
        params = conninfo_to_dict(admin_url)
        self._admin_url = admin_url
        self._password = str(params.pop("password", "") or "")
        self._params = params  # without the password: what pg_dump gets on its command line
        self._host = str(params.get("host") or params.get("hostaddr") or "/var/run/postgresql")
        self._port = int(params.get("port") or 5432)
        self.timeout = timeout
        self._connect_timeout = max(2, math.ceil(timeout))  # whole seconds; libpq's least is 2
        self._pg_bin = pg_bin

    # - connections and errors -

    def _fail(self, err: psycopg.Error, action: str) -> Exception:
        reason = _reason(err)
        if self._password:
            reason = reason.replace(self._password, "***")
        if isinstance(err, psycopg.errors.ConnectionTimeout):
            reason = f"no answer within {self._connect_timeout} s"
        if isinstance(err, psycopg.errors.QueryCanceled):
            return TemporaryError(
                f"Postgres server {self.label} did not finish {action} within {self.timeout:g} s",
                delay=RETRY_DELAY_SECONDS,
            )
        if (err.sqlstate or "").startswith(_TEMPORARY_SQLSTATES):
            return TemporaryError(
                f"Postgres server {self.label} failed for now ({action}): {reason}",
                delay=RETRY_DELAY_SECONDS,
            )
        # a failed connection has no SQLSTATE; the server's own refusal of it says FATAL
        refused_login = "FATAL:" in str(err) and not re.search(
            r"starting up|shutting down|too many|recovery", str(err)
        )
        if isinstance(err, psycopg.OperationalError) and not refused_login and not err.sqlstate:
            return TemporaryError(
                f"Postgres server {self.label} did not answer ({action}): {reason}",
                delay=RETRY_DELAY_SECONDS,
            )
        return PermanentError(f"Postgres server {self.label} refused ({action}): {reason}")

    @contextlib.contextmanager
    def _connect(self, action: str, dbname: str | None = None) -> Iterator[psycopg.Connection[Any]]:
        extra: dict[str, Any] = {"dbname": dbname} if dbname else {}
        try:
            with psycopg.connect(
                self._admin_url,
                autocommit=True,
                connect_timeout=self._connect_timeout,
                **extra,
            ) as conn:
                conn.execute(
                    "SELECT set_config('statement_timeout', %s, false)",
                    (f"{int(self.timeout * 1000)}ms",),
                )
                yield conn
        except psycopg.Error as err:
            raise self._fail(err, action) from None

    @staticmethod
    def _value(conn: psycopg.Connection[Any], query: str, *args: object) -> Any:
        row = conn.execute(query, args).fetchone()
        return row[0] if row else None

    def _ours(self, conn: psycopg.Connection[Any], service: str, cluster: str) -> str | None:
        """The database's name when it exists, after checking it is this service's."""
        db = database_name(service, cluster)
        found = conn.execute(
            "SELECT shobj_description(oid, 'pg_database') FROM pg_database WHERE datname = %s",
            (db,),
        ).fetchone()
        if found is None:
            return None
        if found[0] != database_comment(service, cluster):
            raise ConflictError(
                f"Postgres server {self.label}: database {db} exists but is not the add-on "
                f"database of service {service} in cluster {cluster} ({found[0] or 'no mark'})"
            )
        return db

    def _login_roles(self, conn: psycopg.Connection[Any], db: str) -> list[str]:
        rows = conn.execute(
            "SELECT m.rolname FROM pg_roles g JOIN pg_auth_members a ON a.roleid = g.oid"
            " JOIN pg_roles m ON m.oid = a.member WHERE g.rolname = %s",
            (owner_role(db),),
        ).fetchall()
        generations = {r[0]: login_generation(db, r[0]) for r in rows}
        return sorted((r for r, g in generations.items() if g), key=lambda r: generations[r] or 0)

    def _credentials(self, db: str, role: str, password: str) -> Credentials:
        return Credentials(self._host, self._port, role, password, db)

    def _set_password(self, conn: psycopg.Connection[Any], role: str, password: str) -> None:
        # libpq hashes it (SCRAM) here: the plain password never reaches the server or its logs
        verifier = conn.pgconn.encrypt_password(password.encode(), role.encode(), None)
        conn.execute(
            sql.SQL("ALTER ROLE {} LOGIN PASSWORD {}").format(
                sql.Identifier(role), sql.Literal(verifier.decode())
            )
        )

    def _add_login_role(self, conn: psycopg.Connection[Any], db: str, role: str) -> None:
        owner = owner_role(db)
        conn.execute(
            sql.SQL("CREATE ROLE {} LOGIN INHERIT IN ROLE {}").format(
                sql.Identifier(role), sql.Identifier(owner)
            )
        )
        conn.execute(
            sql.SQL("ALTER ROLE {} IN DATABASE {} SET role = {}").format(
                sql.Identifier(role), sql.Identifier(db), sql.Literal(owner)
            )
        )
        with self._connect(f"setting default privileges in {db}", dbname=db) as in_db:
            for kind in ("TABLES", "SEQUENCES", "FUNCTIONS", "TYPES"):
                in_db.execute(
                    sql.SQL("ALTER DEFAULT PRIVILEGES FOR ROLE {} GRANT ALL ON {} TO {}").format(
                        sql.Identifier(role), sql.SQL(kind), sql.Identifier(owner)
                    )
                )

    # - the add-on's operations -

    def exists(self, service: str, cluster: str) -> bool:
        with self._connect("looking up a database") as conn:
            return self._ours(conn, service, cluster) is not None

    def provision(self, service: str, cluster: str, *, password: str | None = None) -> Credentials:
        """Create what is missing of the database, its group role and its login role; returns
        the newest login role's credentials with ``password``, or a new random one (so a second
        call without the stored password resets it; the data and the roles stay)."""
        db = database_name(service, cluster)
        owner = owner_role(db)
        password = password or new_password()
        with self._connect(f"provisioning database {db}") as conn:
            present = self._ours(conn, service, cluster)
            if not self._value(conn, "SELECT 1 FROM pg_roles WHERE rolname = %s", owner):
                conn.execute(sql.SQL("CREATE ROLE {} NOLOGIN").format(sql.Identifier(owner)))
            if present is None:
                conn.execute(
                    sql.SQL(
                        "CREATE DATABASE {} OWNER {} ENCODING 'UTF8' TEMPLATE template0"
                    ).format(sql.Identifier(db), sql.Identifier(owner))
                )
                conn.execute(
                    sql.SQL("COMMENT ON DATABASE {} IS {}").format(
                        sql.Identifier(db), sql.Literal(database_comment(service, cluster))
                    )
                )
            conn.execute(
                sql.SQL("ALTER DATABASE {} OWNER TO {}").format(
                    sql.Identifier(db), sql.Identifier(owner)
                )
            )
            conn.execute(
                sql.SQL("REVOKE ALL ON DATABASE {} FROM PUBLIC").format(sql.Identifier(db))
            )
            with self._connect(f"provisioning database {db}", dbname=db) as in_db:
                in_db.execute(
                    sql.SQL("ALTER SCHEMA public OWNER TO {}").format(sql.Identifier(owner))
                )
            roles = self._login_roles(conn, db)
            role = roles[-1] if roles else login_role(db, 1)
            if not roles:
                self._add_login_role(conn, db, role)
            self._set_password(conn, role, password)
        return self._credentials(db, role, password)

    def rotate(self, service: str, cluster: str) -> Credentials:
        """A new login role with a new password; the old ones keep working until dropped."""
        db = database_name(service, cluster)
        with self._connect(f"rotating the credentials of {db}") as conn:
            if self._ours(conn, service, cluster) is None:
                raise NotFoundError(f"Postgres server {self.label} has no database {db}")
            roles = self._login_roles(conn, db)
            newest = login_generation(db, roles[-1]) if roles else 0
            role = login_role(db, (newest or 0) + 1)
            password = new_password()
            self._add_login_role(conn, db, role)
            self._set_password(conn, role, password)
        return self._credentials(db, role, password)

    def info(self, service: str, cluster: str) -> DatabaseInfo:
        db = database_name(service, cluster)
        with self._connect(f"reading database {db}") as conn:
            row = conn.execute(
                "SELECT pg_get_userbyid(d.datdba), pg_database_size(d.oid),"
                " (SELECT count(*) FROM pg_stat_activity a WHERE a.datid = d.oid),"
                " coalesce(shobj_description(d.oid, 'pg_database'), '')"
                " FROM pg_database d WHERE d.datname = %s",
                (db,),
            ).fetchone()
            if row is None:
                raise NotFoundError(f"Postgres server {self.label} has no database {db}")
            roles = tuple(self._login_roles(conn, db))
        return DatabaseInfo(db, row[0], roles, int(row[1]), int(row[2]), row[3])

    def databases(self) -> list[tuple[str, str, str]]:
        """(service, cluster, database) of every add-on database on the server (by its mark)."""
        with self._connect("listing the add-on databases") as conn:
            rows = conn.execute(
                "SELECT datname, shobj_description(oid, 'pg_database') FROM pg_database"
                " WHERE starts_with(coalesce(shobj_description(oid, 'pg_database'), ''), %s)",
                (_COMMENT_PREFIX,),
            ).fetchall()
        found = [(parsed, str(db)) for db, comment in rows if (parsed := parse_comment(comment))]
        return sorted((svc, cluster, db) for (svc, cluster), db in found
                      if database_name(svc, cluster) == db)  # fmt: skip

    def connections_of(self, role: str) -> int:
        with self._connect(f"counting the sessions of {role}") as conn:
            count = self._value(
                conn, "SELECT count(*) FROM pg_stat_activity WHERE usename = %s", role
            )
            return int(count or 0)

    def drop_role_if_unused(self, role: str) -> bool:
        """Drop an old login role once no session uses it; True when it is gone. Refuses the
        service's current role and roles that are not an add-on's."""
        with self._connect(f"dropping role {role}") as conn:
            if not self._value(conn, "SELECT 1 FROM pg_roles WHERE rolname = %s", role):
                return True
            db = self._database_of_login(conn, role)
            if self._login_roles(conn, db)[-1] == role:
                raise ConflictError(
                    f"Postgres server {self.label}: {role} is the current role of {db}"
                    " (rotate first)"
                )
            count = "SELECT count(*) FROM pg_stat_activity WHERE usename = %s"
            if self._value(conn, count, role):
                return False
            # no new session between the count and the drop: refuse logins, then count again
            conn.execute(sql.SQL("ALTER ROLE {} NOLOGIN").format(sql.Identifier(role)))
            if self._value(conn, count, role):
                conn.execute(sql.SQL("ALTER ROLE {} LOGIN").format(sql.Identifier(role)))
                return False
            with self._connect(f"dropping role {role}", dbname=db) as in_db:
                self._disown(in_db, role, owner_role(db))
            conn.execute(sql.SQL("DROP ROLE {}").format(sql.Identifier(role)))
            return True

    def _database_of_login(self, conn: psycopg.Connection[Any], role: str) -> str:
        for (group,) in conn.execute(
            "SELECT g.rolname FROM pg_roles g JOIN pg_auth_members a ON a.roleid = g.oid"
            " JOIN pg_roles m ON m.oid = a.member JOIN pg_database d ON d.datdba = g.oid"
            " WHERE m.rolname = %s AND g.rolname = d.datname || '_owner'",
            (role,),
        ).fetchall():
            db = str(group).removesuffix("_owner")
            if login_generation(db, role):
                return db
        raise PermanentError(f"Postgres server {self.label}: {role} is not an add-on login role")

    @staticmethod
    def _disown(in_db: psycopg.Connection[Any], role: str, owner: str) -> None:
        ident = sql.Identifier(role)
        in_db.execute(sql.SQL("REASSIGN OWNED BY {} TO {}").format(ident, sql.Identifier(owner)))
        in_db.execute(sql.SQL("DROP OWNED BY {}").format(ident))  # its grants, default privileges

    def destroy(self, service: str, cluster: str) -> None:
        """End the database's sessions, drop it and its roles; nothing to do when gone."""
        db = database_name(service, cluster)
        owner = owner_role(db)
        with self._connect(f"destroying database {db}") as conn:
            present = self._ours(conn, service, cluster)
            roles = self._login_roles(conn, db)
            conn.execute(
                "SELECT pg_terminate_backend(pid, %s) FROM pg_stat_activity"
                " WHERE usename = ANY(%s) AND pid <> pg_backend_pid()",
                (int(self.timeout * 1000), roles),
            )
            if present:
                conn.execute(sql.SQL("DROP DATABASE {} WITH (FORCE)").format(sql.Identifier(db)))
            for role in [*roles, owner]:
                conn.execute(sql.SQL("DROP ROLE IF EXISTS {}").format(sql.Identifier(role)))

    # - dumps -

    def _tool(self, name: str) -> str:
        found = str(self._pg_bin / name) if self._pg_bin else shutil.which(name)
        if not found:
            raise PermanentError(f"{name} is not installed (Debian: postgresql-client-15)")
        return found

    def _run_tool(self, args: Sequence[str], db: str, action: str, timeout: float) -> None:
        env = dict(os.environ)
        env.update(PGPASSWORD=self._password, PGCONNECT_TIMEOUT=str(self._connect_timeout))
        env.pop("PGPASSFILE", None)
        conninfo = make_conninfo("", **{**self._params, "dbname": db})  # no password in argv
        try:
            done = subprocess.run(
                [*args, f"--dbname={conninfo}"],
                env=env,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
            )
        except subprocess.TimeoutExpired:
            raise TemporaryError(
                f"Postgres server {self.label}: {action} took longer than {timeout:g} s",
                delay=RETRY_DELAY_SECONDS,
            ) from None
        if done.returncode != 0:
            lines = [ln for ln in done.stderr.strip().splitlines() if ln.strip()] or ["no output"]
            reason = _reason(RuntimeError(lines[0])).removeprefix(f"{Path(args[0]).name}: error: ")
            raise PermanentError(f"Postgres server {self.label}: {action} failed: {reason}")

    def backup(
        self,
        service: str,
        cluster: str,
        folder: Path,
        keep_days: int,
        *,
        timeout: float = DUMP_TIMEOUT_SECONDS,
    ) -> Path:
        """``pg_dump -Fc`` into ``folder/<db>-<UTC time>.dump``; then the database's backups
        older than ``keep_days`` in that folder are removed (never the new one)."""
        db = database_name(service, cluster)
        with self._connect(f"backing up {db}") as conn:
            if self._ours(conn, service, cluster) is None:
                raise NotFoundError(f"Postgres server {self.label} has no database {db}")
        folder.mkdir(parents=True, exist_ok=True)
        now = time.time()
        dump = folder / backup_name(db, now)
        partial = dump.with_name(f".{dump.name}.partial")
        try:
            self._run_tool(
                [self._tool("pg_dump"), "-Fc", f"--file={partial}"], db, f"pg_dump of {db}", timeout
            )
            partial.rename(dump)
        finally:
            partial.unlink(missing_ok=True)
        mtimes = {p.name: p.stat().st_mtime for p in folder.iterdir() if p.is_file()}
        for name in backups_to_remove(mtimes, db, now, keep_days):
            if name != dump.name:
                (folder / name).unlink(missing_ok=True)
        return dump

    def restore(
        self, service: str, cluster: str, dump: Path, *, timeout: float = DUMP_TIMEOUT_SECONDS
    ) -> None:
        """Replace the database's objects with the dump's, in one transaction, all owned by the
        group role (ownership and grants in the dump are not replayed: they may name login
        roles rotated away since)."""
        db = database_name(service, cluster)
        with self._connect(f"restoring {db}") as conn:
            if self._ours(conn, service, cluster) is None:
                raise NotFoundError(f"Postgres server {self.label} has no database {db}")
        if not dump.is_file():
            raise NotFoundError(f"no backup file {dump}")
        args = [self._tool("pg_restore"), "--clean", "--if-exists", "--no-owner", "--no-acl"]
        args += [f"--role={owner_role(db)}", "--single-transaction", "--exit-on-error", str(dump)]
        self._run_tool(args, db, f"pg_restore of {dump.name} into {db}", timeout)
