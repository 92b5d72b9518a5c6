"""Add-ons an instance asks for (``addons: {postgres: {}}``): the field's rule, the reserved
secret names that hold an add-on's credentials, and the env that points at them. Pure.

``config.fields`` uses ``ADDONS`` for the field; ``config.merge.build_instance`` adds
``addon_env`` to the instance's env (``SECRET(addon-postgres-...)`` references, so the secrets
path resolves them at a task's start and their versions enter the config hash);
``platform.addons`` stores the credentials under those names once it provisioned them.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from paasport.config.spec import Custom, Issue, IssuePath, Obj, Spec, describe

POSTGRES = "postgres"
ADDON_NAMES = (POSTGRES,)
SECRET_PREFIX = "addon-"  # secret names of this prefix are the add-ons' own (never a user's)

# env key -> the secret holding it: what ``deploy.postgres.Credentials.env`` gives
POSTGRES_ENV_SECRETS: Mapping[str, str] = {
    "DATABASE_URL": "addon-postgres-url",
    "PGHOST": "addon-postgres-host",
    "PGPORT": "addon-postgres-port",
    "PGUSER": "addon-postgres-user",
    "PGPASSWORD": "addon-postgres-password",
    "PGDATABASE": "addon-postgres-database",
}
POSTGRES_USER_SECRET = POSTGRES_ENV_SECRETS["PGUSER"]
POSTGRES_PASSWORD_SECRET = POSTGRES_ENV_SECRETS["PGPASSWORD"]
ENV_SECRETS: Mapping[str, Mapping[str, str]] = {POSTGRES: POSTGRES_ENV_SECRETS}


@dataclass
class AddonSwitch(Spec):
    """One add-on's value: ``{}`` (or ``true``) asks for it; ``false`` or ``null`` does not (an
    instance file turning off what service.yaml asks for). The mapping has no fields yet."""

    name: str
    description: str = ""

    def __post_init__(self) -> None:
        self.expected = "{} (the add-on, with its defaults), true or false"
        self._fields = Obj({})

    def check(self, value: object, path: IssuePath, out: list[Issue]) -> object:
        if value is None:
            return False
        if isinstance(value, bool):
            return value
        if isinstance(value, dict):
            self._fields.check(value, path, out)
            return True
        out.append(Issue(path, f"expected {self.expected}, found {describe(value)}"))
        return None

    def schema(self) -> dict[str, object]:
        empty = {"type": "object", "properties": {}, "additionalProperties": False}
        return self._described({"anyOf": [empty, {"type": ["boolean", "null"]}]})


ADDONS = Obj(
    {
        POSTGRES: AddonSwitch(
            POSTGRES,
            description="a PostgreSQL database and role of the service on this cluster; "
            "DATABASE_URL and PGHOST/PGPORT/PGUSER/PGPASSWORD/PGDATABASE in the env as secrets",
        )
    },
    description="add-ons the instance uses (an instance file's value wins over service.yaml's)",
)


_SERVER_URL = re.compile(r"postgres(ql)?://\S*")


def _server_url(value: object) -> tuple[object, str | None]:
    # the URL holds a password: a message never shows it
    if isinstance(value, str) and _SERVER_URL.fullmatch(value):
        return value, None
    found = "a string that is not one" if isinstance(value, str) else describe(value)
    return None, f"expected a postgresql:// URL naming a superuser, found {found}"


SERVER_URL = Custom(
    _server_url,
    {"type": "string", "pattern": "^postgres(ql)?://"},
    expected="a postgresql:// URL naming a superuser",
    description="an existing server's superuser URL, e.g. postgresql://postgres:PASSWORD@db:5432"
    "/postgres (default: paasport runs its own Postgres, state_dir/postgres)",
)


def addons_of(merged: Mapping[str, object]) -> tuple[str, ...]:
    """The add-ons merged instance values ask for, in ``ADDON_NAMES`` order."""
    value = merged.get("addons")
    if not isinstance(value, Mapping):
        return ()
    return tuple(name for name in ADDON_NAMES if value.get(name) is True)


def addon_env(addons: Sequence[str]) -> dict[str, str]:
    """The env the add-ons set: each key a ``SECRET(name)`` reference to a reserved secret."""
    return {key: f"SECRET({name})" for a in addons for key, name in ENV_SECRETS[a].items()}


def env_issues(env: Mapping[str, object], addons: Sequence[str]) -> list[Issue]:
    """An env key an add-on sets, written by hand too, is ambiguous: an error naming both."""
    return [
        Issue(
            ("env", key),
            f"expected no {key} here: the {addon} add-on sets it (addons.{addon}); "
            "remove one of the two",
        )
        for addon in addons
        for key in ENV_SECRETS[addon]
        if key in env
    ]


def is_reserved_secret(name: str) -> bool:
    return name.startswith(SECRET_PREFIX)


def addon_of_secret(name: str) -> str | None:
    """The add-on whose credentials the secret ``name`` holds; None for a user's secret."""
    for addon, names in ENV_SECRETS.items():
        if name in names.values():
            return addon
    return None


def secret_values(addon: str, env: Mapping[str, str]) -> dict[str, bytes]:
    """Secret name -> value for the credentials ``env`` (``Credentials.env()``) of ``addon``."""
    return {name: env[key].encode() for key, name in ENV_SECRETS[addon].items()}
