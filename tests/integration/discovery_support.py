"""Helpers for the discovery integration tests: tiny HTTP backends, a load loop, a TCP relay.

Everything listens on 127.0.0.1 on ports the OS picks; every thread stops with its helper.
"""

from __future__ import annotations

import http.client
import random
import select
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager, suppress
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


class Backend:
    """An HTTP server answering its own name on /, and /status (healthy unless told not)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.healthy = True
        self.hits = 0
        outer = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def do_GET(self) -> None:
                if self.path.startswith("/status"):
                    code, body = (200, b"ok") if outer.healthy else (503, b"sick")
                else:
                    outer.hits += 1
                    code, body = 200, outer.name.encode()
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: object) -> None:
                return

        class Server(ThreadingHTTPServer):
            def handle_error(self, request: object, client_address: object) -> None:
                return  # a proxy closing a connection early is not a test failure

        self.server = Server(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.port = self.server.server_address[1]
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()


@contextmanager
def backends(*names: str) -> Iterator[list[Backend]]:
    started = [Backend(n) for n in names]
    try:
        yield started
    finally:
        for b in started:
            b.stop()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def free_proxy_port() -> int:
    """A port in 19000-21000 (where soa-configs proxy ports live) that nobody listens on."""
    for _ in range(200):
        port = random.randint(19000, 21000)
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free port in 19000-21000")


def get(port: int, path: str = "/", timeout: float = 2.0) -> tuple[int, str]:
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=timeout)
    try:
        conn.request("GET", path)
        resp = conn.getresponse()
        return resp.status, resp.read().decode()
    finally:
        conn.close()


def wait_for(predicate: object, timeout: float = 10.0, interval: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():  # type: ignore[operator]
            return True
        time.sleep(interval)
    return False


class Load:
    """Requests in a loop through the proxy (new connection and keep-alive alternately)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.ok = 0
        self.failures: list[str] = []
        self.seen: dict[str, int] = {}
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, daemon=True)

    def _run(self) -> None:
        conn: http.client.HTTPConnection | None = None
        i = 0
        while not self._stop.is_set():
            i += 1
            try:
                if conn is None:
                    conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=5)
                conn.request("GET", "/")
                resp = conn.getresponse()
                body = resp.read().decode()
                if resp.status == 200:
                    self.ok += 1
                    self.seen[body] = self.seen.get(body, 0) + 1
                else:
                    self.failures.append(f"HTTP {resp.status}")
                if i % 2 == 0 or resp.getheader("connection", "") == "close":
                    conn.close()
                    conn = None
            except (OSError, http.client.HTTPException) as err:
                self.failures.append(repr(err))
                if conn is not None:
                    conn.close()
                conn = None
            time.sleep(0.002)
        if conn is not None:
            conn.close()

    def __enter__(self) -> Load:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self.thread.join(timeout=10)


class Relay:
    """A TCP relay 127.0.0.1:port -> target that a test can cut (closing every connection),
    freeze (forwarding nothing, closing nothing: a peer that went silent) and restore, to make a
    real server unreachable without stopping it."""

    def __init__(self, target_host: str, target_port: int) -> None:
        self.target = (target_host, target_port)
        self.port = free_port()
        self._conns: list[socket.socket] = []
        self._flowing = threading.Event()
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._thread: threading.Thread | None = None
        self.restore()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                client, _ = listener.accept()
            except OSError:
                return
            try:
                upstream = socket.create_connection(self.target, timeout=5)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while True:
                if src.fileno() < 0:  # cut while frozen
                    break
                if not self._flowing.wait(0.02):
                    continue
                readable, _, _ = select.select([src], [], [], 0.02)
                if not readable or not self._flowing.is_set():
                    continue
                data = src.recv(65536)
                if not data:
                    break
                dst.sendall(data)
        except (OSError, ValueError):  # ValueError: select on a socket cut meanwhile
            pass
        for s in (src, dst):
            with suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)

    def freeze(self) -> None:
        """Stop forwarding in both directions (new connections are accepted and held too)."""
        self._flowing.clear()

    def cut(self) -> None:
        if self._listener is not None:
            with suppress(OSError):  # shutdown wakes the blocked accept()
                self._listener.shutdown(socket.SHUT_RDWR)
            self._listener.close()
            self._listener = None
        with self._lock:
            conns, self._conns = self._conns, []
        for s in conns:
            with suppress(OSError):
                s.shutdown(socket.SHUT_RDWR)
            s.close()

    def restore(self) -> None:
        """Forward again: thaw a freeze, listen again after a cut."""
        self._flowing.set()
        if self._listener is not None:
            return
        listener = socket.socket()
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind(("127.0.0.1", self.port))
        listener.listen(16)
        self._listener = listener
        self._thread = threading.Thread(target=self._accept, args=(listener,), daemon=True)
        self._thread.start()

    def close(self) -> None:
        self.cut()


class StaticEngine:
    """An Engine stand-in listing the tasks a test set (backends are local HTTP servers)."""

    cluster = "local"

    def __init__(self) -> None:
        self.tasks: list[object] = []

    def list_app_versions(self, service: str | None = None, instance: str | None = None) -> list:  # type: ignore[type-arg]
        from paasport.types import AppVersion

        return [AppVersion("web", "main", "local", "h", "sha", "img", tuple(self.tasks))]  # type: ignore[arg-type]

    def exec_in_task(self, task_id: str, cmd: str, timeout: float) -> object:
        raise AssertionError("no cmd checks here")


def task_for(backend: Backend, grace: float = 0.0) -> object:
    from paasport.types import HealthCheck, Task

    return Task(
        f"task-{backend.name}",
        "web",
        "main",
        "local",
        "h",
        "sha",
        "running",
        port=backend.port,
        started_at=time.time(),
        healthcheck=HealthCheck(mode="http", grace_period_seconds=grace),
    )
