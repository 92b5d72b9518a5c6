"""The pure parts of the Postgres add-on: which add-ons merged values ask for and the env they
add, the reserved secret names, the server URL's rule (never echoed), paasport.yaml's
addons.postgres, the add-on's state in ``addon list``, backup choice, the one-host server's
pg_hba lines and SCRAM verifier, the bridge network, and database marks."""

from __future__ import annotations

import base64
import hashlib
import hmac
from pathlib import Path
from typing import Any

import pytest

from paasport.config.addons import (
    SERVER_URL,
    addon_env,
    addon_of_secret,
    addons_of,
    env_issues,
    is_reserved_secret,
    secret_values,
)
from paasport.config.secrets import SecretStore, read_index
from paasport.config.spec import Issue
from paasport.config.system import load_system_config
from paasport.deploy.postgres import (
    Credentials,
    database_comment,
    parse_comment,
    server_address,
)
from paasport.engine.docker_network import BridgeNetwork, bridge_of
from paasport.errors import ConfigError, NotFoundError
from paasport.platform.addons import Backup, addon_state, choose_backup
from paasport.platform.postgres_local import admin_url, hba_lines, scram_verifier

SIX = {
    "DATABASE_URL": "SECRET(addon-postgres-url)",
    "PGHOST": "SECRET(addon-postgres-host)",
    "PGPORT": "SECRET(addon-postgres-port)",
    "PGUSER": "SECRET(addon-postgres-user)",
    "PGPASSWORD": "SECRET(addon-postgres-password)",
    "PGDATABASE": "SECRET(addon-postgres-database)",
}

ADDONS_OF = [
    ({}, ()),
    ({"addons": {}}, ()),
    ({"addons": {"postgres": True}}, ("postgres",)),
    ({"addons": {"postgres": False}}, ()),
    ({"addons": None}, ()),
    ({"addons": {"redis": True}}, ()),  # unknown: the field check said so already
]


@pytest.mark.parametrize(("merged", "expected"), ADDONS_OF)
def test_addons_of_merged_values(merged: dict[str, Any], expected: tuple[str, ...]) -> None:
    assert addons_of(merged) == expected


def test_the_env_is_six_secret_references() -> None:
    assert addon_env(("postgres",)) == SIX
    assert addon_env(()) == {}


ENV_ISSUES = [
    ({"GREETING": "hi"}, ("postgres",), []),
    ({"PGUSER": "me"}, (), []),  # without the add-on, the variable is the user's
    (
        {"PGUSER": "me", "X": "1"},
        ("postgres",),
        [("env", "PGUSER")],
    ),
]


@pytest.mark.parametrize(("env", "addons", "paths"), ENV_ISSUES)
def test_env_keys_the_addon_sets_are_errors(
    env: dict[str, str], addons: tuple[str, ...], paths: list[tuple[str, str]]
) -> None:
    issues = env_issues(env, addons)
    assert [i.path for i in issues] == paths
    assert all(isinstance(i, Issue) and i.severity == "error" for i in issues)


RESERVED = [
    ("addon-postgres-url", True, "postgres"),
    ("addon-postgres-password", True, "postgres"),
    ("addon-redis-url", True, None),  # reserved for add-ons to come
    ("db_password", False, None),
    ("addons", False, None),
]


@pytest.mark.parametrize(("name", "reserved", "addon"), RESERVED)
def test_reserved_secret_names(name: str, reserved: bool, addon: str | None) -> None:
    assert is_reserved_secret(name) is reserved
    assert addon_of_secret(name) == addon


def test_secret_values_of_credentials() -> None:
    creds = Credentials("172.17.0.1", 5433, "web_local_u2", "pw", "web_local")
    values = secret_values("postgres", creds.env())
    assert values == {
        "addon-postgres-url": b"postgresql://web_local_u2:pw@172.17.0.1:5433/web_local",
        "addon-postgres-host": b"172.17.0.1",
        "addon-postgres-port": b"5433",
        "addon-postgres-user": b"web_local_u2",
        "addon-postgres-password": b"pw",
        "addon-postgres-database": b"web_local",
    }


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("postgresql://postgres:s3cret@db:5432/postgres", True),
        ("postgres://postgres@db/postgres", True),
        ("mysql://root:s3cret@db/x", False),
        ("postgresql://postgres:s3cret@db /x", False),
        (5432, False),
    ],
)
def test_the_server_url_rule_never_shows_the_value(value: object, ok: bool) -> None:
    out: list[Issue] = []
    SERVER_URL.check(value, ("addons", "postgres", "url"), out)
    assert (not out) is ok
    assert all("s3cret" not in i.message for i in out)


