"""PostgresServer against the real Postgres of scripts/services.sh (fixture ``postgres_url``):
provisioning, backup and restore, rotation with ownership kept, destroy, and bounded failures.

Each test provisions a database of its own (a random service name) and destroys it after.
"""

from __future__ import annotations

import dataclasses
import os
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any
from uuid import uuid4

import psycopg
import pytest
from psycopg import sql
from psycopg.conninfo import conninfo_to_dict

from paasport.deploy.postgres import Credentials, PostgresServer, database_name, owner_role
from paasport.errors import ConflictError, NotFoundError, PermanentError, TemporaryError

CLUSTER = "itest"
WAIT_SECONDS = 10.0


def _connect(creds: Credentials) -> psycopg.Connection[Any]:
    return psycopg.connect(creds.url, autocommit=True, connect_timeout=5)


def _rows(creds: Credentials, query: str) -> list[tuple[Any, ...]]:
    with _connect(creds) as conn:
        return conn.execute(query).fetchall()


def _roles(admin_url: str, prefix: str) -> list[str]:
    with psycopg.connect(admin_url, connect_timeout=5) as conn:
        rows = conn.execute(
            "SELECT rolname FROM pg_roles WHERE starts_with(rolname, %s) ORDER BY 1", (prefix,)
        ).fetchall()
    return [r[0] for r in rows]


def _eventually(check: Callable[[], bool], what: str) -> None:
    deadline = time.monotonic() + WAIT_SECONDS
    while not check():
        if time.monotonic() > deadline:
            pytest.fail(f"{what} within {WAIT_SECONDS} s")
        time.sleep(0.05)


@pytest.fixture
def server(postgres_url: str) -> PostgresServer:
    return PostgresServer(postgres_url, timeout=5.0)


@pytest.fixture
def service(server: PostgresServer) -> Iterator[str]:
    name = f"pgt-{uuid4().hex[:10]}"
    yield name
    server.destroy(name, CLUSTER)


def test_provision_is_idempotent_and_gives_working_credentials(
    server: PostgresServer, service: str
) -> None:
    assert not server.exists(service, CLUSTER)
    first = server.provision(service, CLUSTER)
    again = server.provision(service, CLUSTER, password=first.password)
    assert again == first
    assert first.database == database_name(service, CLUSTER)
    assert len(first.password) == 32
    assert first.password not in repr(first)
    assert server.exists(service, CLUSTER)

    with _connect(first) as conn:
        conn.execute("CREATE TABLE notes (body text)")
        conn.execute("INSERT INTO notes VALUES ('hello')")
    reset = server.provision(service, CLUSTER)  # no stored password: a new one, same data
    assert (reset.database, reset.user) == (first.database, first.user)
    assert reset.password != first.password
    assert _rows(reset, "SELECT body FROM notes") == [("hello",)]
    with pytest.raises(psycopg.OperationalError, match="password authentication failed"):
        _connect(first).close()

    info = server.info(service, CLUSTER)
    assert info.owner == owner_role(first.database)
    assert info.login_roles == (first.user,)
    assert info.size_bytes > 0
    with _connect(reset):
        assert server.info(service, CLUSTER).connections == 1


def test_the_database_is_closed_to_other_roles(
    server: PostgresServer, service: str, postgres_url: str
) -> None:
    creds = server.provision(service, CLUSTER)
    other = f"pgt-{uuid4().hex[:10]}"
    foreign = server.provision(other, CLUSTER)
    try:
        intruder = dataclasses.replace(foreign, database=creds.database)
        with pytest.raises(psycopg.OperationalError, match="permission denied for database"):
            _connect(intruder).close()
    finally:
        server.destroy(other, CLUSTER)
    assert _rows(creds, "SELECT current_database()") == [(creds.database,)]


def test_backup_then_restore_brings_a_deleted_row_back(
    server: PostgresServer, service: str, tmp_dir: Path
) -> None:
    creds = server.provision(service, CLUSTER)
    with _connect(creds) as conn:
        conn.execute("CREATE TABLE notes (id serial PRIMARY KEY, body text)")
        conn.execute("INSERT INTO notes (body) VALUES ('keep me')")
    stale = tmp_dir / f"{creds.database}-20000101T000000.000000Z.dump"
    foreign = tmp_dir / "someone-else-20000101T000000.000000Z.dump"
    for path in (stale, foreign):
        path.write_bytes(b"old")
        os.utime(path, (time.time() - 8 * 86400,) * 2)

    dump = server.backup(service, CLUSTER, tmp_dir, keep_days=7)
    assert dump.parent == tmp_dir and dump.stat().st_size > 0
    assert sorted(p.name for p in tmp_dir.iterdir()) == sorted([dump.name, foreign.name])

    with _connect(creds) as conn:
        conn.execute("DELETE FROM notes")
    server.restore(service, CLUSTER, dump)
    assert _rows(creds, "SELECT id, body FROM notes") == [(1, "keep me")]
    with _connect(creds) as conn:  # the sequence came back too, and the service may write
        conn.execute("INSERT INTO notes (body) VALUES ('after')")
    assert _rows(creds, "SELECT id FROM notes ORDER BY id") == [(1,), (2,)]
    assert _rows(creds, "SELECT tableowner FROM pg_tables WHERE tablename = 'notes'") == [
        (owner_role(creds.database),)
    ]


