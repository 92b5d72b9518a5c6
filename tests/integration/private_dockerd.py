"""A private dockerd (own data/exec root, socket, pidfile and bridge) that a test may stop.

tests/integration/test_dockerd_restart.py and bench/dockerd_restart.py use it: the shared daemon
serves every helper and test on this machine, so only this one is ever restarted. Its bridge
takes a free 10.247.X.0/24 with ``--iptables=false --ip-masq=false`` (never ``--bridge=none``,
which deletes docker0); ``close`` removes everything it made, each step bounded.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import tempfile
import time
import uuid
from pathlib import Path

START_SECONDS = 30.0
STOP_SECONDS = 20.0
CLI_SECONDS = 30.0


def _run(*argv: str, timeout: float = CLI_SECONDS) -> subprocess.CompletedProcess[str]:
    return subprocess.run(argv, capture_output=True, text=True, timeout=timeout, check=False)


def _free_subnet() -> str:
    """A 10.247.X.0/24 that no route or address of this host uses."""
    taken = _run("ip", "-4", "route").stdout + _run("ip", "-4", "addr").stdout
    for _ in range(200):
        prefix = f"10.247.{random.randint(1, 254)}."
        if prefix not in taken:
            return prefix
    raise RuntimeError("no free 10.247.X.0/24 for a private Docker bridge")


class PrivateDockerd:
    """``start`` / ``stop(sig)`` / ``start`` again / ``close``; ``url`` is its socket."""

    def __init__(self, live_restore: bool = True) -> None:
        self.live_restore = live_restore
        self.root = Path(tempfile.mkdtemp(prefix="ppd-", dir="/tmp"))
        self.bridge = f"ppd{uuid.uuid4().hex[:8]}"
        self.prefix = _free_subnet()
        self.socket = self.root / "docker.sock"
        self.url = f"unix://{self.socket}"
        self.pidfile = self.root / "dockerd.pid"
        self.log = self.root / "dockerd.log"
        self.proc: subprocess.Popen[bytes] | None = None
        self._bridge_made = False

    # -- the daemon ---------------------------------------------------------------------------

    def _make_bridge(self) -> None:
        if self._bridge_made:
            return
        for argv in (
            ("ip", "link", "add", self.bridge, "type", "bridge"),
            ("ip", "addr", "add", f"{self.prefix}1/24", "dev", self.bridge),
            ("ip", "link", "set", self.bridge, "up"),
        ):
            out = _run(*argv)
            if out.returncode != 0:
                raise RuntimeError(f"{' '.join(argv)}: {out.stderr.strip()}")
            self._bridge_made = True

    def start(self) -> None:
        """Start dockerd and wait (bounded) until it answers."""
        self._make_bridge()
        if self.pidfile.exists():  # left by a SIGKILLed daemon: a new one refuses to start
            self.pidfile.unlink()
        argv = [
            "dockerd",
            f"--data-root={self.root / 'data'}",
            f"--exec-root={self.root / 'exec'}",
            f"--host={self.url}",
            f"--pidfile={self.pidfile}",
            f"--bridge={self.bridge}",
            "--iptables=false",
            "--ip-masq=false",
            "--userland-proxy=true",
        ]
        if self.live_restore:
            argv.append("--live-restore")
        with self.log.open("ab") as log:
            self.proc = subprocess.Popen(
                argv, stdout=log, stderr=log, stdin=subprocess.DEVNULL, start_new_session=True
            )
        deadline = time.monotonic() + START_SECONDS
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                break
            if self.socket.exists() and self.cli("info", timeout=5).returncode == 0:
                return
            time.sleep(0.1)
        tail = self.log.read_text(errors="replace")[-2000:]
        raise RuntimeError(f"private dockerd did not start within {START_SECONDS:g}s:\n{tail}")

    def stop(self, sig: signal.Signals = signal.SIGTERM) -> None:
        """Send ``sig`` and wait (bounded) for dockerd to exit; SIGKILL if it outlives that."""
        proc = self.proc
        if proc is None or proc.poll() is not None:
            return
        proc.send_signal(sig)
        try:
            proc.wait(timeout=STOP_SECONDS)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=STOP_SECONDS)
        self.proc = None

    def cli(self, *args: str, timeout: float = CLI_SECONDS) -> subprocess.CompletedProcess[str]:
        """``docker -H <socket> ARGS``."""
        return _run("docker", "-H", self.url, *args, timeout=timeout)

    def load_image(self, image: str) -> None:
        """``docker save`` from the shared daemon | ``docker load`` into this one (bounded)."""
        with tempfile.TemporaryFile() as tar:
            saved = subprocess.run(
                ["docker", "save", image], stdout=tar, stderr=subprocess.PIPE, timeout=60
            )
            if saved.returncode != 0:
                raise RuntimeError(f"docker save {image}: {saved.stderr.decode()}")
            tar.seek(0)
            loaded = subprocess.run(
                ["docker", "-H", self.url, "load", "-q"],
                stdin=tar,
                capture_output=True,
                timeout=60,
            )
            if loaded.returncode != 0:
                raise RuntimeError(f"docker load {image}: {loaded.stderr.decode()}")

    # -- cleanup ------------------------------------------------------------------------------

    def _leftover_pids(self) -> list[int]:
        """containerd shims of THIS daemon (their command line names its exec root)."""
        marker = str(self.root).encode()
        pids = []
        for entry in Path("/proc").iterdir():
            if not entry.name.isdigit():
                continue
            try:
                if marker in (entry / "cmdline").read_bytes():
                    pids.append(int(entry.name))
            except OSError:
                continue
        return [p for p in pids if p != os.getpid()]

    def close(self) -> None:
        """Remove its containers, stop it, kill its leftovers, unmount, delete bridge and files."""
        try:
            if self.proc is not None and self.proc.poll() is None:
                ids = self.cli("ps", "-aq", timeout=10).stdout.split()
                if ids:
                    self.cli("rm", "-f", *ids, timeout=30)
        except subprocess.TimeoutExpired:
            pass
        self.stop(signal.SIGTERM)
        for pid in self._leftover_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        mounts = [
            line.split()[1]
            for line in Path("/proc/mounts").read_text().splitlines()
            if line.split()[1].startswith(str(self.root))
        ]
        for mount in sorted(mounts, key=len, reverse=True):
            _run("umount", "-l", mount, timeout=10)
        if self._bridge_made:
            _run("ip", "link", "del", self.bridge, timeout=10)
        shutil.rmtree(self.root, ignore_errors=True)
