"""A service with a CGI endpoint that answers 200 (good) or 500 (bad) and a version that
crash-loops, for the automatic rollback, canary and ramp tests and bench/rollback.py: commits
of the e2e world's repo cooked into images, and clients that count the answers they get through
the proxy.
"""

from __future__ import annotations

import http.client
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor

from e2e_world import E2E, SERVICE, git

GOOD_CGI = '#!/bin/sh\necho "Content-Type: text/plain"\necho ""\necho good\n'
BAD_CGI = (
    '#!/bin/sh\necho "Status: 500 Internal Server Error"\necho "Content-Type: text/plain"\n'
    'echo ""\necho broken\n'
)
DOCKERFILE = (
    "FROM scratch\n"
    "COPY busybox /bin/busybox\n"
    'RUN ["/bin/busybox", "--install", "-s", "/bin"]\n'
    "ENV PATH=/bin\n"
    "{www}"
    'CMD ["httpd", "-f", "-p", "8888", "-h", "/www"]\n'
)


def commit_version(
    world: E2E, name: str, *, cgi: str = GOOD_CGI, www: str = "COPY www /www\n"
) -> str:
    repo = world.repo
    (repo / "www" / "cgi-bin").mkdir(exist_ok=True)
    app = repo / "www" / "cgi-bin" / "app"
    app.write_text(cgi)
    app.chmod(0o755)
    (repo / "Dockerfile").write_text(DOCKERFILE.format(www=www))
    (repo / "www" / "version").write_text(f"{name}\n")
    git(repo, "add", "-A")
    git(repo, "-c", "user.name=e2e", "-c", "user.email=e2e@localhost", "commit", "-qm", name)
    sha = git(repo, "rev-parse", "HEAD")
    world.run("cook-image", "-s", SERVICE, "-c", sha)
    return sha


class Traffic:
    """GETs of /cgi-bin/app through the proxy in a thread: answers by status, and when each
    failed (a non-200 answer or no answer)."""

    def __init__(self, port: int) -> None:
        self.port = port
        self.codes: dict[int, int] = {}
        self.failures = 0
        self.failed_at: list[float] = []  # time.monotonic() of each failed request
        self.stop = threading.Event()
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        while not self.stop.is_set():
            try:
                conn = http.client.HTTPConnection("127.0.0.1", self.port, timeout=2)
                conn.request("GET", "/cgi-bin/app")
                status = conn.getresponse().status
                conn.close()
                self.codes[status] = self.codes.get(status, 0) + 1
                if status != 200:
                    self.failed_at.append(time.monotonic())
            except OSError:
                self.failures += 1
                self.failed_at.append(time.monotonic())
            time.sleep(0.01)

    def __enter__(self) -> Traffic:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop.set()
        self.thread.join(10)


def ask(port: int, path: str = "/cgi-bin/app") -> str:
    """One GET through the proxy: the body of a 200, else the status."""
    conn = http.client.HTTPConnection("127.0.0.1", port, timeout=5)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.read().decode().strip() if response.status == 200 else str(response.status)
    finally:
        conn.close()


def split(port: int, n: int) -> Counter[str]:
    """The answers of ``n`` GETs of /cgi-bin/app through the proxy, 4 at a time."""
    with ThreadPoolExecutor(4) as pool:
        return Counter(pool.map(lambda _: ask(port), range(n)))
