"""deployd's Postgres add-on provisioner over a real DesiredStore and fakes of the server and
the engine: an instance asking for the add-on waits (left out) until the provisioner stored its
credentials, then loads with them; passes are idempotent; an old role is dropped only once the
configs carry the new credentials, every task runs the desired version and no session uses it;
a standby does nothing; a failure is said once; a config edited away is not provisioned."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from paasport.bounce.desired import config_hash
from paasport.config.secrets import read_index
from paasport.config.system import ClusterConfig, SystemConfig
from paasport.deploy.postgres import Credentials, DatabaseInfo, database_name, login_role
from paasport.errors import PermanentError
from paasport.monitoring.events import EventKind, EventLog
from paasport.platform import addons
from paasport.platform.addon_provisioner import AddonProvisioner, old_credentials_in_use
from paasport.reconcile.store import DesiredStore
from paasport.types import AppVersion, DeploymentState, InstanceConfig, Task

from fake_engine import FakeEngine

DEPLOYMENT = DeploymentState("services-web:paasta-abc", "abc")
INSTANCES = "main:\n  cmd: run\n  addons: {postgres: {}}\nworker:\n  cmd: work\n"


class FakeServer:
    """The admin side of PostgresServer: databases, their login roles and sessions."""

    label = "db.test:5432"

    def __init__(self) -> None:
        self.roles: dict[str, list[str]] = {}
        self.passwords: dict[str, str] = {}
        self.sessions: dict[str, int] = {}
        self.calls: list[str] = []
        self.fail: Exception | None = None

    def _creds(self, db: str, role: str) -> Credentials:
        return Credentials("127.0.0.1", 5432, role, self.passwords[role], db)

    def provision(self, service: str, cluster: str, *, password: str | None = None) -> Credentials:
        self.calls.append(f"provision {service}")
        if self.fail is not None:
            raise self.fail
        db = database_name(service, cluster)
        roles = self.roles.setdefault(db, [login_role(db, 1)])
        self.passwords[roles[-1]] = password or f"pw-{len(self.calls)}"
        return self._creds(db, roles[-1])

    def rotate(self, service: str, cluster: str) -> Credentials:
        db = database_name(service, cluster)
        role = login_role(db, len(self.roles[db]) + 1)
        self.roles[db].append(role)
        self.passwords[role] = f"pw-{role}"
        return self._creds(db, role)

    def databases(self) -> list[tuple[str, str, str]]:
        return [(db.rsplit("_", 1)[0], "local", db) for db in self.roles]

    def info(self, service: str, cluster: str) -> DatabaseInfo:
        db = database_name(service, cluster)
        return DatabaseInfo(db, f"{db}_owner", tuple(self.roles[db]), 1, 0, "")

    def drop_role_if_unused(self, role: str) -> bool:
        self.calls.append(f"drop {role}")
        if self.sessions.get(role):
            return False
        for roles in self.roles.values():
            if role in roles:
                roles.remove(role)
        return True


@pytest.fixture
def world(tmp_path: Path) -> dict[str, Any]:
    soa = tmp_path / "soa"
    (soa / "web").mkdir(parents=True)
    (soa / "web" / "service.yaml").write_text("description: web\n")
    (soa / "web" / "deploy.yaml").write_text(
        "pipeline:\n  - step: local.main\n  - step: local.worker\n"
    )
    (soa / "web" / "instances-local.yaml").write_text(INSTANCES)
    system = SystemConfig(
        clusters={"local": ClusterConfig("local")}, soa_dir=soa, state_dir=tmp_path / "state"
    )
    store = DesiredStore(soa, "local", system=system)
    engine = FakeEngine(cluster="local")
    events = EventLog(tmp_path / "events.sqlite")
    server = FakeServer()
    clock = [1000.0]
    acting = [True]
    provisioner = AddonProvisioner(
        system,
        store,
        engine,
        events,  # type: ignore[arg-type]
        desired_hash=lambda c: config_hash(c, DEPLOYMENT),
        clock=lambda: clock[0],
        may_act=lambda: acting[0],
    )
    provisioner._server = addons.AddonServer(server, "172.17.0.1", "127.0.0.1", 5432, own=False)  # type: ignore[arg-type]
    yield {
        "system": system,
        "store": store,
        "engine": engine,
        "events": events,
        "server": server,
        "p": provisioner,
        "clock": clock,
        "acting": acting,
        "soa": soa,
    }
    events.close()


def _addon_events(events: EventLog) -> list[tuple[str, str]]:
    return [(e.level, str(e.data["action"])) for e in events.query(kinds=(EventKind.ADDON,))]


def _task(config: InstanceConfig, n: int, state: str = "running") -> Task:
    return Task(
        f"t{n}",
        config.service,
        config.instance,
        "local",
        config_hash(config, DEPLOYMENT),
        "abc",
        state,
    )  # type: ignore[arg-type]


def test_an_instance_waits_for_its_credentials_then_loads_with_them(world: dict[str, Any]) -> None:
    store, p, system = world["store"], world["p"], world["system"]
    store.load_all()
    assert store.config(("web", "main")) is None  # waiting: left out, nothing starts
    assert store.config(("web", "worker")) is not None  # the rest of the service runs
    assert store.addon_services("postgres") == ("web",)

    assert p.pass_once() == ["provisioned web"]
    index = read_index(system.state_dir, "local", "web")
    assert sorted(index) == sorted(
        f"addon-postgres-{k}" for k in ("url", "host", "port", "user", "password", "database")
    )
    env = addons.stored_credentials(system, "web")
    assert env is not None and env["PGHOST"] == "172.17.0.1"  # where tasks reach it
    assert env["DATABASE_URL"].startswith("postgresql://web_local_u1:pw-1@172.17.0.1:5432/")
    assert _addon_events(world["events"]) == [("info", "provisioned")]
    assert all("pw-1" not in e.message for e in world["events"].query())

    store.reload_service("web")  # what the store's watcher does when the secrets change
    main = store.config(("web", "main"))
    assert main is not None and main.env["PGPASSWORD"] == "SECRET(addon-postgres-password)"
    assert ("addon-postgres-user", index["addon-postgres-user"].version) in main.secret_versions
    assert store.config(("web", "worker")).secret_versions == ()  # type: ignore[union-attr]

    assert p.pass_once() == []  # idempotent: nothing to do, the server is not even asked
    world["clock"][0] += 31
    assert p.pass_once() == [] and world["server"].calls == ["provision web"]


def test_a_database_gone_from_the_server_is_provisioned_again(world: dict[str, Any]) -> None:
    store, p, server = world["store"], world["p"], world["server"]
    store.load_all()
    p.pass_once()
    password = server.passwords["web_local_u1"]
    server.roles.clear()  # someone dropped it
    world["clock"][0] += 31
    assert p.pass_once() == ["provisioned web"]
    assert server.passwords["web_local_u1"] == password  # the stored one: no bounce


def _rotated(world: dict[str, Any]) -> tuple[InstanceConfig, InstanceConfig]:
    store, p = world["store"], world["p"]
    store.load_all()
    p.pass_once()
    store.reload_service("web")
    p.pass_once()
    before = store.config(("web", "main"))
    world["engine"].tasks = {"t1": _task(before, 1)}
    addons.rotate(world["system"], p.server(), world["events"], "web")
    return before, store.config(("web", "main"))


def test_the_old_role_waits_for_the_reload_the_bounce_and_its_sessions(
    world: dict[str, Any],
) -> None:
    store, p, server, engine = world["store"], world["p"], world["server"], world["engine"]
    before, stale = _rotated(world)
    assert server.roles["web_local"] == ["web_local_u1", "web_local_u2"]
    assert stale == before  # the store has not seen the new secrets yet
    assert p.pass_once() == []  # its config still has the old credentials

    store.reload_service("web")
    after = store.config(("web", "main"))
    assert after is not None and config_hash(after, DEPLOYMENT) != config_hash(before, DEPLOYMENT)
    assert p.pass_once() == []  # a task of the old version still runs

    engine.tasks = {"t2": _task(after, 2), "t1": _task(before, 1, "exited")}
    server.sessions["web_local_u1"] = 1  # a session of the old role lingers
    assert p.pass_once() == [] and server.calls[-1] == "drop web_local_u1"
    server.sessions.clear()
    assert p.pass_once() == ["dropped role web_local_u1 of web"]
    assert server.roles["web_local"] == ["web_local_u2"]
    assert _addon_events(world["events"])[-2:] == [("info", "rotated"), ("info", "role_dropped")]
    calls = len(server.calls)
    assert p.pass_once() == [] and len(server.calls) == calls  # checked: not asked again


def test_a_standby_does_nothing(world: dict[str, Any]) -> None:
    world["store"].load_all()
    world["acting"][0] = False
    assert world["p"].pass_once() == []
    assert world["server"].calls == []


def test_a_failure_is_said_once(world: dict[str, Any]) -> None:
    world["store"].load_all()
    world["server"].fail = PermanentError("Postgres server db.test:5432 refused (x): no")
    assert world["p"].pass_once() == []
    world["clock"][0] += 1
    assert world["p"].pass_once() == []
    assert _addon_events(world["events"]) == [("error", "failed")]
    assert world["server"].calls == ["provision web", "provision web"]


def test_an_ask_edited_away_meanwhile_is_not_provisioned(world: dict[str, Any]) -> None:
    world["store"].load_all()  # the store still says main asks for it
    (world["soa"] / "web" / "instances-local.yaml").write_text("main:\n  cmd: run\n")
    assert world["p"].pass_once() == []
    assert world["server"].calls == []


CONFIG = InstanceConfig(
    "web", "local", "main", "local.main", secret_versions=(("addon-postgres-user", "v2"),)
)
OTHER = dataclasses.replace(CONFIG, instance="worker", secret_versions=())


def _av(config: InstanceConfig, hash_: str, *states: str) -> AppVersion:
    tasks = tuple(
        Task(f"t{i}", "web", config.instance, "local", hash_, "abc", s)  # type: ignore[arg-type]
        for i, s in enumerate(states)
    )
    return AppVersion("web", config.instance, "local", hash_, "abc", "img", tasks)


def _index(version: str) -> dict[str, Any]:
    from paasport.config.secrets import SecretEntry

    return {"addon-postgres-user": SecretEntry("addon-postgres-user", version, 0.0)}


HASH: Callable[[InstanceConfig], str | None] = lambda c: f"h-{c.instance}"  # noqa: E731
IN_USE = [
    # configs, index version, observed -> why (None: nothing holds the old credentials)
    ({"main": CONFIG}, "v2", [], None),
    ({"main": CONFIG}, "v3", [], "main: its config still has the previous credentials"),
    ({"main": CONFIG}, "v2", [_av(CONFIG, "h-main", "running")], None),
    (
        {"main": CONFIG},
        "v2",
        [_av(CONFIG, "old", "running")],
        "main: 1 task(s) of app version old still run",
    ),
    ({"main": CONFIG}, "v2", [_av(CONFIG, "old", "exited", "dead")], None),  # dead: none
    (
        {"main": CONFIG, "worker": OTHER},
        "v2",
        [_av(OTHER, "old", "starting")],
        "worker: 1 task(s) of app version old still run",
    ),  # any bounce of the service waits
    (
        {},
        "v2",
        [_av(CONFIG, "h-main", "running")],
        "main: 1 task(s) of a removed instance still run",
    ),
]


@pytest.mark.parametrize(("configs", "version", "observed", "why"), IN_USE)
def test_old_credentials_in_use(
    configs: dict[str, InstanceConfig], version: str, observed: list[AppVersion], why: str | None
) -> None:
    assert old_credentials_in_use(configs, _index(version), observed, HASH) == why
