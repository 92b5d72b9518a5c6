"""deployd's work queue: instances due for a step, earliest first, never two workers on one.

``reconcile.deployd.Deployd`` puts instances here (watcher changes, sweeps, retries) and its
worker threads take them with ``get`` and hand them back with ``done``.
"""

from __future__ import annotations

import heapq
import threading
import time
from collections.abc import Callable

Key = tuple[str, str]  # (service, instance)


class WorkQueue:
    """Instances due for a step, earliest first; an instance is never handed to two workers.

    An instance put while a worker holds it is parked and requeued when that worker is done.
    ``monotonic`` is the clock due times are measured on (tests pass their own).
    """

    def __init__(self, monotonic: Callable[[], float] = time.monotonic) -> None:
        self._now = monotonic
        self._cond = threading.Condition()
        self._heap: list[tuple[float, int, Key]] = []
        self._due: dict[Key, float] = {}
        self._busy: set[Key] = set()
        self._parked: dict[Key, float] = {}
        self._seq = 0

    def put(self, key: Key, delay: float = 0.0) -> None:
        due = self._now() + delay
        with self._cond:
            if key in self._busy:
                self._parked[key] = min(due, self._parked.get(key, due))
                return
            self._push(key, due)

    def _push(self, key: Key, due: float) -> None:
        current = self._due.get(key)
        if current is not None and current <= due:
            return
        self._due[key] = due
        self._seq += 1
        heapq.heappush(self._heap, (due, self._seq, key))
        self._cond.notify()

    def get(self, stop: threading.Event, timeout: float = 0.5) -> Key | None:
        """The next due instance (now marked busy), or None after ``timeout``/on stop."""
        deadline = self._now() + timeout
        with self._cond:
            while not stop.is_set():
                now = self._now()
                while self._heap:
                    due, _, key = self._heap[0]
                    if self._due.get(key) != due:
                        heapq.heappop(self._heap)  # superseded by an earlier put
                        continue
                    break
                if self._heap and self._heap[0][0] <= now:
                    _, _, key = heapq.heappop(self._heap)
                    del self._due[key]
                    self._busy.add(key)
                    return key
                wait = deadline - now
                if self._heap:
                    wait = min(wait, self._heap[0][0] - now)
                if wait <= 0 and now >= deadline:
                    return None
                self._cond.wait(max(wait, 0.001))
        return None

    def done(self, key: Key, again_in: float | None) -> None:
        with self._cond:
            self._busy.discard(key)
            due = self._parked.pop(key, None)
            if again_in is not None:
                want = self._now() + again_in
                due = want if due is None else min(due, want)
            if due is not None:
                self._push(key, due)

    def pending(self) -> int:
        with self._cond:
            return len(self._due) + len(self._busy) + len(self._parked)
