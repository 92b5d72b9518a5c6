"""Secrets: ``SECRET(name)`` values in an instance's ``env`` (PaaSTA's syntax), kept encrypted in
the state dir and put into a task's environment only when it starts.

``state_dir/secrets/<cluster>.key`` is the cluster's key (made on first use, 0600);
``state_dir/secrets/<cluster>/<service>.json`` holds, per secret name, its value encrypted with
it (``cryptography``'s Fernet), when it changed and its version (a hash of the encrypted value,
never of the value). Loading soa-configs reads only names and versions (``read_index``): the
versions of the secrets an instance uses enter its config hash, so a changed secret bounces it,
and a missing one is a config error naming the field. The reconciler resolves the values when it
creates tasks (``SecretStore.resolve_env``); nothing else ever decrypts them, and no output,
event or file of paasport holds a value.
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import re
import tempfile
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from paasport.config.state_files import private_dir
from paasport.errors import ConfigError, NotFoundError, UsageError

if TYPE_CHECKING:
    from cryptography.fernet import Fernet

SECRET_RE = re.compile(r"^SECRET\((?P<name>[A-Za-z0-9][A-Za-z0-9_.-]{0,127})\)$")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")
FILE_MODE = 0o600
MAX_VALUE_BYTES = 64 * 1024


def secret_ref(value: object) -> str | None:
    """The secret name of an env value ``SECRET(name)``; None for any other value. Pure."""
    m = SECRET_RE.match(value) if isinstance(value, str) else None
    return m["name"] if m else None


def secret_refs(env: Mapping[str, str]) -> dict[str, str]:
    """env key -> secret name, for the keys whose value is ``SECRET(name)``. Pure."""
    return {k: n for k, v in env.items() if (n := secret_ref(v)) is not None}


def secrets_root(state_dir: Path) -> Path:
    return Path(state_dir) / "secrets"


def index_path(state_dir: Path, cluster: str, service: str) -> Path:
    return secrets_root(state_dir) / cluster / f"{service}.json"


@dataclass(frozen=True)
class SecretEntry:
    name: str
    version: str  # a hash of the encrypted value: changes with every update
    changed: float
    token: str = ""  # the encrypted value (never shown)

    def to_json(self) -> dict[str, object]:
        """What ``secret list --json`` shows: never the value, nor its encrypted form."""
        return {"name": self.name, "version": self.version, "changed": self.changed}


def read_index(state_dir: Path, cluster: str, service: str) -> dict[str, SecretEntry]:
    """The secrets of ``service`` on ``cluster`` (none when it has none)."""
    path = index_path(state_dir, cluster, service)
    try:
        doc = json.loads(path.read_text())
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        raise ConfigError(f"{path}: cannot read the secrets: {err}") from None
    out: dict[str, SecretEntry] = {}
    for name, entry in (doc.get("secrets") or {}).items() if isinstance(doc, dict) else ():
        if isinstance(entry, dict):
            out[str(name)] = SecretEntry(
                str(name), str(entry.get("version", "")), float(entry.get("changed", 0.0)),
                str(entry.get("token", "")),
            )  # fmt: skip
    return out


def check_name(name: str) -> str:
    if not NAME_RE.match(name):
        raise UsageError(
            f"secret name {name!r}: expected letters, digits, _ . - (at most 128, not - first)"
        )
    return name


class SecretStore:
    """The secrets of one cluster in one state dir."""

    def __init__(self, state_dir: Path, cluster: str) -> None:
        self.state_dir = Path(state_dir)
        self.cluster = cluster

    @property
    def key_path(self) -> Path:
        return secrets_root(self.state_dir) / f"{self.cluster}.key"

    def _fernet(self, create: bool) -> Fernet:
        from cryptography.fernet import Fernet

        path = self.key_path
        try:
            return Fernet(path.read_bytes().strip())
        except FileNotFoundError:
            if not create:
                raise NotFoundError(f"cluster {self.cluster} has no secret key ({path})") from None
        except (OSError, ValueError) as err:
            raise ConfigError(f"{path}: not a usable secret key: {err}") from None
        key = Fernet.generate_key()
        _write_private(path, key + b"\n", secrets_root(self.state_dir), exclusive=True)
        return Fernet(path.read_bytes().strip())  # another writer may have won: use the file's

    def entries(self, service: str) -> list[SecretEntry]:
        return sorted(read_index(self.state_dir, self.cluster, service).values(),
                      key=lambda e: e.name)  # fmt: skip

    def put(self, service: str, name: str, value: bytes, now: float) -> tuple[SecretEntry, bool]:
        """Store ``value`` as the secret ``name`` of ``service``: (its entry, whether it was
        there before)."""
        check_name(name)
        if not value:
            raise UsageError(f"secret {name}: the value is empty")
        if len(value) > MAX_VALUE_BYTES:
            raise UsageError(f"secret {name}: at most {MAX_VALUE_BYTES} bytes")
        fernet = self._fernet(create=True)
        token = fernet.encrypt(value).decode()
        version = hashlib.sha256(token.encode()).hexdigest()[:12]
        index = read_index(self.state_dir, self.cluster, service)
        existed = name in index
        index[name] = SecretEntry(name, version, now, token)
        self._save(service, index)
        return index[name], existed

    def put_many(
        self, service: str, values: Mapping[str, bytes], now: float
    ) -> dict[str, SecretEntry]:
        """Store several secrets of ``service`` in one write (an add-on's credentials): a reader
        never sees half of them changed."""
        fernet = self._fernet(create=True)
        index = read_index(self.state_dir, self.cluster, service)
        for name, value in values.items():
            check_name(name)
            if not value or len(value) > MAX_VALUE_BYTES:
                raise UsageError(f"secret {name}: empty, or more than {MAX_VALUE_BYTES} bytes")
            token = fernet.encrypt(value).decode()
            version = hashlib.sha256(token.encode()).hexdigest()[:12]
            index[name] = SecretEntry(name, version, now, token)
        self._save(service, index)
        return {name: index[name] for name in values}

    def remove_many(self, service: str, names: Collection[str]) -> list[str]:
        """Remove those of ``names`` that exist, in one write; returns the removed names."""
        index = read_index(self.state_dir, self.cluster, service)
        gone = sorted(n for n in names if n in index)
        if gone:
            for name in gone:
                del index[name]
            self._save(service, index)
        return gone

    def remove(self, service: str, name: str) -> SecretEntry:
        index = read_index(self.state_dir, self.cluster, service)
        if name not in index:
            known = ", ".join(sorted(index)) or "none"
            raise NotFoundError(f"{service}: no secret {name!r} on cluster {self.cluster} "
                                f"(secrets: {known})")  # fmt: skip
        gone = index.pop(name)
        self._save(service, index)
        return gone

    def resolve_env(self, service: str, env: Mapping[str, str]) -> dict[str, str]:
        """``env`` with every ``SECRET(name)`` value replaced by the secret's value (only for a
        task's start); a missing secret is a NotFoundError naming the key, never a value."""
        refs = secret_refs(env)
        if not refs:
            return dict(env)
        index = read_index(self.state_dir, self.cluster, service)
        fernet = self._fernet(create=False)
        out = dict(env)
        for key, name in refs.items():
            entry = index.get(name)
            if entry is None:
                raise NotFoundError(
                    f"{service}: env {key}: no secret {name!r} on cluster {self.cluster} "
                    f"(paasport secret add -s {service} -n {name})"
                )
            try:
                out[key] = fernet.decrypt(entry.token.encode()).decode()
            except Exception as err:  # a wrong key or a damaged file: say which, not the value
                raise ConfigError(
                    f"{service}: secret {name} cannot be decrypted with {self.key_path} "
                    f"({type(err).__name__})"
                ) from None
        return out

    def _save(self, service: str, index: Mapping[str, SecretEntry]) -> None:
        doc = {"secrets": {n: {"version": e.version, "changed": e.changed, "token": e.token}
                           for n, e in sorted(index.items())}}  # fmt: skip
        path = index_path(self.state_dir, self.cluster, service)
        text = json.dumps(doc, indent=2, sort_keys=True) + "\n"
        _write_private(path, text.encode(), secrets_root(self.state_dir))


def _write_private(path: Path, data: bytes, root: Path, *, exclusive: bool = False) -> None:
    """Write ``data`` to ``path`` (0600; ``root`` and the folders below it 0700) atomically;
    ``exclusive``: leave a file that exists as it is."""
    private_dir(root)
    folder = private_dir(path.parent)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", dir=folder)
    try:
        with os.fdopen(fd, "wb") as out:
            os.fchmod(out.fileno(), FILE_MODE)
            out.write(data)
            out.flush()
            os.fsync(out.fileno())
        if exclusive:
            with contextlib.suppress(FileExistsError):
                os.link(tmp, path)
            os.unlink(tmp)
        else:
            os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(OSError):
            os.unlink(tmp)
        raise
