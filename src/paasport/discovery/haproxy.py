"""The HAProxy process of one host: start (master-worker), runtime API, hitless reload, stats.

The agent calls ``HAProxyProcess.apply(namespaces, backends)`` every pass; it asks the pure
``haproxy_config.plan_proxy`` what to do, then sends runtime commands or checks (``haproxy -c``)
and reloads a new config through the master socket. A rejected render never replaces the live one.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

from paasport.config.state_files import private_dir, private_file
from paasport.discovery.haproxy_config import (
    MIN_SLOTS,
    ProxyPaths,
    ProxyState,
    check_problems,
    drain_commands,
    fingerprint_of,
    listener_fingerprint,
    plan_proxy,
    render_config,
    state_from_servers,
)
from paasport.discovery.haproxy_stats import (
    ServerStat,
    current_worker_of,
    filter_server_state,
    parse_servers_state,
    parse_show_stat,
    servers_by_backend,
)
from paasport.discovery.proxy_lock import PortLocks, ProxyConflict, default_lock_dir
from paasport.discovery.registry import Backend
from paasport.errors import PermanentError, TemporaryError
from paasport.types import Namespace

log = logging.getLogger(__name__)

__all__ = ["ApplyResult", "ConfigRejected", "HAProxyProcess", "ProxyConflict", "ProxyUnavailable"]
PROBE_TIMEOUT = 1.0  # a worker that takes longer to answer one runtime command is not serving
STATE_SAVE_EVERY = 1.0  # seconds between dumps of the live server state (for a restart)
SLOW_PROBES_BEFORE_RESTART = 2  # a live master whose worker times out this many passes in a row


class ProxyUnavailable(TemporaryError):
    """HAProxy's sockets did not answer."""


class ConfigRejected(PermanentError):
    """``haproxy -c`` refused a rendered config; the live one stays."""


@dataclass(frozen=True)
class ApplyResult:
    reloaded: bool
    started: bool
    commands: int


def runtime_command(path: Path | str, command: str, timeout: float = 2.0) -> str:
    """Send one line to an HAProxy unix socket (admin or master) and return the whole answer."""
    deadline = time.monotonic() + timeout  # one deadline for the whole exchange, not per recv
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            sock.sendall(command.encode() + b"\n")
            sock.shutdown(socket.SHUT_WR)
            chunks = []
            while True:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise TimeoutError(f"no complete answer within {timeout:g}s")
                sock.settimeout(left)
                data = sock.recv(65536)
                if not data:
                    break
                chunks.append(data)
    except OSError as err:
        raise ProxyUnavailable(f"haproxy socket {path}: {err}") from err
    return b"".join(chunks).decode(errors="replace")


def read_stats(admin_socket: Path | str) -> tuple[ServerStat, ...]:
    """``show stat`` of a running HAProxy, parsed (used by mesh-status and the agent)."""
    return parse_show_stat(runtime_command(admin_socket, "show stat"))


