"""Requests failed and time to recover when dockerd restarts (SIGTERM, SIGKILL) under load.

A 3-task busybox service runs behind its proxy port (deployd + discovery agent + HAProxy) on a
private dockerd with --live-restore (tests/integration/private_dockerd.py), so the shared daemon
is never touched; ``wrk`` sends steady load through 127.0.0.1:<proxy_port> while dockerd is
stopped for DOWN seconds and started again. "recover" is the time from dockerd answering again
to paasport seeing every task again with the proxy routing to all of them.
``--shared`` restarts the bootstrap's daemon instead (by hand only: every container on the
host shares it; it must run with --live-restore, pidfile in $PAASPORT_RUN_DIR/dockerd.pid).

    .venv/bin/python bench/dockerd_restart.py [--down SECONDS] [--shared]
"""

from __future__ import annotations

import argparse
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "tests" / "integration"))

from bounce_under_load import parse_wrk, stop_wrk
from conftest import build_busybox_image
from discovery_world import World
from private_dockerd import PrivateDockerd


class SharedDockerd:
    """The bootstrap's dockerd (``scripts/bootstrap.sh``): stop by its pidfile, start it again."""

    url: str | None = None

    def __init__(self) -> None:
        run_dir = Path(os.environ.get("PAASPORT_RUN_DIR", Path(__file__).parents[1] / ".run"))
        self.pidfile = run_dir / "dockerd.pid"
        self.log = run_dir / "dockerd.log"
        info = subprocess.run(
            ["docker", "info", "--format", "{{.LiveRestoreEnabled}}"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        if info.stdout.strip() != "true":
            raise SystemExit("--shared: the running dockerd has live-restore off; not touching it")

    def stop(self, sig: signal.Signals) -> None:
        pid = int(self.pidfile.read_text().strip())
        os.kill(pid, sig)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and Path(f"/proc/{pid}").exists():
            time.sleep(0.05)
        self.pidfile.unlink(missing_ok=True)

    def start(self) -> None:
        with self.log.open("ab") as log:
            subprocess.Popen(
                ["dockerd", "--live-restore", "--pidfile", str(self.pidfile)],
                stdout=log,
                stderr=log,
                stdin=subprocess.DEVNULL,
                start_new_session=True,
            )
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            ok = subprocess.run(["docker", "info"], capture_output=True, timeout=5, check=False)
            if ok.returncode == 0:
                return
            time.sleep(0.1)
        raise RuntimeError("dockerd did not come back within 30 s")


def run(sig: signal.Signals, down: float, shared: bool) -> dict[str, object]:
    image = build_busybox_image()
    daemon: PrivateDockerd | SharedDockerd = SharedDockerd() if shared else PrivateDockerd()
    with tempfile.TemporaryDirectory(prefix="paasport-bench-") as tmp:
        world: World | None = None
        wrk: subprocess.Popen[str] | None = None
        try:
            if isinstance(daemon, PrivateDockerd):
                daemon.start()
                daemon.load_image(image)
            world = World(Path(tmp), "crossover", "proxy", docker_host=daemon.url)
            world.start()
            world.wait("3 healthy tasks behind the proxy", world.converged)
            wrk = subprocess.Popen(
                ["wrk", "-t2", "-c8", "-d600s", f"http://127.0.0.1:{world.proxy_port}/"],
                stdout=subprocess.PIPE,
                stderr=subprocess.STDOUT,
                text=True,
            )
            time.sleep(2)
            daemon.stop(sig)
            time.sleep(down)
            daemon.start()
            answered = time.monotonic()
            world.wait("paasport to converge after the restart", _converged(world), timeout=120)
            recover = time.monotonic() - answered
            time.sleep(2)
            wrk.send_signal(signal.SIGINT)
            out, _ = wrk.communicate(timeout=30)
            result: dict[str, object] = parse_wrk(out)
            result.update(signal=sig.name, down=down, recover=round(recover, 2))
            return result
        finally:
            stop_wrk(wrk)
            if world is not None:
                world.close()
            if isinstance(daemon, PrivateDockerd):
                daemon.close()


def _converged(world: World) -> object:
    def check() -> bool:
        try:
            return world.converged()
        except Exception:  # the engine is still coming back
            return False

    return check


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--down", type=float, default=15.0, help="seconds dockerd stays down (15)")
    parser.add_argument("--shared", action="store_true", help="restart the bootstrap's dockerd")
    args = parser.parse_args()
    rows = [run(sig, args.down, args.shared) for sig in (signal.SIGTERM, signal.SIGKILL)]
    print(
        f"\n{'dockerd':8} {'down s':>6} {'requests':>9} {'non-2xx':>8} {'sock err':>8} "
        f"{'failed':>7} {'recover s':>9}"
    )
    for r in rows:
        failed = int(r["non2xx"]) + int(r["socket_errors"])  # type: ignore[call-overload]
        print(
            f"{r['signal']!s:8} {r['down']!s:>6} {r['requests']!s:>9} {r['non2xx']!s:>8} "
            f"{r['socket_errors']!s:>8} {failed:>7} {r['recover']!s:>9}"
        )
    print("target: 0 failed; recover = dockerd answering -> every task seen and routed again")


if __name__ == "__main__":
    main()