def test_paasport_yaml_addons_postgres(tmp_path: Path) -> None:
    path = tmp_path / "paasport.yaml"
    path.write_text(
        "addons:\n  postgres:\n    url: postgresql://postgres:s3cret@db:5432/postgres\n"
        "    task_host: 10.0.0.5\n    backup_keep_days: 3\n"
    )
    system = load_system_config(path, soa_dir=tmp_path, state_dir=tmp_path)
    pg = system.addons.postgres
    assert (pg.url, pg.task_host, pg.backup_keep_days) == (
        "postgresql://postgres:s3cret@db:5432/postgres",
        "10.0.0.5",
        3,
    )
    assert "s3cret" not in repr(system)  # a debug log of the config never shows it
    assert load_system_config(tmp_path / "none.yaml").addons.postgres.url is None


def test_a_bad_server_url_is_a_config_error_without_the_password(tmp_path: Path) -> None:
    path = tmp_path / "paasport.yaml"
    path.write_text("addons:\n  postgres:\n    url: 'mysql://root:s3cret@db'\n    bogus: 1\n")
    with pytest.raises(ConfigError) as err:
        load_system_config(path, soa_dir=tmp_path, state_dir=tmp_path)
    text = str(err.value)
    assert "paasport.yaml:3" in text and "addons.postgres.url: expected a postgresql://" in text
    assert "paasport.yaml:4" in text and "addons.postgres.bogus: unknown field" in text
    assert "s3cret" not in text


STATES = [
    # asked, database, credentials -> state
    (True, True, True, "provisioned"),
    (True, False, False, "waiting"),
    (True, True, False, "waiting"),  # deployd stores the credentials next
    (False, True, True, "orphaned"),  # the config dropped it: kept until destroy
    (False, True, False, "orphaned"),
    (False, False, True, "orphaned"),
    (False, False, False, "none"),
]


@pytest.mark.parametrize(("asked", "database", "credentials", "state"), STATES)
def test_addon_state(asked: bool, database: bool, credentials: bool, state: str) -> None:
    assert addon_state(asked, database, credentials) == state


def _backup(name: str, t: float) -> Backup:
    return Backup(name, Path("/b") / name, 10, t)


BACKUPS = [
    _backup("web_local-20260101T000000.000000Z.dump", 1.0),
    _backup("web_local-20260102T000000.000000Z.dump", 2.0),
    _backup("web_local-20260102T120000.000000Z.dump", 3.0),
]


@pytest.mark.parametrize(
    ("name", "chosen"),
    [
        (None, 2),  # the newest
        ("web_local-20260101T000000.000000Z.dump", 0),
        ("web_local-20260101", 0),  # a unique start
    ],
)
def test_choose_backup(name: str | None, chosen: int) -> None:
    assert choose_backup(BACKUPS, name) is BACKUPS[chosen]


@pytest.mark.parametrize(
    ("found", "name", "says"),
    [
        ([], None, "no backup yet"),
        (BACKUPS, "web_local-20260102", "more than one backup named"),
        (BACKUPS, "nope", "no backup named 'nope'"),
    ],
)
def test_choose_backup_refuses(found: list[Backup], name: str | None, says: str) -> None:
    with pytest.raises(NotFoundError, match=says):
        choose_backup(found, name)


def test_pg_hba_lets_in_127_0_0_1_and_the_bridge_by_scram_only() -> None:
    assert hba_lines(["172.17.0.0/16"]) == [
        "local all postgres peer",
        "local all all reject",
        "host all all 127.0.0.1/32 scram-sha-256",
        "host all all 172.17.0.0/16 scram-sha-256",
    ]
    assert admin_url("pw", 5433) == "postgresql://postgres:pw@127.0.0.1:5433/postgres"


