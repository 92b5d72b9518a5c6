"""The Postgres add-on end to end on the real Docker engine and the real Postgres of
scripts/services.sh, named in paasport.yaml as an existing server (addons.postgres.url).

That server listens on 127.0.0.1 only, which tasks on Docker's bridge cannot reach: here the
tasks prove the injection (their env, read with docker inspect, holds DATABASE_URL and PG*,
resolved from the secrets at their start) and the test connects with exactly those credentials
to write and read rows. test_postgres_local_server.py has a task connect by itself (psql in the
task) to the one-host server, which listens on the bridge.

One world, in order: validate says the instance waits; `up` provisions before the instance
starts; a row written with the task's DATABASE_URL; addon list/info/psql; backup, a change,
restore brings the row back; rotate-credentials bounces the service onto a new role with
HAProxy answering every request meanwhile, and the old role is dropped only once the session
still using it closes; removing the add-on from the config keeps the database (orphaned);
destroy needs --yes, refuses while the config asks, then drops it. The password is in no
output, log or file.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
import time
from pathlib import Path
from typing import Any

import psycopg
import pytest
from addon_support import envs, healthy, outputs_hold, with_addon
from e2e_world import E2E, PAASPORT, SERVICE, Load, e2e_world, git, wait_for

from paasport.deploy.postgres import PostgresServer, database_name

pytestmark = pytest.mark.integration

COUNT = 2


def _rows(url: str) -> list[str]:
    with psycopg.connect(url, connect_timeout=5) as conn:
        return [r[0] for r in conn.execute("SELECT note FROM notes ORDER BY id").fetchall()]


def _admin_one(admin: str, query: str, *args: object) -> Any:
    with psycopg.connect(admin, connect_timeout=5, autocommit=True) as conn:
        row = conn.execute(query, args).fetchone()
        return row[0] if row else None


def test_postgres_addon_on_an_existing_server(postgres_url: str) -> None:
    with tempfile.TemporaryDirectory(prefix="paasport-test-") as tmp, e2e_world(Path(tmp)) as w:
        try:
            _the_whole_story(w, Path(tmp), postgres_url)
        finally:  # a failure must not leave the database on the shared server
            PostgresServer(postgres_url, timeout=10).destroy(SERVICE, w.cluster)


def _the_whole_story(w: E2E, tmp: Path, postgres_url: str) -> None:
    db = database_name(SERVICE, w.cluster)
    with_addon(
        w,
        f"addons:\n  postgres:\n    url: {json.dumps(postgres_url)}\n    backup_keep_days: 2\n",
    )
    w.write_instance(instances=COUNT)
    said: list[str] = []

    def run(*args: str, check: bool = True) -> Any:
        out = w.run(*args, check=check)
        said.extend([out.stdout, out.stderr])
        return out

    waiting = run("validate", "-s", SERVICE)  # valid: the instance only waits
    assert "addons.postgres: waiting for its database on cluster" in waiting.stdout
    sha = git(w.repo, "rev-parse", "HEAD")
    run("cook-image", "-s", SERVICE, "-c", sha)
    run("mark-for-deployment", "-s", SERVICE, "-l", f"{w.cluster}.main", "-c", sha)
    w.start_up()
    wait_for("the tasks on their credentials", lambda: healthy(w, COUNT, f"{db}_u1"), 60, w.up_log)

    env = envs(w)[0]
    password = env["PGPASSWORD"]
    assert (env["PGHOST"], env["PGPORT"], env["PGDATABASE"]) == (
        "127.0.0.1",
        postgres_url.rsplit(":", 1)[1].split("/")[0],
        db,
    )
    assert env["DATABASE_URL"] == f"postgresql://{db}_u1:{password}@127.0.0.1:{env['PGPORT']}/{db}"
    with psycopg.connect(env["DATABASE_URL"], connect_timeout=5, autocommit=True) as conn:
        conn.execute("CREATE TABLE notes (id serial PRIMARY KEY, note text)")
        conn.execute("INSERT INTO notes (note) VALUES ('written with the task env')")

    [entry] = json.loads(run("addon", "list", "--json").stdout)
    assert (entry["service"], entry["database"], entry["state"], entry["instances"]) == (
        SERVICE,
        db,
        "provisioned",
        ["main"],
    )
    info = json.loads(run("addon", "info", "-s", SERVICE, "--json").stdout)
    assert info["roles"] == [f"{db}_u1"] and info["size_bytes"] > 0
    assert {s["name"] for s in info["secrets"]} >= {"addon-postgres-password"}
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
            "SELECT note FROM notes",
        ],
        capture_output=True,
        text=True,
        env=w.env,
        timeout=60,
    )
    said.extend([psql.stdout, psql.stderr])
    assert psql.returncode == 0, psql.stderr
    assert psql.stdout.strip() == "written with the task env"
    # a one-off task (a migration, say) gets the add-on's env too; its values stay unprinted
    one_off = run("run", "-s", SERVICE, "--from", "main", "--cmd",
                  'echo "${DATABASE_URL%%:*} $PGDATABASE"')  # fmt: skip
    assert one_off.stdout.strip() == f"postgresql {db}", one_off.stdout

    # backup, a change, restore
    dump = json.loads(run("addon", "backup", "-s", SERVICE, "--json").stdout)
    assert Path(dump["path"]).parent == w.state / "addons" / "postgres" / SERVICE
    with psycopg.connect(env["DATABASE_URL"], connect_timeout=5, autocommit=True) as conn:
        conn.execute("DELETE FROM notes")
    asks = run("addon", "restore", "-s", SERVICE, check=False)
    assert asks.returncode == 2 and "add --yes" in asks.stderr
    run("addon", "restore", "-s", SERVICE, "--yes")
    assert _rows(env["DATABASE_URL"]) == ["written with the task env"]

    # rotation under load; a session of the old role holds it until it closes
    old_session = psycopg.connect(env["DATABASE_URL"], connect_timeout=5)
    try:
        with Load(w.proxy_port) as load:
            rotated = json.loads(run("addon", "rotate-credentials", "-s", SERVICE, "--json").stdout)
            assert (rotated["role"], rotated["old_roles"]) == (f"{db}_u2", [f"{db}_u1"])
            wait_for(
                "the bounce onto the new role",
                lambda: healthy(w, COUNT, f"{db}_u2"),
                60,
                w.up_log,
            )
        assert load.ok > 50 and load.failures == [], load.failures[:5]
        new_env = envs(w)[0]
        assert new_env["PGPASSWORD"] != password
        assert _rows(new_env["DATABASE_URL"]) == ["written with the task env"]  # its tables
        time.sleep(4.5)  # two provisioner passes: the open session keeps the old role
        old_role = f"{db}_u1"
        query = "SELECT count(*) FROM pg_roles WHERE rolname = %s"
        assert _admin_one(postgres_url, query, old_role) == 1
    finally:
        old_session.close()
    wait_for(
        "the old role dropped",
        lambda: _admin_one(postgres_url, query, old_role) == 0,
        20,
        w.up_log,
    )
    events = json.loads(run("events", "-s", SERVICE, "--json", "-n", "200").stdout)
    actions = [e["data"]["action"] for e in events if e["kind"] == "addon"]
    assert actions == ["provisioned", "backup", "restore", "rotated", "role_dropped"]

    # the config drops it: the database stays, orphaned; destroy needs --yes
    refused = run("addon", "destroy", "-s", SERVICE, "--yes", check=False)
    assert refused.returncode == 1 and "still ask for the postgres add-on" in refused.stderr
    (w.soa / SERVICE / "service.yaml").write_text(
        f"description: end-to-end test service\ngit_url: {w.repo}\n"
    )
    wait_for("tasks without the add-on", lambda: healthy(w, COUNT, None), 60, w.up_log)
    [orphan] = json.loads(run("addon", "list", "--json").stdout)
    assert (orphan["state"], orphan["instances"]) == ("orphaned", [])
    assert _rows(new_env["DATABASE_URL"]) == ["written with the task env"]
    asks = run("addon", "destroy", "-s", SERVICE, check=False)
    assert asks.returncode == 2 and "add --yes" in asks.stderr
    run("addon", "destroy", "-s", SERVICE, "--yes")
    assert _admin_one(postgres_url, "SELECT count(*) FROM pg_database WHERE datname = %s", db) == 0
    assert json.loads(run("addon", "list", "--json").stdout) == []
    assert json.loads(run("secret", "list", "-s", SERVICE, "--json").stdout) == []

    said.append(w.up_log.read_text())
    for value in (password, new_env["PGPASSWORD"]):
        assert outputs_hold(said, tmp, value) == []
