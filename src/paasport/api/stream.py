"""Server-Sent Events: ``/v1/events/stream`` (the event log) and
``/v1/services/{service}/logs/stream`` (the tasks' log lines).

A thread follows the source (``view.events.follow_events``, the engine's ``logs(follow=True)``)
into a bounded queue; the response drains it without holding a worker thread, sends a comment
every ``HEARTBEAT_SECONDS``, and ends when the client goes away or the server stops; then the
source is told to stop (both return within about a second, however quiet).
"""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator, Sequence
from typing import TypeVar

from fastapi import Request
from fastapi.responses import StreamingResponse

from paasport.config.system import SystemConfig
from paasport.engine.base import Engine, LogLine
from paasport.monitoring.events import Event
from paasport.view.events import follow_events
from paasport.view.logs import log_json

HEARTBEAT_SECONDS = 15.0
POLL_SECONDS = 0.1
QUEUE_SIZE = 1000
LOG_EVENT = "log"  # the SSE event name of a log line

T = TypeVar("T")


def sse_frame(event: Event) -> str:
    """One event as an SSE frame (``event:`` its kind, ``data:`` its JSON). Pure."""
    data = json.dumps(event.to_json(), sort_keys=True, separators=(",", ":"))
    return f"event: {event.kind}\ndata: {data}\n\n"


def log_frame(line: LogLine) -> str:
    """One log line as an SSE frame (``event: log``, ``data:`` the ``logs --json`` object)."""
    data = json.dumps(log_json(line), sort_keys=True, separators=(",", ":"))
    return f"event: {LOG_EVENT}\ndata: {data}\n\n"


def sse_response(
    request: Request,
    stopping: threading.Event,
    follow: Callable[[threading.Event], Iterator[T]],
    frame: Callable[[T], str],
    hello: str,
) -> StreamingResponse:
    """Stream ``follow(done)``'s items as ``frame``s; ``done`` is set when the client goes,
    the server stops or the source ends."""
    done = threading.Event()
    found: queue.Queue[T] = queue.Queue(QUEUE_SIZE)

    def pump() -> None:
        try:
            for item in follow(done):
                while not done.is_set():
                    try:
                        found.put(item, timeout=0.5)
                        break
                    except queue.Full:
                        continue
                if done.is_set() or stopping.is_set():
                    return
        finally:
            done.set()

    async def frames() -> AsyncIterator[str]:
        thread = threading.Thread(target=pump, name="sse", daemon=True)
        thread.start()
        quiet_since = time.monotonic()
        try:
            yield f": {hello}\n\n"
            while not stopping.is_set():
                try:
                    item = found.get_nowait()
                except queue.Empty:
                    if done.is_set() or await request.is_disconnected():
                        return
                    if time.monotonic() - quiet_since >= HEARTBEAT_SECONDS:
                        quiet_since = time.monotonic()
                        yield ": keepalive\n\n"
                    await asyncio.sleep(POLL_SECONDS)
                    continue
                quiet_since = time.monotonic()
                yield frame(item)
        finally:
            done.set()

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(frames(), media_type="text/event-stream", headers=headers)


def event_stream(
    system: SystemConfig,
    request: Request,
    stopping: threading.Event,
    *,
    service: str | None,
    instance: str | None,
    level: str | None,
    since: float | None,
    kinds: Sequence[str] | None,
) -> StreamingResponse:
    """The matching events since ``since`` (at most the newest 1,000; none without it), then
    each new one."""
    backlog = 1000 if since is not None else 0

    def follow(done: threading.Event) -> Iterator[Event]:
        return follow_events(
            system, done, service=service, instance=instance, level=level,
            since=since, kinds=kinds, limit=backlog,
        )  # fmt: skip

    return sse_response(request, stopping, follow, sse_frame, "paasport events")


def log_stream(
    engine: Engine,
    request: Request,
    stopping: threading.Event,
    *,
    service: str,
    instance: str | None,
    tail: int,
) -> StreamingResponse:
    """The newest ``tail`` lines of every task (0: none), then each new line, new tasks'
    included."""

    def follow(done: threading.Event) -> Iterator[LogLine]:
        return engine.logs(service, instance, follow=True, tail=tail, stop=done)

    return sse_response(request, stopping, follow, log_frame, "paasport logs")
