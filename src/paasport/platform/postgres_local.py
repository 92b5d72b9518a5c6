"""The one-host Postgres of the add-on: a cluster of Debian's postgresql-15 that paasport
initialises and starts itself when paasport.yaml names no server (``addons.postgres.url``).

``platform.addons`` calls ``LocalPostgres.ensure_running`` (deployd, lazily, once a service asks
for the add-on; the ``addon`` verbs when it exists) and gets the superuser's URL. Layout:
``<state_dir>/postgres/`` (root's, 0700) holds ``server.json`` (port, cluster folder) and
``admin.password`` (0600) and ``cluster``, a link to the cluster folder (the postgres user's:
``data/``, ``socket/``, ``postgres.log``) in ``/var/lib/paasport-postgres/<hash of the state
dir>``: initdb refuses root, and the state dir is 0700. It listens on 127.0.0.1
and the Docker bridge's gateway (tasks connect there), scram-sha-256 for both, peer for the OS
user postgres on its socket; it outlives paasport (services keep their database) until ``stop``.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import hmac
import json
import os
import pwd
import secrets
import shutil
import socket
import string
import subprocess
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path

from paasport.config.state_files import FILE_MODE, exclusive_lock, private_dir
from paasport.errors import PermanentError, TemporaryError

OUTSIDE_ROOT = Path("/var/lib/paasport-postgres")
SERVER_FILE = "server.json"
PASSWORD_FILE = "admin.password"
START_SECONDS = 30.0
TOOL_SECONDS = 60.0
SCRAM_ITERATIONS = 4096
_ALPHABET = string.ascii_letters + string.digits


def scram_verifier(password: str, salt: bytes, iterations: int = SCRAM_ITERATIONS) -> str:
    """What Postgres stores for a SCRAM-SHA-256 password (RFC 5802/7677): setting the role's
    password to it means the password itself never reaches the server. Pure."""
    salted = hashlib.pbkdf2_hmac("sha256", password.encode(), salt, iterations)
    client_key = hmac.new(salted, b"Client Key", "sha256").digest()
    server_key = hmac.new(salted, b"Server Key", "sha256").digest()
    b64 = base64.b64encode
    stored = b64(hashlib.sha256(client_key).digest()).decode()
    return f"SCRAM-SHA-256${iterations}:{b64(salt).decode()}${stored}:{b64(server_key).decode()}"


def hba_lines(subnets: Sequence[str]) -> list[str]:
    """pg_hba.conf: peer for the OS user postgres on the socket, scram from 127.0.0.1 and the
    bridge's subnet, nothing else. Pure."""
    lines = ["local all postgres peer", "local all all reject"]
    lines += [f"host all all {net} scram-sha-256" for net in ("127.0.0.1/32", *subnets)]
    return lines


def admin_url(password: str, port: int) -> str:
    return f"postgresql://postgres:{password}@127.0.0.1:{port}/postgres"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@dataclass(frozen=True)
class Layout:
    home: Path  # root's: server.json, admin.password
    cluster: Path  # the postgres user's: data/, socket/, postgres.log
    port: int

    @property
    def data(self) -> Path:
        return self.cluster / "data"

    @property
    def socket_dir(self) -> Path:
        return self.cluster / "socket"

    @property
    def log(self) -> Path:
        return self.cluster / "postgres.log"