class HAProxyProcess:
    """One HAProxy (master-worker) with its files under ``workdir``; adopts a running one."""

    def __init__(
        self,
        workdir: Path,
        binary: str = "haproxy",
        binds: Sequence[str] = ("127.0.0.1",),
        min_slots: int = MIN_SLOTS,
        lock_dir: Path | None = None,
    ) -> None:
        self.workdir = Path(workdir)
        self.binary = binary
        self.binds = tuple(binds)
        self.min_slots = min_slots
        self.config_file = self.workdir / "haproxy.cfg"
        self.candidate_file = self.workdir / "haproxy.cfg.new"
        self.admin_socket = self.workdir / "admin.sock"
        self.master_socket = self.workdir / "master.sock"
        self.state_file = self.workdir / "server-state"
        self.pid_file = self.workdir / "haproxy.pid"
        self.log_file = self.workdir / "haproxy.log"
        self.paths = ProxyPaths(str(self.admin_socket), str(self.state_file))
        self.state: ProxyState | None = None
        self.reloads = 0
        self.restarts = 0
        self.locks = PortLocks(lock_dir or default_lock_dir(), self.workdir)
        self._saved_at = float("-inf")
        self._slow_probes = 0

    # -- process -------------------------------------------------------------------------
    def running(self) -> bool:
        try:
            return "master" in runtime_command(self.master_socket, "show proc", timeout=1.0)
        except ProxyUnavailable:
            return False

    def master_pid(self) -> int | None:
        try:
            return int(self.pid_file.read_text().split()[0])
        except (OSError, ValueError, IndexError):
            return None

    def master_alive(self) -> bool:
        """Whether the master of the pid file lives (no socket call: cheap enough to poll)."""
        pid = self.master_pid()
        return pid is not None and _alive(pid)

    def worker_pid(self) -> int | None:
        try:
            info = runtime_command(self.admin_socket, "show info", timeout=1.0)
        except ProxyUnavailable:
            return None
        for line in info.splitlines():
            if line.startswith("Pid:"):
                return int(line.split(":", 1)[1])
        return None

    def current_worker(self) -> int | None:
        """The worker the master names as current (``show proc``), or None. The master's
        word, not the admin socket's: a slow admin answer must not hide the old worker."""
        try:
            return current_worker_of(runtime_command(self.master_socket, "show proc", 2.0))
        except ProxyUnavailable:
            return None

    def _wait_worker(self, not_pid: int | None, timeout: float = 10.0) -> int:
        """The new worker once it answers on the admin socket (never ``not_pid``)."""
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pid = self.worker_pid()
            if pid is not None and pid != not_pid and pid == self.current_worker():
                return pid
            time.sleep(0.02)
        raise ProxyUnavailable(
            f"haproxy in {self.workdir} did not answer on {self.admin_socket}; see {self.log_file}"
        )

    def check(self, config_file: Path) -> None:
        """``haproxy -c -f``: raises ConfigRejected with HAProxy's own words."""
        try:
            out = subprocess.run(
                [self.binary, "-c", "-q", "-f", str(config_file)],
                capture_output=True,
                text=True,
                timeout=30,
                check=False,
            )
        except (OSError, subprocess.SubprocessError) as err:
            raise ConfigRejected(f"cannot run {self.binary} -c: {err}") from err
        if out.returncode != 0:
            alerts = [ln for ln in (out.stderr + out.stdout).splitlines() if "ALERT" in ln]
            detail = "; ".join(alerts[:3]) or out.stderr.strip()[-500:]
            raise ConfigRejected(f"haproxy rejected {config_file}: {detail}")

    def _write_candidate(self, state: ProxyState) -> None:
        """Render and check ``state`` into a temp file of this process only (two writers can
        never swap each other's half-written files; mkstemp makes them 0600); ``_install``
        renames it into place."""
        private_dir(self.workdir)
        fd, name = tempfile.mkstemp(prefix="haproxy.cfg.", suffix=".new", dir=self.workdir)
        with os.fdopen(fd, "w") as f:
            f.write(render_config(state, self.paths))
        self.candidate_file = Path(name)
        try:
            self.check(self.candidate_file)
        except ConfigRejected:
            self.candidate_file.unlink(missing_ok=True)
            raise

    def _install(self) -> None:
        os.replace(self.candidate_file, self.config_file)

    def _write_state_file(self, text: str) -> None:
        """Atomically, through a temp name of this process (HAProxy reads it at start/reload)."""
        fd, name = tempfile.mkstemp(prefix="server-state.", suffix=".new", dir=self.workdir)
        with os.fdopen(fd, "w") as f:
            f.write(text)
        os.replace(name, self.state_file)

    def _claim(self, state: ProxyState) -> None:
        self.claim(state.listeners)

    def claim(self, namespaces: Sequence[Namespace]) -> None:
        """Hold the host-wide lock of every proxy port of ``namespaces``; ProxyConflict names
        the agent or HAProxy that serves one of them already (``paasport agent`` asks first)."""
        self.locks.hold([ns.proxy_port for ns in namespaces if ns.proxy_port], _proxy_of)

    def _start(self, state: ProxyState) -> None:
        """Start a daemonised master (``-D``): it outlives the agent, so an agent restart or
        crash never takes the listeners down."""
        try:  # the state the probes saved, for the slots the new layout keeps
            saved = self.state_file.read_text()
        except OSError:
            saved = "1\n"
        self._write_state_file(filter_server_state(saved, state))
        self._install()
        self._launch()

    def _launch(self) -> None:
        argv = [
            self.binary,
            "-W",
            "-D",
            "-S",
            f"{self.master_socket},mode,600",
            "-f",
            str(self.config_file),
            "-p",
            str(self.pid_file),
        ]
        try:
            out = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
        except (OSError, subprocess.SubprocessError) as err:
            raise ProxyUnavailable(f"cannot start {self.binary}: {err}") from err
        with open(private_file(self.log_file), "a") as logf:
            logf.write(out.stdout + out.stderr)
        if out.returncode != 0:
            alerts = [ln for ln in out.stderr.splitlines() if "ALERT" in ln]
            detail = "; ".join(alerts[:3]) or out.stderr.strip()[-500:]
            raise ProxyUnavailable(f"haproxy did not start: {detail}")
        self._wait_worker(None)
        deadline = time.monotonic() + 10
        while not self.running():  # the master socket answers a moment after the worker's
            if time.monotonic() > deadline:
                raise ProxyUnavailable(f"haproxy master socket {self.master_socket} is silent")
            time.sleep(0.02)

    def _reload(self, state: ProxyState) -> None:
        old_worker = self.current_worker()
        if old_worker is None:  # without it the old worker could pass for the new one
            raise ProxyUnavailable(f"haproxy master socket {self.master_socket} is silent")
        try:
            saved = runtime_command(self.admin_socket, "show servers state")
        except ProxyUnavailable:
            saved = "1\n"
        self._write_state_file(filter_server_state(saved, state))
        self._install()
        answer = runtime_command(self.master_socket, "reload")
        if answer.strip() and "fail" in answer.lower():
            raise ProxyUnavailable(f"haproxy reload failed: {answer.strip()}")
        self._wait_worker(old_worker)
        self.reloads += 1

    def stop(self) -> None:
        """Stop the HAProxy of this workdir (master pid from its own pid file) and wait; any
        process still running this workdir's config after that is killed."""
        pid = self.master_pid()
        self.state = None
        self.locks.release()
        if pid is not None and _alive(pid):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGTERM)
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline and _alive(pid):
                time.sleep(0.02)
        self._kill_all(timeout=5.0)

    def _kill_all(self, timeout: float) -> None:
        """SIGKILL every process running this workdir's config (master, workers, old workers)."""
        pids = _pids_running(self.binary, self.config_file)
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline and any(_alive(pid) for pid in pids):
            time.sleep(0.01)

    # -- supervision ---------------------------------------------------------------------
    def problem(self) -> str | None:
        """Why the HAProxy this object runs is not serving (dead master, silent worker), or
        None. Every healthy probe also saves the live server state for a restart."""
        pid = self.master_pid()
        if pid is None or not _alive(pid):
            return f"master (pid {pid}) is gone"
        try:
            saved = runtime_command(self.admin_socket, "show servers state", PROBE_TIMEOUT)
        except ProxyUnavailable as err:
            # no listener on the socket: the worker is gone. A slow answer on a busy host gets
            # a second chance: a needless restart costs the requests in flight.
            self._slow_probes += 1
            gone = isinstance(err.__cause__, (ConnectionRefusedError, FileNotFoundError))
            if gone or self._slow_probes >= SLOW_PROBES_BEFORE_RESTART:
                return f"worker does not answer: {err}"
            log.warning("haproxy in %s was slow to answer (%s); probing again", self.workdir, err)
            return None
        self._slow_probes = 0
        now = time.monotonic()
        if self.state is not None and now - self._saved_at >= STATE_SAVE_EVERY:
            self._saved_at = now
            with contextlib.suppress(OSError):
                self._write_state_file(filter_server_state(saved, self.state))
        return None

    def supervise(self) -> str | None:
        """Restart a dead or silent HAProxy from the last config it was given, with the saved
        server state; returns what was wrong and what was done (for an event), or None when
        it serves (or was never started here: ``apply`` starts or adopts it). Raises
        ProxyUnavailable when the restart fails (the next pass tries again)."""
        if self.state is None:
            return None
        problem = self.problem()
        if problem is None:
            return None
        started = time.monotonic()
        self._kill_all(timeout=2.0)
        try:  # the live routing, which runtime commands moved past the config file on disk
            self._write_candidate(self.state)
            self._install()
        except (ConfigRejected, OSError) as err:
            log.warning("haproxy restart: rendering failed (%s); using %s", err, self.config_file)
        self._launch()
        self._slow_probes = 0
        self.send(drain_commands(self.state))
        self.restarts += 1
        return (
            f"HAProxy in {self.workdir}: {problem}; restarted it with the last config and"
            f" saved server state in {time.monotonic() - started:.2f}s"
            f" (worker pid {self.worker_pid()})"
        )

    # -- changes -------------------------------------------------------------------------
    def _adopt(self, namespaces: Sequence[Namespace], backends: Sequence[Backend]) -> None:
        """Take over an HAProxy left running (agent restart): rebuild the slot map from it."""
        listeners = tuple(
            sorted((n for n in namespaces if n.proxy_port), key=lambda n: n.full_name)
        )
        try:
            live_fp = fingerprint_of(self.config_file.read_text())
        except OSError:
            live_fp = None
        if live_fp != listener_fingerprint(listeners, self.binds):
            self.state = ProxyState((), (), {})  # listeners differ: the next plan reloads
            return
        rows = parse_servers_state(runtime_command(self.admin_socket, "show servers state"))
        self.state = state_from_servers(listeners, self.binds, servers_by_backend(rows), backends)

    def send(self, commands: Sequence[str]) -> None:
        """Runtime commands, batched; an error answer raises (the caller re-adopts next pass)."""
        for i in range(0, len(commands), 20):
            batch = commands[i : i + 20]
            answer = runtime_command(self.admin_socket, ";".join(batch))
            bad = [ln for ln in answer.splitlines() if _is_error(ln)]
            if bad:
                raise ProxyUnavailable(f"haproxy refused {batch!r}: {'; '.join(bad)}")

    def apply(self, namespaces: Sequence[Namespace], backends: Sequence[Backend]) -> ApplyResult:
        """Route exactly ``backends`` for ``namespaces``; raises ConfigRejected/ProxyUnavailable."""
        problems = check_problems(namespaces)
        if problems:
            raise ConfigRejected("; ".join(problems))
        started = False
        if self.state is None and self.running():
            self._adopt(namespaces, backends)
        plan = plan_proxy(self.state, namespaces, self.binds, backends, self.min_slots)
        self._claim(plan.state)
        if plan.reload:
            self._write_candidate(plan.state)
            if self.running():
                self._reload(plan.state)
            else:
                self._start(plan.state)
                started = True
            self.state = plan.state
        try:
            self.send(plan.commands)
        except ProxyUnavailable:
            self.state = None
            raise
        self.state = plan.state
        return ApplyResult(plan.reload and not started, started, len(plan.commands))

    def stats(self) -> tuple[ServerStat, ...]:
        return read_stats(self.admin_socket)


