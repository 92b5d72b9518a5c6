"""Per-sink queues and worker threads: the monitor hands batches over and never waits on a sink.

``monitoring.monitor`` owns one SinkWorker per configured sink; a sink that is slow or down
only fills its own bounded queue (the oldest batch is dropped and reported) and its failures go
to ``on_error`` (the monitor records them as events).
"""

from __future__ import annotations

import queue
import threading
from collections.abc import Callable, Sequence

from paasport.monitoring.alerts import Alert
from paasport.monitoring.sinks import Sink

ErrorHandler = Callable[[str, str], None]  # (sink name, message)

Batch = tuple[tuple[Alert, ...], float]


class SinkWorker:
    """One daemon thread feeding one sink from a bounded queue."""

    def __init__(self, sink: Sink, on_error: ErrorHandler, maxsize: int = 100) -> None:
        self.sink = sink
        self._on_error = on_error
        self._queue: queue.Queue[Batch | None] = queue.Queue(maxsize=maxsize)
        self._idle = threading.Condition()
        self._busy = 0
        self.delivered = 0
        self.failed = 0
        self.dropped = 0
        self._thread = threading.Thread(
            target=self._run, name=f"paasport-sink-{sink.name}", daemon=True
        )
        self._thread.start()

    @property
    def name(self) -> str:
        return self.sink.name

    def submit(self, alerts: Sequence[Alert], now: float) -> None:
        """Queue a batch without blocking; when the queue is full the oldest batch is dropped."""
        if not alerts:
            return
        item: Batch = (tuple(alerts), now)
        with self._idle:
            self._busy += 1
        while True:
            try:
                self._queue.put_nowait(item)
                return
            except queue.Full:
                try:
                    self._queue.get_nowait()
                except queue.Empty:
                    continue
                self.dropped += 1
                self._done()
                self._on_error(
                    self.sink.name, f"sink {self.sink.name} is behind: dropped one queued batch"
                )

    def wait_idle(self, timeout: float) -> bool:
        """Block until every submitted batch was handled (tests and shutdown use it)."""
        with self._idle:
            return self._idle.wait_for(lambda: self._busy == 0, timeout=timeout)

    def stop(self, timeout: float = 5.0) -> None:
        try:
            self._queue.put(None, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)

    def _done(self) -> None:
        with self._idle:
            self._busy -= 1
            self._idle.notify_all()

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is None:
                return
            alerts, now = item
            try:
                self.sink.deliver(alerts, now)
                self.delivered += 1
            except Exception as err:  # a sink must never kill its worker
                self.failed += 1
                self._on_error(self.sink.name, f"sink {self.sink.name} failed: {err}")
            finally:
                self._done()