def test_rotate_keeps_the_tables_and_drops_the_old_role_once_unused(
    server: PostgresServer, service: str, postgres_url: str
) -> None:
    old = server.provision(service, CLUSTER)
    with _connect(old) as conn:
        conn.execute("CREATE TABLE notes (body text)")
        conn.execute("INSERT INTO notes VALUES ('from old')")
        conn.execute("SET ROLE NONE")  # a table the login role itself owns, not the group
        conn.execute("CREATE TABLE own (body text)")

    new = server.rotate(service, CLUSTER)
    assert (new.database, new.host, new.port) == (old.database, old.host, old.port)
    assert new.user != old.user and new.password != old.password
    with _connect(new) as conn:
        assert conn.execute("SELECT body FROM notes").fetchall() == [("from old",)]
        conn.execute("INSERT INTO notes VALUES ('from new')")
        conn.execute("ALTER TABLE notes ADD COLUMN n int")  # an owner's right
        conn.execute("INSERT INTO own VALUES ('default privileges')")
    assert server.info(service, CLUSTER).login_roles == (old.user, new.user)

    with pytest.raises(ConflictError, match="current role"):
        server.drop_role_if_unused(new.user)
    session = _connect(old)
    try:
        assert server.connections_of(old.user) == 1
        assert server.drop_role_if_unused(old.user) is False
        assert _rows(old, "SELECT count(*) FROM notes") == [(2,)]  # still logs in
    finally:
        session.close()
    _eventually(lambda: server.connections_of(old.user) == 0, "the old session did not end")
    assert server.drop_role_if_unused(old.user) is True
    assert server.drop_role_if_unused(old.user) is True  # already gone
    assert _roles(postgres_url, old.database) == sorted([new.user, owner_role(old.database)])
    with pytest.raises(psycopg.OperationalError, match="authentication failed"):
        _connect(old).close()
    with _connect(new) as conn:  # what the old role owned now belongs to the group
        conn.execute("DROP TABLE own")
    assert server.provision(service, CLUSTER, password=new.password) == new


def test_destroy_removes_the_database_and_its_roles(
    server: PostgresServer, service: str, postgres_url: str
) -> None:
    creds = server.provision(service, CLUSTER)
    rotated = server.rotate(service, CLUSTER)
    session = _connect(rotated)
    try:
        server.destroy(service, CLUSTER)
    finally:
        session.close()
    assert not server.exists(service, CLUSTER)
    assert _roles(postgres_url, creds.database) == []
    server.destroy(service, CLUSTER)  # nothing left: no error
    with pytest.raises(NotFoundError, match=creds.database):
        server.info(service, CLUSTER)
    with pytest.raises(NotFoundError, match=creds.database):
        server.rotate(service, CLUSTER)


def test_a_database_of_the_same_name_that_is_not_ours_is_left_alone(
    server: PostgresServer, service: str, postgres_url: str
) -> None:
    name = database_name(service, CLUSTER)
    with psycopg.connect(postgres_url, autocommit=True, connect_timeout=5) as conn:
        conn.execute(sql.SQL("CREATE DATABASE {}").format(sql.Identifier(name)))
    try:
        for call in (server.provision, server.destroy, server.rotate, server.exists):
            with pytest.raises(ConflictError, match=f"{name} exists but is not"):
                call(service, CLUSTER)
    finally:
        with psycopg.connect(postgres_url, autocommit=True, connect_timeout=5) as conn:
            conn.execute(sql.SQL("DROP DATABASE {}").format(sql.Identifier(name)))


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.mark.parametrize(
    ("case", "error"),
    [
        ("refused", TemporaryError),  # nothing listens
        ("silent", TemporaryError),  # accepts TCP, never speaks: only connect_timeout ends it
        ("wrong-password", PermanentError),
    ],
)
def test_a_wrong_admin_url_is_one_clear_bounded_error(
    case: str, error: type[Exception], postgres_url: str
) -> None:
    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    try:
        secret = "s3cret-not-in-messages"
        port = {
            "refused": _closed_port(),
            "silent": listener.getsockname()[1],
            "wrong-password": conninfo_to_dict(postgres_url)["port"],
        }[case]
        server = PostgresServer(f"postgresql://postgres:{secret}@127.0.0.1:{port}/postgres", 2.0)
        started = time.monotonic()
        with pytest.raises(error) as caught:
            server.provision("web", "norcal")
        assert time.monotonic() - started < 5.0
    finally:
        listener.close()
    message = str(caught.value)
    assert f"Postgres server 127.0.0.1:{port}" in message
    assert secret not in message and "\n" not in message
    assert not isinstance(caught.value, TemporaryError) or caught.value.delay > 0