class LocalPostgres:
    """The add-on's own server of one state dir."""

    def __init__(self, state_dir: Path, bin_dir: str | Path, *, timeout: float = START_SECONDS):
        self.home = Path(state_dir) / "postgres"
        self.state_dir = Path(state_dir)
        self.bin_dir = Path(bin_dir)
        self.timeout = timeout

    # - facts -

    def layout(self) -> Layout | None:
        try:
            doc = json.loads((self.home / SERVER_FILE).read_text())
            return Layout(self.home, Path(doc["cluster"]), int(doc["port"]))
        except FileNotFoundError:
            return None
        except (OSError, ValueError, KeyError, TypeError) as err:
            raise PermanentError(f"{self.home / SERVER_FILE}: unreadable ({err})") from None

    def exists(self) -> bool:
        layout = self.layout()
        return layout is not None and (layout.data / "PG_VERSION").is_file()

    def _password(self) -> str:
        path = self.home / PASSWORD_FILE
        with contextlib.suppress(FileNotFoundError):
            return path.read_text().strip()
        password = "".join(secrets.choice(_ALPHABET) for _ in range(32))
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, FILE_MODE)
        with os.fdopen(fd, "w") as out:
            out.write(password + "\n")
        return password

    # - running it -

    def ensure_running(self, listen: Sequence[str] = (), subnets: Sequence[str] = ()) -> str:
        """Initialise (first time), start (when stopped) and return the superuser URL. ``listen``
        and ``subnets``: the bridge's gateway and subnet, besides 127.0.0.1. Bounded by
        ``timeout`` per step; a failure says what to look at in one line."""
        self._check_installed()
        with self._locked():
            layout = self.layout() or self._plan_layout()
            password = self._password()
            if not (layout.data / "PG_VERSION").is_file():
                self._initdb(layout)
            self._write_hba(layout, subnets)
            addresses = ",".join(dict.fromkeys(("127.0.0.1", *listen)))
            if self._running(layout):
                if self._listening(layout) == addresses:
                    self._pg_ctl(layout, "reload")  # pg_hba.conf may have changed
                    return admin_url(password, layout.port)
                self._pg_ctl(layout, "stop", "-m", "fast", "-w", "-t", f"{self.timeout:.0f}")
            self._start(layout, addresses)
            self._set_password(layout, password)
            return admin_url(password, layout.port)

    def stop(self) -> bool:
        """Stop the server (fast: sessions end); False when it was not running."""
        layout = self.layout()
        if layout is None or not self._running(layout):
            return False
        self._pg_ctl(layout, "stop", "-m", "fast", "-w", "-t", f"{self.timeout:.0f}")
        return True

    def remove(self) -> None:
        """Stop it and delete its data and files (tests; never called by paasport itself)."""
        layout = self.layout()
        self.stop()
        if layout is not None and layout.cluster.parent == OUTSIDE_ROOT:
            shutil.rmtree(layout.cluster, ignore_errors=True)
        shutil.rmtree(self.home, ignore_errors=True)

    # - steps -

    def _check_installed(self) -> None:
        missing = [t for t in ("initdb", "pg_ctl", "psql") if not (self.bin_dir / t).is_file()]
        if missing:
            raise PermanentError(
                f"no {self.bin_dir / missing[0]}: install postgresql-15 (scripts/bootstrap.sh), "
                "or name a server in paasport.yaml (addons.postgres.url)"
            )
        try:
            pwd.getpwnam("postgres")
        except KeyError:
            raise PermanentError("no user postgres: install postgresql-15") from None

    @contextlib.contextmanager
    def _locked(self) -> Iterator[None]:
        """deployd and an ``addon`` verb may start it at the same time: one at a time."""
        private_dir(self.home)

        def busy() -> Exception:
            return TemporaryError(
                f"{self.home}: another paasport is starting the add-on's Postgres", delay=2.0
            )

        with exclusive_lock(self.home / ".lock", self.timeout + TOOL_SECONDS, busy):
            yield

    def _as_postgres(
        self, args: Sequence[str], what: str, *, stdin: str | None = None, timeout: float
    ) -> subprocess.CompletedProcess[str]:
        try:
            return subprocess.run(
                ["runuser", "-u", "postgres", "--", *args],
                input=stdin,
                stdin=None if stdin is not None else subprocess.DEVNULL,
                capture_output=True,
                text=True,
                timeout=timeout,
                check=False,
                cwd="/",
            )
        except subprocess.TimeoutExpired:
            raise TemporaryError(
                f"the add-on's Postgres: {what} took longer than {timeout:.0f} s", delay=5.0
            ) from None
        except OSError as err:
            raise PermanentError(f"the add-on's Postgres: {what}: {err}") from None

    def _plan_layout(self) -> Layout:
        # never inside the state dir: paasport keeps it 0700 (private_dir), which would lock
        # the postgres user out of its own data at the next start
        digest = hashlib.sha1(str(self.state_dir.resolve()).encode()).hexdigest()[:12]
        cluster = OUTSIDE_ROOT / digest
        OUTSIDE_ROOT.mkdir(mode=0o755, exist_ok=True)
        with contextlib.suppress(FileExistsError):
            (self.home / "cluster").symlink_to(cluster, target_is_directory=True)
        owner = pwd.getpwnam("postgres")
        for folder in (cluster, cluster / "data", cluster / "socket"):
            folder.mkdir(mode=0o700, exist_ok=True)
            os.chown(folder, owner.pw_uid, owner.pw_gid)
            folder.chmod(0o700)
        layout = Layout(self.home, cluster, _free_port())
        doc = {"cluster": str(cluster), "port": layout.port}
        (self.home / SERVER_FILE).write_text(json.dumps(doc, indent=2) + "\n")
        return layout

    def _tail(self, layout: Layout, stderr: str = "") -> str:
        lines = [ln for ln in stderr.strip().splitlines() if ln.strip()]
        with contextlib.suppress(OSError):
            lines += [ln for ln in layout.log.read_text(errors="replace").splitlines() if ln]
        return lines[-1].strip() if lines else "no output"

    def _initdb(self, layout: Layout) -> None:
        args = [
            str(self.bin_dir / "initdb"),
            "-D",
            str(layout.data),
            "-U",
            "postgres",
            "-E",
            "UTF8",
            "--locale=C.UTF-8",
            "--auth-local=peer",
            "--auth-host=reject",
        ]
        done = self._as_postgres(args, "initdb", timeout=TOOL_SECONDS)
        if done.returncode != 0:
            raise PermanentError(
                f"the add-on's Postgres: initdb {layout.data} failed: "
                f"{self._tail(layout, done.stderr)}"
            )

    def _write_hba(self, layout: Layout, subnets: Sequence[str]) -> None:
        text = "\n".join(hba_lines(subnets)) + "\n"
        done = self._as_postgres(
            ["sh", "-c", 'cat > "$0"', str(layout.data / "pg_hba.conf")],
            "writing pg_hba.conf",
            stdin=text,
            timeout=TOOL_SECONDS,
        )
        if done.returncode != 0:
            raise PermanentError(
                f"the add-on's Postgres: cannot write pg_hba.conf: "
                f"{self._tail(layout, done.stderr)}"
            )

    def _pg_ctl(self, layout: Layout, *args: str) -> subprocess.CompletedProcess[str]:
        cmd = [str(self.bin_dir / "pg_ctl"), "-D", str(layout.data), *args]
        done = self._as_postgres(cmd, f"pg_ctl {args[0]}", timeout=self.timeout + 5)
        if args[0] != "status" and done.returncode != 0:
            raise PermanentError(
                f"the add-on's Postgres: pg_ctl {args[0]} failed: {self._tail(layout, done.stderr)}"
            )
        return done

    def _running(self, layout: Layout) -> bool:
        return self._pg_ctl(layout, "status").returncode == 0

    def _listening(self, layout: Layout) -> str | None:
        """The listen_addresses the running server was started with (postmaster.opts)."""
        done = self._as_postgres(
            ["cat", str(layout.data / "postmaster.opts")],
            "reading postmaster.opts",
            timeout=TOOL_SECONDS,
        )
        for part in done.stdout.replace('"', " ").split():
            if part.startswith("listen_addresses="):
                return part.split("=", 1)[1]
        return None

    def _start(self, layout: Layout, addresses: str) -> None:
        options = (
            f"-k {layout.socket_dir} -p {layout.port} -c listen_addresses={addresses}"
            " -c password_encryption=scram-sha-256"
        )
        self._pg_ctl(
            layout, "start", "-w", "-t", f"{self.timeout:.0f}", "-l", str(layout.log), "-o", options
        )

    def _set_password(self, layout: Layout, password: str) -> None:
        verifier = scram_verifier(password, secrets.token_bytes(16))
        args = [
            str(self.bin_dir / "psql"),
            "-X",
            "-q",
            "-v",
            "ON_ERROR_STOP=1",
            "-h",
            str(layout.socket_dir),
            "-p",
            str(layout.port),
            "-d",
            "postgres",
            "-f",
            "-",
        ]
        done = self._as_postgres(
            args,
            "setting the superuser's password",
            timeout=TOOL_SECONDS,
            stdin=f"ALTER ROLE postgres PASSWORD '{verifier}';\n",
        )
        if done.returncode != 0:
            raise PermanentError(
                f"the add-on's Postgres: cannot set the superuser's password: "
                f"{self._tail(layout, done.stderr)}"
            )