def test_scram_verifier_is_what_a_client_proves_against() -> None:
    salt = b"0123456789abcdef"
    verifier = scram_verifier("pencil", salt)
    head, keys = verifier.split("$", 1)[1].split("$")
    iterations, salt64 = head.split(":")
    stored, server = (base64.b64decode(k) for k in keys.split(":"))
    assert verifier.startswith("SCRAM-SHA-256$4096:") and int(iterations) == 4096
    assert base64.b64decode(salt64) == salt
    # what the server checks: H(ClientKey) == StoredKey, with the client's own derivation
    salted = hashlib.pbkdf2_hmac("sha256", b"pencil", salt, 4096)
    assert hashlib.sha256(hmac.new(salted, b"Client Key", "sha256").digest()).digest() == stored
    assert hmac.new(salted, b"Server Key", "sha256").digest() == server
    assert scram_verifier("pencil", b"another salt....") != verifier
    assert "pencil" not in verifier


BRIDGES = [
    (
        {"IPAM": {"Config": [{"Subnet": "172.17.0.0/16", "Gateway": "172.17.0.1"}]}},
        BridgeNetwork("172.17.0.1", "172.17.0.0/16"),
    ),
    (
        {
            "IPAM": {
                "Config": [
                    {"Subnet": "fd00::/64", "Gateway": "fd00::1"},
                    {"Subnet": "10.9.0.0/24", "Gateway": "10.9.0.1/24"},
                ]
            }
        },
        BridgeNetwork("10.9.0.1", "10.9.0.0/24"),
    ),
    # a daemon that found docker0 configured already leaves the gateway out: the first address
    (
        {"IPAM": {"Config": [{"Subnet": "172.18.0.0/16"}]}},
        BridgeNetwork("172.18.0.1", "172.18.0.0/16"),
    ),
    ({"IPAM": {"Config": None}}, None),
    ({}, None),
]


@pytest.mark.parametrize(("inspected", "expected"), BRIDGES)
def test_bridge_of_network_inspect(inspected: dict[str, Any], expected: object) -> None:
    assert bridge_of(inspected) == expected


def test_database_marks_round_trip() -> None:
    assert parse_comment(database_comment("web-api", "prod-east")) == ("web-api", "prod-east")
    assert parse_comment("someone else's database") is None
    assert server_address("postgresql://u:p@db.internal:6432/x") == ("db.internal", 6432)
    assert server_address("postgresql:///x") == ("", 5432)  # the local socket


def test_credentials_are_written_in_one_go(tmp_path: Path) -> None:
    store = SecretStore(tmp_path, "local")
    store.put_many("web", {"addon-postgres-user": b"u1", "addon-postgres-password": b"p1"}, 1.0)
    first = read_index(tmp_path, "local", "web")
    store.put_many("web", {"addon-postgres-user": b"u2", "addon-postgres-password": b"p2"}, 2.0)
    second = read_index(tmp_path, "local", "web")
    assert {n: e.version != first[n].version for n, e in second.items()} == {
        "addon-postgres-user": True,
        "addon-postgres-password": True,
    }
    env = store.resolve_env("web", {"U": "SECRET(addon-postgres-user)"})
    assert env == {"U": "u2"}
    assert store.remove_many("web", ["addon-postgres-user", "nope"]) == ["addon-postgres-user"]
    assert set(read_index(tmp_path, "local", "web")) == {"addon-postgres-password"}
    assert b"p2" not in (tmp_path / "secrets" / "local" / "web.json").read_bytes()


@pytest.mark.parametrize(
    ("instance_file", "state"),
    [
        ("main:\n  cmd: run\n", "Waiting"),  # only waiting for its credentials
        ("main:\n  cmd: run\n  cpus: -1\n", "Config error"),  # an error says so first
    ],
)
def test_status_says_an_instance_waits_for_its_addon(
    tmp_path: Path, instance_file: str, state: str
) -> None:
    from paasport.config.system import SystemConfig
    from paasport.config.tree import load_tree
    from paasport.view.status import config_error_views

    soa = tmp_path / "soa"
    (soa / "web").mkdir(parents=True)
    (soa / "web" / "service.yaml").write_text("description: web\naddons: {postgres: {}}\n")
    (soa / "web" / "deploy.yaml").write_text("pipeline:\n  - step: local.main\n")
    (soa / "web" / "instances-local.yaml").write_text(instance_file)
    system = SystemConfig(soa_dir=soa, state_dir=tmp_path)
    [view] = config_error_views(system, load_tree(soa, system=system), None)
    entry = view.to_json()
    assert (entry["instance"], entry["state"], entry["ok"]) == ("main", state, False)
    if state == "Waiting":
        assert "addons.postgres: waiting for its database" in str(entry["why"])
        assert str(entry["why"]).endswith(
            "(what runs is left as it is, nothing new starts until then)"
        )
