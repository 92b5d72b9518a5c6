"""HTTP status codes of paasport's errors and the one error body ``{"error": {...}}``.

``api.app`` installs ``error_response`` for every PaasportError, FastAPI's request validation
and unknown routes; nothing else in paasport knows about HTTP status codes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

from paasport.errors import (
    ConfigError,
    ConflictError,
    GitError,
    NotFoundError,
    PaasportError,
    TemporaryError,
    UsageError,
)


class Unauthorized(PaasportError):
    """No token, or one paasport does not know (401)."""


class Forbidden(PaasportError):
    """A known token that may not do this (403)."""


class RateLimited(PaasportError):
    """Too many failed authentications from one client (429)."""

    def __init__(self, message: str, retry_after: float) -> None:
        super().__init__(message)
        self.retry_after = retry_after


# the first matching class decides, so subclasses come before their bases
STATUS: tuple[tuple[type[PaasportError], int], ...] = (
    (Unauthorized, 401),
    (Forbidden, 403),
    (RateLimited, 429),
    (UsageError, 400),
    (NotFoundError, 404),
    (ConflictError, 409),
    (ConfigError, 422),
    (GitError, 502),
    (TemporaryError, 503),  # the engine, the registry or a git remote did not answer
)


def status_for(err: PaasportError) -> int:
    """The HTTP status of ``err`` (409 for any other operation that cannot succeed). Pure."""
    for kind, status in STATUS:
        if isinstance(err, kind):
            return status
    return 409


def error_body(message: str, field: str | None = None) -> dict[str, Any]:
    """The one error shape every endpoint answers with. Pure."""
    err: dict[str, Any] = {"message": message}
    if field:
        err["field"] = field
    return {"error": err}


def paasport_error_body(err: PaasportError) -> dict[str, Any]:
    """A PaasportError's body: a ConfigError's first problem names its field (all are listed)."""
    if isinstance(err, ConfigError) and err.problems:
        body = error_body(str(err), err.problems[0].field or None)
        body["error"]["problems"] = [str(p) for p in err.problems]
        return body
    return error_body(str(err))


def validation_body(errors: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """FastAPI's request-validation errors as one message naming the field. Pure."""
    if not errors:
        return error_body("the request is not valid")
    parts = []
    for e in errors:
        loc = [str(x) for x in e.get("loc", ()) if x not in ("body", "query", "path")]
        where = ".".join(loc)
        parts.append(f"{where}: {e.get('msg', 'invalid')}" if where else str(e.get("msg")))
    first = [str(x) for x in errors[0].get("loc", ()) if x not in ("body", "query", "path")]
    where = errors[0].get("loc", ("",))[0]
    prefix = {"body": "request body", "query": "query parameter", "path": "path"}.get(
        str(where), "request"
    )
    return error_body(f"{prefix}: " + "; ".join(parts), ".".join(first) or None)
