"""The pure half of the Postgres adapter: database and role names, backup file names and their
expiry, the server label of an admin URL, and the credentials a service gets."""

from __future__ import annotations

import re

import pytest

from paasport.deploy.postgres import (
    MAX_DATABASE_NAME,
    Credentials,
    backup_name,
    backups_to_remove,
    database_name,
    login_generation,
    login_role,
    owner_role,
    server_label,
)
from paasport.errors import ConfigError, UsageError

LONG = "a" * 60

DATABASE_NAMES = [
    # service, cluster, database
    ("web", "norcal", "web_norcal"),
    ("my-service", "norcal-prod", "my_service_norcal_prod"),
    ("Web", "NorCal", "web_norcal"),
    ("api_v2", "eu.west", "api_v2_eu_west"),
    ("a--b", "c", "a_b_c"),  # runs of separators collapse
    ("-web-", "-x-", "web_x"),  # no separator at either end
    ("9lives", "norcal", "s_9lives_norcal"),  # an identifier does not start with a digit
    ("pg", "norcal", "s_pg_norcal"),  # pg_ roles are reserved
    ("pgweb", "norcal", "pgweb_norcal"),
    ("café", "norcal", "caf_norcal"),
    (LONG, "norcal", f"{'a' * 39}_74191e64"),  # shortened, ends in a hash of the full name
    (LONG, "socal", f"{'a' * 39}_88274112"),  # ... so two long names stay apart
    ("a" * 35, "b" * 12, f"{'a' * 35}_{'b' * 12}"),  # exactly 48: kept
]


@pytest.mark.parametrize(("service", "cluster", "database"), DATABASE_NAMES)
def test_database_name(service: str, cluster: str, database: str) -> None:
    name = database_name(service, cluster)
    assert name == database
    assert re.fullmatch(r"[a-z_][a-z0-9_]*", name)
    assert len(name) <= MAX_DATABASE_NAME
    # its roles stay within Postgres' 63-byte identifiers
    assert len(owner_role(name)) <= 63 and len(login_role(name, 99999)) <= 63


@pytest.mark.parametrize(("service", "cluster"), [("", "norcal"), ("web", ""), ("---", "_")])
def test_no_database_name_from_nothing(service: str, cluster: str) -> None:
    with pytest.raises(UsageError, match="no database name"):
        database_name(service, cluster)


LOGIN_GENERATIONS = [
    # database, role, generation
    ("web_norcal", "web_norcal_u1", 1),
    ("web_norcal", "web_norcal_u12", 12),
    ("web_norcal", "web_norcal_owner", None),
    ("web_norcal", "web_norcal_u0", None),
    ("web_norcal", "web_norcal_u01", None),
    ("web_norcal", "web_norcal_u1x", None),
    ("web_norcal", "web_norcal_prod_u1", None),  # another database's role
    ("web", "web_norcal_u1", None),
    ("a.b", "aXb_u1", None),  # the database name is literal, not a pattern
    ("web_norcal", "postgres", None),
]


@pytest.mark.parametrize(("database", "role", "generation"), LOGIN_GENERATIONS)
def test_login_generation(database: str, role: str, generation: int | None) -> None:
    assert login_generation(database, role) == generation
    if generation:
        assert login_role(database, generation) == role


DAY = 86400.0
NOW = 1_800_000_000.0
OLD = backup_name("web_norcal", NOW - 8 * DAY)
NEW = backup_name("web_norcal", NOW - 1 * DAY)
OTHER_DB = backup_name("web_norcal_prod", NOW - 30 * DAY)

BACKUPS = [
    # files (name -> age in days), keep_days, removed
    ({OLD: 8, NEW: 1}, 7, [OLD]),
    ({OLD: 8, NEW: 1}, 30, []),
    ({OLD: 8, NEW: 1}, 0, [NEW, OLD]),
    ({OTHER_DB: 30, OLD: 8}, 7, [OLD]),  # another database's backups are not ours to expire
    ({"notes.txt": 99, f"{OLD}.partial": 99, f".{OLD}.partial": 99}, 7, []),
    ({OLD: 6.9}, 7, []),  # age is the file's mtime, not the name's time
]


@pytest.mark.parametrize(("ages", "keep_days", "removed"), BACKUPS)
def test_backups_to_remove(ages: dict[str, float], keep_days: int, removed: list[str]) -> None:
    mtimes = {name: NOW - days * DAY for name, days in ages.items()}
    assert backups_to_remove(mtimes, "web_norcal", NOW, keep_days) == sorted(removed)


def test_backup_names_sort_by_time() -> None:
    assert backup_name("web_norcal", NOW) == "web_norcal-20270115T080000.000000Z.dump"
    assert backup_name("d", NOW) < backup_name("d", NOW + 0.5) < backup_name("d", NOW + DAY)


SERVER_LABELS = [
    ("postgresql://postgres:s3cret@db.example:6432/postgres", "db.example:6432"),
    ("postgresql://postgres@127.0.0.1/postgres", "127.0.0.1:5432"),
    ("postgres://u:p@[::1]:55432/x?sslmode=require", "::1:55432"),
    ("host=10.0.0.5 port=5433 user=postgres password=s3cret", "10.0.0.5:5433"),
    ("postgresql:///postgres", "local socket:5432"),
]


@pytest.mark.parametrize(("url", "label"), SERVER_LABELS)
def test_server_label_never_shows_the_password(url: str, label: str) -> None:
    assert server_label(url) == label


def test_a_malformed_admin_url_is_a_config_error_without_the_url() -> None:
    with pytest.raises(ConfigError) as caught:
        server_label("host=db password='s3cret")
    assert "s3cret" not in str(caught.value)


CREDENTIALS = [
    # host, password, url
    ("127.0.0.1", "pw", "postgresql://web_norcal_u1:pw@127.0.0.1:5432/web_norcal"),
    ("::1", "pw", "postgresql://web_norcal_u1:pw@[::1]:5432/web_norcal"),
    ("db", "p@ss/w:rd", "postgresql://web_norcal_u1:p%40ss%2Fw%3Ard@db:5432/web_norcal"),
    ("/run/pg", "pw", "postgresql://web_norcal_u1:pw@/web_norcal?host=%2Frun%2Fpg&port=5432"),
]


@pytest.mark.parametrize(("host", "password", "url"), CREDENTIALS)
def test_credentials(host: str, password: str, url: str) -> None:
    creds = Credentials(host, 5432, "web_norcal_u1", password, "web_norcal")
    assert creds.url == url
    assert creds.env() == {
        "DATABASE_URL": url,
        "PGHOST": host,
        "PGPORT": "5432",
        "PGUSER": "web_norcal_u1",
        "PGPASSWORD": password,
        "PGDATABASE": "web_norcal",
    }
    assert password not in repr(creds)
