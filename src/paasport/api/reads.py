"""What makes the API's reads cheap under many clients: one engine for the process, and
concurrent requests for the same reading sharing one computation, serialized once.

A request that arrives while the same reading is being computed waits for that computation
instead of starting its own: the answer is never older than the request's own wait, and
twenty dashboards asking at once cost one engine listing.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Hashable
from dataclasses import dataclass, field
from typing import Any

from fastapi.responses import Response

from paasport.config.system import SystemConfig
from paasport.engine.base import Engine
from paasport.errors import TemporaryError

JOIN_DEADLINE_SECONDS = 30.0  # a joined computation that takes longer is an outage


def json_bytes(data: Any) -> bytes:
    """``data`` as compact JSON (what every read answers with)."""
    return json.dumps(data, separators=(",", ":"), ensure_ascii=False).encode()


def json_response(body: bytes) -> Response:
    return Response(body, media_type="application/json")


class SharedEngine:
    """The cluster's engine for every read of this process: made on first use, closed once."""

    def __init__(self, system: SystemConfig) -> None:
        self._system = system
        self._engine: Engine | None = None
        self._lock = threading.Lock()

    def get(self) -> Engine:
        from paasport.engine.factory import engine_for

        with self._lock:
            if self._engine is None:
                self._engine = engine_for(self._system.local)
            return self._engine

    def close(self) -> None:
        with self._lock:
            engine, self._engine = self._engine, None
        if engine is not None:
            engine.close()


@dataclass
class _Flight:
    done: threading.Event = field(default_factory=threading.Event)
    value: Any = None
    error: BaseException | None = None


class Coalescer:
    """Concurrent calls with the same key share one ``compute()``."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._flights: dict[Hashable, _Flight] = {}
        self.computed = 0  # how many computations ran (tests read these two)
        self.joined = 0  # how many calls waited for another one's computation

    def run(self, key: Hashable, compute: Callable[[], Any]) -> Any:
        with self._lock:
            flight = self._flights.get(key)
            leader = flight is None
            if flight is None:
                flight = self._flights[key] = _Flight()
            else:
                self.joined += 1
        if not leader:
            if not flight.done.wait(JOIN_DEADLINE_SECONDS):
                raise TemporaryError(f"reading {key!r} took over {JOIN_DEADLINE_SECONDS:g} s")
            if flight.error is not None:
                raise flight.error
            return flight.value
        try:
            flight.value = compute()
            self.computed += 1
        except BaseException as err:
            flight.error = err
            raise
        finally:
            with self._lock:
                del self._flights[key]
            flight.done.set()
        return flight.value
