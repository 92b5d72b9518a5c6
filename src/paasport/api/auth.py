"""Who calls the API: bearer tokens (``platform.tokens``), ownership, and failed-auth limits.

``api.app`` asks ``Gate.identify`` for every mutation (and every read when
``api.require_token_for_reads``); ``may_change`` decides ownership from monitoring.yaml's team.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field

from paasport.api.errors import Forbidden, RateLimited, Unauthorized
from paasport.platform.tokens import TokenRecord, TokenStore, find_token

FAILED_AUTH_LIMIT = 10  # failed attempts per client address ...
FAILED_AUTH_WINDOW_SECONDS = 60.0  # ... within this window; then 429 until the oldest ages out


def bearer(header: str | None) -> str | None:
    """The token of an ``Authorization: Bearer <token>`` header (None: no header). Pure."""
    if header is None:
        return None
    scheme, _, value = header.strip().partition(" ")
    if scheme.lower() != "bearer" or not value.strip():
        raise Unauthorized("the Authorization header must be 'Bearer <token>'")
    return value.strip()


def may_change(record: TokenRecord, service: str, team: str | None) -> None:
    """Raise Forbidden unless ``record`` may change ``service`` (owned by ``team``). Pure."""
    if record.admin:
        return
    if team is None:
        raise Forbidden(
            f"{service} names no team in monitoring.yaml: only an admin token may change it "
            f"(token {record.name} is team {record.team}'s)"
        )
    if team != record.team:
        raise Forbidden(
            f"{service} belongs to team {team}; token {record.name} is team {record.team}'s"
        )


@dataclass
class FailedAuthLimiter:
    """At most ``limit`` failed authentications per client in ``window`` seconds."""

    limit: int = FAILED_AUTH_LIMIT
    window: float = FAILED_AUTH_WINDOW_SECONDS
    clock: Callable[[], float] = time.monotonic
    _failures: dict[str, deque[float]] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def check(self, client: str) -> None:
        """RateLimited when ``client`` used up its failed attempts."""
        with self._lock:
            recent = self._recent(client)
            if len(recent) >= self.limit:
                wait = recent[0] + self.window - self.clock()
                raise RateLimited(
                    f"too many failed authentications from {client}: try again in "
                    f"{max(wait, 1):.0f} s",
                    retry_after=max(wait, 1.0),
                )

    def failed(self, client: str) -> None:
        with self._lock:
            self._recent(client).append(self.clock())

    def _recent(self, client: str) -> deque[float]:
        recent = self._failures.setdefault(client, deque())
        while recent and recent[0] <= self.clock() - self.window:
            recent.popleft()
        if not recent and len(self._failures) > 10_000:  # bound the memory of many clients
            self._failures = {client: recent}
        return recent


class Gate:
    """Turns a request's Authorization header into the token record it carries."""

    def __init__(self, store: TokenStore, limiter: FailedAuthLimiter | None = None) -> None:
        self.store = store
        self.limiter = limiter or FailedAuthLimiter()

    def identify(self, header: str | None, client: str) -> TokenRecord:
        """The record of the presented token; Unauthorized (counted) or RateLimited."""
        self.limiter.check(client)
        try:
            token = bearer(header)
        except Unauthorized:
            self.limiter.failed(client)
            raise
        if token is None:
            raise Unauthorized(
                "this needs a token: send 'Authorization: Bearer <token>' "
                "(paasport token create --team TEAM makes one)"
            )
        record = find_token(self.store.load(), token)
        if record is None:
            self.limiter.failed(client)
            raise Unauthorized("unknown or revoked token")
        return record
