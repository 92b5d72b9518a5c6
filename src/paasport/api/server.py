"""Serving the API: uvicorn in a thread, on a socket bound before it starts.

``paasport api`` runs it until a signal, ``paasport up`` beside the reconciler; binding first
turns a taken port into one clear error (and lets tests ask for port 0).
"""

from __future__ import annotations

import logging
import socket
import threading
from dataclasses import dataclass, field

from fastapi import FastAPI

from paasport.errors import PermanentError
from paasport.monitoring.metrics import parse_listen

log = logging.getLogger("paasport.api")

START_DEADLINE_SECONDS = 10.0
STOP_DEADLINE_SECONDS = 5.0


def bind(listen: str) -> socket.socket:
    """A listening TCP socket on ``host:port`` (port 0: a free one)."""
    host, port = parse_listen(listen)
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host.strip("[]"), port))
        sock.listen(128)
    except OSError as err:
        sock.close()
        raise PermanentError(
            f"cannot serve the API on {host}:{port}: {err.strerror or err} (api.listen in "
            "paasport.yaml, or --listen)"
        ) from None
    sock.set_inheritable(True)
    return sock


@dataclass
class ApiServer:
    """A running API; ``close`` stops it (open event streams end with ``stopping``)."""

    app: FastAPI
    sock: socket.socket
    stopping: threading.Event
    _server: object = None
    _thread: threading.Thread | None = None
    _failed: list[BaseException] = field(default_factory=list)

    @property
    def url(self) -> str:
        host, port = self.sock.getsockname()[:2]
        return f"http://{'[' + host + ']' if ':' in host else host}:{port}"

    def start(self) -> ApiServer:
        import uvicorn

        config = uvicorn.Config(
            self.app,
            log_level="warning",
            access_log=False,
            lifespan="off",
            timeout_graceful_shutdown=2,
            timeout_keep_alive=5,
        )
        server = uvicorn.Server(config)
        self._server = server

        def run() -> None:
            try:
                server.run(sockets=[self.sock])
            except BaseException as err:  # SystemExit from uvicorn's startup included
                self._failed.append(err)

        self._thread = threading.Thread(target=run, name="api", daemon=True)
        self._thread.start()
        ready = threading.Event()
        for _ in range(int(START_DEADLINE_SECONDS / 0.05)):
            if server.started or not self._thread.is_alive():
                break
            ready.wait(0.05)
        if not server.started:
            self.close()
            why = self._failed[0] if self._failed else "it did not start in time"
            raise PermanentError(f"the API did not start on {self.url}: {why}")
        log.info("API on %s", self.url)
        return self

    def wait(self, stop: threading.Event) -> None:
        """Until ``stop`` is set or the server ends by itself."""
        while not stop.is_set() and self._thread is not None and self._thread.is_alive():
            stop.wait(0.5)

    def close(self) -> None:
        self.stopping.set()
        server = self._server
        if server is not None:
            server.should_exit = True  # type: ignore[attr-defined]
        if self._thread is not None:
            self._thread.join(STOP_DEADLINE_SECONDS)
            if self._thread.is_alive() and server is not None:
                server.force_exit = True  # type: ignore[attr-defined]
                self._thread.join(STOP_DEADLINE_SECONDS)
        self.sock.close()
        close = getattr(self.app.state, "close", None)
        if callable(close):
            close()  # the app's engine


def serve(app: FastAPI, listen: str, stopping: threading.Event) -> ApiServer:
    """``app`` served on ``listen`` in a thread, once it answers."""
    return ApiServer(app, bind(listen), stopping).start()
