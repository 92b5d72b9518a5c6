"""The headline guarantee: 10 crossover bounces under steady load lose no request.

A 3-task busybox httpd service runs behind its proxy port (deployd + discovery agent + HAProxy,
real Docker); ``wrk`` sends steady load through 127.0.0.1:<proxy_port> while the script changes
an env var 10 times (10 crossover bounces). Printed per scenario, side by side: total requests,
non-2xx responses, socket errors. Scenarios: crossover with drain_method proxy (target 0 failed
of >= 20,000), crossover with drain_method noop, and brutal.

    .venv/bin/python bench/bounce_under_load.py [BOUNCES]
"""

from __future__ import annotations

import re
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from count_arg import count_arg

sys.path.insert(0, str(Path(__file__).resolve().parent))

from discovery_world import World

SCENARIOS = [
    ("crossover, drain_method proxy", "crossover", "proxy"),
    ("crossover, drain_method noop", "crossover", "noop"),
    ("brutal", "brutal", "noop"),
]


def stop_wrk(wrk: subprocess.Popen[str] | None) -> None:
    """Kill and reap a wrk still running (a failed run must not leave it for -d seconds)."""
    if wrk is not None and wrk.poll() is None:
        wrk.kill()
        wrk.wait(timeout=10)


def parse_wrk(text: str) -> dict[str, int]:
    def grab(pattern: str) -> int:
        m = re.search(pattern, text)
        return int(m.group(1)) if m else 0

    sock = re.search(r"Socket errors: connect (\d+), read (\d+), write (\d+), timeout (\d+)", text)
    return {
        "requests": grab(r"(\d+) requests in"),
        "non2xx": grab(r"Non-2xx or 3xx responses: (\d+)"),
        "socket_errors": sum(int(x) for x in sock.groups()) if sock else 0,
    }


def run(name: str, bounce_method: str, drain_method: str, bounces: int) -> dict[str, object]:
    with tempfile.TemporaryDirectory(prefix="paasport-bench-") as tmp:
        world = World(Path(tmp), bounce_method, drain_method)
        wrk: subprocess.Popen[str] | None = None
        try:
            world.start()
            world.wait("3 healthy tasks behind the proxy", world.converged)
            wrk = subprocess.Popen(
                ["wrk", "-t2", "-c8", "-d600s", f"http://127.0.0.1:{world.proxy_port}/"],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            time.sleep(2)
            started = time.monotonic()
            for _ in range(bounces):
                world.bounce()
            elapsed = time.monotonic() - started
            time.sleep(2)
            wrk.send_signal(signal.SIGINT)
            out, _ = wrk.communicate(timeout=30)
            result: dict[str, object] = parse_wrk(out)
            result.update(
                name=name, bounces=bounces, seconds=round(elapsed, 1), reloads=world.proxy.reloads
            )
            return result
        finally:
            stop_wrk(wrk)
            world.close()


def main(bounces: int) -> None:
    rows = [run(name, b, d, bounces) for name, b, d in SCENARIOS]
    print(
        f"\n{'scenario':34} {'bounces':>7} {'requests':>9} {'non-2xx':>8} {'sock err':>8} "
        f"{'failed':>7} {'secs':>6} {'reloads':>7}"
    )
    for r in rows:
        failed = int(r["non2xx"]) + int(r["socket_errors"])  # type: ignore[call-overload]
        print(
            f"{r['name']!s:34} {r['bounces']!s:>7} {r['requests']!s:>9} {r['non2xx']!s:>8} "
            f"{r['socket_errors']!s:>8} {failed:>7} {r['seconds']!s:>6} {r['reloads']!s:>7}"
        )
    print("target: crossover with drain_method proxy: 0 failed of >= 20,000 requests")


if __name__ == "__main__":
    main(count_arg(__doc__, "bounces", 10, "consecutive bounces per scenario"))