def _is_error(line: str) -> bool:
    low = line.strip().lower()
    if not low or low.startswith("no need to change"):
        return False
    # "IP changed from ..." / "port changed from ..." are successes
    return "changed from" not in low


def _pids_running(binary: str, config_file: Path) -> list[int]:
    """Processes of ``binary`` whose command line names ``config_file`` (from /proc)."""
    name, config = os.path.basename(binary), str(config_file)
    pids = []
    for entry in os.listdir("/proc"):
        if not entry.isdigit():
            continue
        try:
            with open(f"/proc/{entry}/cmdline", "rb") as f:
                argv = f.read().decode(errors="replace").split("\0")
        except OSError:
            continue
        if argv and os.path.basename(argv[0]) == name and config in argv:
            pids.append(int(entry))
    return pids


def _proxy_of(workdir: Path) -> int | None:
    """The master pid of the HAProxy running ``workdir``'s config, if one runs."""
    try:
        pid = int((workdir / "haproxy.pid").read_text().split()[0])
    except (OSError, ValueError, IndexError):
        return None
    if not _alive(pid):
        return None
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = f.read().decode(errors="replace").split("\0")
    except OSError:
        return None
    return pid if str(workdir / "haproxy.cfg") in argv else None


def _alive(pid: int) -> bool:
    try:  # a zombie (exited, not reaped by a container's init) is not alive
        with open(f"/proc/{pid}/stat") as f:
            if f.read().rsplit(")", 1)[-1].split()[0] == "Z":
                return False
    except (OSError, IndexError):
        pass
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True
