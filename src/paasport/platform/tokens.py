"""API tokens: made once, shown once, kept only as their SHA-256 in ``state_dir/api-tokens.json``.

``paasport token create|list|revoke`` (``cli/api_cmds.py``) writes the file through
``TokenStore`` (atomically: a temporary file renamed over it, 0600); the API (``api/auth.py``)
reads it on each authenticated request and asks ``find_token`` which record a bearer matches.
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import re
import secrets
import tempfile
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from paasport.config.state_files import FILE_MODE, exclusive_lock, private_dir
from paasport.errors import ConfigError, ConflictError, NotFoundError, UsageError

TOKENS_FILE = "api-tokens.json"
TOKEN_PREFIX = "pp_"
NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.@-]{0,63}")


@dataclass(frozen=True)
class TokenRecord:
    """What is kept of a token: never the token itself."""

    name: str
    team: str
    admin: bool
    sha256: str  # hex digest of the token
    created: float

    def to_json(self) -> dict[str, object]:
        """``paasport token list --json`` (the hash is not shown)."""
        return {"name": self.name, "team": self.team, "admin": self.admin, "created": self.created}


def hash_token(token: str) -> str:
    """The hex SHA-256 of a token (tokens are 256 random bits: no salt or stretching needed)."""
    return hashlib.sha256(token.encode("utf-8")).hexdigest()


def new_token() -> str:
    return TOKEN_PREFIX + secrets.token_urlsafe(32)


def find_token(records: Sequence[TokenRecord], presented: str) -> TokenRecord | None:
    """The record whose hash is the presented token's; every record is compared in constant
    time, so the answer's timing says nothing about how close a guess came. Pure."""
    digest = hash_token(presented)
    found: TokenRecord | None = None
    for record in records:
        if hmac.compare_digest(record.sha256, digest):
            found = record
    return found


def check_name(name: str, what: str = "name") -> str:
    if not NAME.fullmatch(name):
        raise UsageError(
            f"--{what} {name!r}: expected 1 to 64 letters, digits, '_', '.', '@' or '-' "
            "(starting with a letter or digit)"
        )
    return name


def default_name(team: str, taken: Iterable[str]) -> str:
    """``<team>-<n>``, the first n not taken. Pure."""
    names = set(taken)
    n = 1
    while f"{team}-{n}" in names:
        n += 1
    return f"{team}-{n}"


def parse_records(text: str, where: str) -> list[TokenRecord]:
    """The records of the file's text; ConfigError naming the file for anything else. Pure."""
    try:
        doc = json.loads(text)
        rows = doc["tokens"]
        return [
            TokenRecord(
                str(r["name"]),
                str(r["team"]),
                bool(r["admin"]),
                str(r["sha256"]),
                float(r["created"]),
            )
            for r in rows
        ]
    except (ValueError, KeyError, TypeError) as err:
        raise ConfigError(f"{where}: not a paasport token file ({err})") from None


LOCK_SECONDS = 10.0


class TokenStore:
    """The token file of one state dir."""

    def __init__(self, state_dir: Path) -> None:
        self.path = Path(state_dir) / TOKENS_FILE

    def load(self) -> list[TokenRecord]:
        try:
            text = self.path.read_text()
        except FileNotFoundError:
            return []
        except OSError as err:
            raise ConfigError(f"{self.path}: cannot read: {err.strerror or err}") from None
        return parse_records(text, str(self.path))

    @contextlib.contextmanager
    def _changing(self) -> Iterator[None]:
        """One writer at a time (two ``token create`` at once must not lose one): an exclusive
        lock on a sibling file, waited for at most ``LOCK_SECONDS``."""
        folder = private_dir(self.path.parent)

        def busy() -> Exception:
            return ConflictError(f"{self.path}: another paasport is changing the tokens; try again")

        with exclusive_lock(folder / f".{TOKENS_FILE}.lock", LOCK_SECONDS, busy):
            yield

    def create(
        self, team: str, *, admin: bool = False, name: str | None = None, now: float
    ) -> tuple[str, TokenRecord]:
        """A new token (returned once) and its record, saved."""
        check_name(team, "team")
        with self._changing():
            return self._create(team, admin, name, now)

    def _create(
        self, team: str, admin: bool, name: str | None, now: float
    ) -> tuple[str, TokenRecord]:
        records = self.load()
        name = check_name(name) if name else default_name(team, (r.name for r in records))
        if any(r.name == name for r in records):
            raise ConflictError(f"a token named {name!r} exists (paasport token revoke {name})")
        token = new_token()
        record = TokenRecord(name, team, admin, hash_token(token), now)
        self._save([*records, record])
        return token, record

    def revoke(self, name: str) -> TokenRecord:
        with self._changing():
            return self._revoke(name)

    def _revoke(self, name: str) -> TokenRecord:
        records = self.load()
        gone = [r for r in records if r.name == name]
        if not gone:
            known = ", ".join(r.name for r in records) or "none"
            raise NotFoundError(f"no token named {name!r} (tokens: {known})")
        self._save([r for r in records if r.name != name])
        return gone[0]

    def _save(self, records: Sequence[TokenRecord]) -> None:
        folder = private_dir(self.path.parent)
        doc = {
            "tokens": [
                {"name": r.name, "team": r.team, "admin": r.admin, "sha256": r.sha256,
                 "created": r.created}
                for r in records
            ]
        }  # fmt: skip
        fd, tmp = tempfile.mkstemp(prefix=f".{TOKENS_FILE}.", dir=folder)
        try:
            with os.fdopen(fd, "w") as out:
                os.fchmod(out.fileno(), FILE_MODE)
                json.dump(doc, out, indent=2, sort_keys=True)
                out.write("\n")
                out.flush()
                os.fsync(out.fileno())
            os.replace(tmp, self.path)
        except BaseException:
            with contextlib.suppress(OSError):
                os.unlink(tmp)
            raise
