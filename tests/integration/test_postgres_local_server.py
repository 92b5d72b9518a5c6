"""The Postgres add-on's one-host default on the real Docker engine: paasport.yaml names no
server, so deployd initialises and starts its own postgresql-15 (bounded: the database is
there within seconds of `up`), listening on the Docker bridge's gateway; a task connects by
itself and writes a row: busybox has no psql, so the task runs the host's psql, with the
host's /usr mounted read-only (extra_volumes, allowed_host_paths) and the PG* variables the
add-on injected, from the bridge, as any service would. The server is stopped and removed
after the test (paasport itself never stops it: services keep their database).
"""

from __future__ import annotations

import json
import shutil
import subprocess
import tempfile
import time
from pathlib import Path

import pytest
from addon_support import envs, healthy, with_addon
from e2e_world import PAASPORT, SERVICE, e2e_world, git, wait_for

from paasport.config.system import DEFAULT_PG_BIN
from paasport.deploy.postgres import database_name
from paasport.platform.postgres_local import LocalPostgres

from harness import running_containers

pytestmark = pytest.mark.integration

PSQL = f"{DEFAULT_PG_BIN}/psql"
# the task writes its row with psql and the injected env, then serves
CMD = (
    f'{PSQL} -X -v ON_ERROR_STOP=1 -c "CREATE TABLE IF NOT EXISTS hits (task text)" '
    "-c \"INSERT INTO hits VALUES ('$HOSTNAME')\" && exec httpd -f -p 8888 -h /www"
)
# busybox from scratch, plus /lib and /lib64 links so the host's /usr (mounted) runs psql
DOCKERFILE = (
    "FROM scratch\nCOPY busybox /bin/busybox\n"
    'RUN ["/bin/busybox", "--install", "-s", "/bin"]\nENV PATH=/bin\n'
    "RUN ln -s usr/lib /lib && ln -s usr/lib64 /lib64\nCOPY www /www\n"
    'CMD ["httpd", "-f", "-p", "8888", "-h", "/www"]\n'
)


def test_the_one_host_server_starts_and_a_task_writes_a_row() -> None:
    with tempfile.TemporaryDirectory(prefix="paasport-test-") as tmp:
        try:
            with e2e_world(Path(tmp)) as w:
                db = database_name(SERVICE, w.cluster)
                with_addon(w, "allowed_host_paths: [/usr]\n")
                (w.repo / "Dockerfile").write_text(DOCKERFILE)
                git(
                    w.repo,
                    "-c",
                    "user.name=e2e",
                    "-c",
                    "user.email=e2e@localhost",
                    "commit",
                    "-qam",
                    "psql from the host's /usr",
                )  # a fresh machine has no git identity
                w.write_instance(
                    instances=1,
                    cmd=CMD,
                    extra_volumes=[{"containerPath": "/usr", "hostPath": "/usr", "mode": "RO"}],
                )
                sha = git(w.repo, "rev-parse", "HEAD")
                w.run("cook-image", "-s", SERVICE, "-c", sha)
                w.run("mark-for-deployment", "-s", SERVICE, "-l", f"{w.cluster}.main", "-c", sha)
                started = time.monotonic()
                w.start_up()
                wait_for(
                    "its database",
                    lambda: (
                        (w.state / "postgres" / "server.json").exists()
                        and json.loads(w.run("addon", "list", "--json").stdout)[0]["state"]
                        == "provisioned"
                    ),
                    30,
                    w.up_log,
                )
                assert time.monotonic() - started < 30
                wait_for("the task", lambda: healthy(w, 1, f"{db}_u1"), 60, w.up_log)
                [env] = envs(w)
                # the bridge's side of this host: docker0's own address (a fresh dockerd may
                # leave Gateway out of the network's IPAM config)
                addr = subprocess.run(
                    ["ip", "-4", "-o", "addr", "show", "docker0"],
                    capture_output=True, text=True, check=True, timeout=30,
                ).stdout.split()  # fmt: skip
                gateway = addr[addr.index("inet") + 1].split("/")[0]
                assert env["PGHOST"] == gateway

                psql = subprocess.run(
                    [
                        *PAASPORT,
                        "addon",
                        "psql",
                        "-s",
                        SERVICE,
                        "--config",
                        str(w.config),
                        "--",
                        "-XtAc",
                        "SELECT task FROM hits",
                    ],
                    capture_output=True,
                    text=True,
                    env=w.env,
                    timeout=60,
                )
                assert psql.returncode == 0, psql.stderr
                [cid] = running_containers(w.cluster)
                hostname = subprocess.run(
                    ["docker", "inspect", "-f", "{{.Config.Hostname}}", cid],
                    capture_output=True,
                    text=True,
                    check=True,
                    timeout=30,
                ).stdout.strip()
                assert psql.stdout.split() == [hostname]  # the task's own row
                info = json.loads(w.run("addon", "info", "-s", SERVICE, "--json").stdout)
                port = json.loads((w.state / "postgres" / "server.json").read_text())["port"]
                assert info["server"] == f"127.0.0.1:{port}"
        finally:
            LocalPostgres(Path(tmp) / "state", DEFAULT_PG_BIN).remove()
            shutil.rmtree(Path(tmp) / "state" / "postgres", ignore_errors=True)
