"""``/v1/events/stream``: the event log as Server-Sent Events.

A thread follows the event log (``view.events.follow_events``) into a bounded queue; the
response drains it without holding a worker thread, sends a comment every
``HEARTBEAT_SECONDS``, and ends when the client goes away or the server stops.
"""

from __future__ import annotations

import asyncio
import json
import queue
import threading
import time
from collections.abc import AsyncIterator, Sequence

from fastapi import Request
from fastapi.responses import StreamingResponse

from paasport.config.system import SystemConfig
from paasport.monitoring.events import Event
from paasport.view.events import follow_events

HEARTBEAT_SECONDS = 15.0
POLL_SECONDS = 0.1
QUEUE_SIZE = 1000


def sse_frame(event: Event) -> str:
    """One event as an SSE frame (``event:`` its kind, ``data:`` its JSON). Pure."""
    data = json.dumps(event.to_json(), sort_keys=True, separators=(",", ":"))
    return f"event: {event.kind}\ndata: {data}\n\n"


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
    done = threading.Event()
    found: queue.Queue[Event] = queue.Queue(QUEUE_SIZE)

    def pump() -> None:
        backlog = 1000 if since is not None else 0  # since: at most the newest 1,000 first
        try:
            for event in follow_events(
                system, done, service=service, instance=instance, level=level,
                since=since, kinds=kinds, limit=backlog,
            ):  # fmt: skip
                while not done.is_set():
                    try:
                        found.put(event, timeout=0.5)
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
            yield ": paasport events\n\n"
            while not stopping.is_set():
                try:
                    event = found.get_nowait()
                except queue.Empty:
                    if done.is_set() or await request.is_disconnected():
                        return
                    if time.monotonic() - quiet_since >= HEARTBEAT_SECONDS:
                        quiet_since = time.monotonic()
                        yield ": keepalive\n\n"
                    await asyncio.sleep(POLL_SECONDS)
                    continue
                quiet_since = time.monotonic()
                yield sse_frame(event)
        finally:
            done.set()

    headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
    return StreamingResponse(frames(), media_type="text/event-stream", headers=headers)
