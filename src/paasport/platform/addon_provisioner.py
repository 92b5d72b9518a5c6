"""deployd's Postgres add-on provisioner: every service some instance of which asks for the
add-on gets its database, role and credentials (secrets) before any of its instances starts,
and an old role left by ``addon rotate-credentials`` is dropped once nothing uses it.

Order (why it is safe): an instance asking for the add-on carries ``SECRET(addon-postgres-*)``
env references; until those secrets exist the tree leaves it out with a note (what runs for it
stays as it is, nothing starts), so deployd never starts a task without its credentials. This
provisioner, woken by every store reload and run by the lock holder only, provisions and writes
the secrets in one go; the store sees the secrets change, reloads the service, and deployd
starts (or bounces) its instances with the credentials resolved at the task's start.
``paasport up`` and ``paasport deployd`` run ``run_forever`` in a thread.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from functools import partial

from paasport.config.addons import POSTGRES, POSTGRES_USER_SECRET, addon_of_secret
from paasport.config.secrets import SecretEntry, read_index
from paasport.config.system import SystemConfig
from paasport.deploy.postgres import database_name
from paasport.engine.base import Engine
from paasport.errors import NotFoundError, PaasportError, TemporaryError
from paasport.monitoring.events import EventLog
from paasport.platform import addons
from paasport.reconcile.store import DesiredStore
from paasport.types import AppVersion, InstanceConfig

log = logging.getLogger("paasport.addons")

INTERVAL_SECONDS = 2.0
VERIFY_SECONDS = 30.0  # how often the databases are checked to still be there
DEAD_STATES = ("exited", "dead")


def old_credentials_in_use(
    configs: Mapping[str, InstanceConfig],
    index: Mapping[str, SecretEntry],
    versions: Sequence[AppVersion],
    desired_hash: Callable[[InstanceConfig], str | None],
) -> str | None:
    """Why a task may still hold the service's previous credentials (None: no task can). Pure.

    A task's env is resolved when it starts, so only tasks of the app version the current
    config asks for surely hold the current credentials, and only once the configs carry the
    secrets' current versions (the store reloaded them after the rotation)."""
    for name, each in sorted(configs.items()):
        for secret, version in each.secret_versions:
            entry = index.get(secret)
            if addon_of_secret(secret) == POSTGRES and entry and entry.version != version:
                return f"{name}: its config still has the previous credentials"
    for av in versions:
        live = [t for t in av.tasks if t.state not in DEAD_STATES]
        if not live:
            continue
        config = configs.get(av.instance)
        if config is None:
            return f"{av.instance}: {len(live)} task(s) of a removed instance still run"
        if av.config_hash != desired_hash(config):
            return f"{av.instance}: {len(live)} task(s) of app version {av.config_hash} still run"
    return None


class AddonProvisioner:
    def __init__(
        self,
        system: SystemConfig,
        store: DesiredStore,
        engine: Engine,
        events: EventLog,
        *,
        desired_hash: Callable[[InstanceConfig], str | None],
        clock: Callable[[], float] = time.time,
        interval: float = INTERVAL_SECONDS,
        may_act: Callable[[], bool] = lambda: True,
    ) -> None:
        self.system = system
        self.store = store
        self.engine = engine
        self.events = events
        self.desired_hash = desired_hash
        self.clock = clock
        self.interval = interval
        self.may_act = may_act
        self._server: addons.AddonServer | None = None
        self._next_verify = 0.0
        self._roles_checked: dict[str, str] = {}  # service -> user secret version without old roles
        self._said: dict[str, str] = {}  # service -> the failure last recorded (once each)
        self._wake = threading.Event()
        store.subscribe(lambda _keys: self._wake.set())  # a reload may ask for the add-on

    def run_forever(self, stop: threading.Event) -> None:
        log.info("postgres add-on provisioner: every %.1fs", self.interval)
        last = ""
        while not stop.is_set():
            try:
                self.pass_once()
                last = ""
            except PaasportError as err:  # the server is away: next pass (said once)
                log.log(
                    logging.DEBUG if str(err) == last else logging.WARNING,
                    "postgres add-on: %s",
                    err,
                )
                last = str(err)
                self._server = None
            except Exception:  # a bug in one pass must not end the provisioner
                log.exception("postgres add-on pass failed")
            self._wake.wait(self.interval)
            self._wake.clear()

    def server(self) -> addons.AddonServer:
        if self._server is None:
            found = addons.open_server(self.system, engine=self.engine)
            assert found is not None
            self._server = found
        return self._server

    def pass_once(self) -> list[str]:
        """Provision what is missing, check the databases now and then, drop old roles that
        nothing uses; returns what it did (one line each)."""
        if not self.may_act():  # a standby deployd: the active one provisions
            self._roles_checked.clear()
            return []
        services = self.store.addon_services(POSTGRES)
        if not services:
            return []
        cluster = self.system.local_cluster
        indexes = {s: read_index(self.system.state_dir, cluster, s) for s in services}
        todo = [s for s in services if not addons.has_credentials(indexes[s])]
        now = self.clock()
        verify = now >= self._next_verify
        rotated = [
            s
            for s in services
            if s not in todo
            and self._roles_checked.get(s) != indexes[s][POSTGRES_USER_SECRET].version
        ]
        if not (todo or verify or rotated):
            return []
        server = self.server()
        if verify:
            present = {s for s, c, _ in server.admin.databases() if c == cluster}
            todo += [s for s in services if s not in todo and s not in present]
            self._next_verify = now + VERIFY_SECONDS
        done: list[str] = []
        for service in todo:
            done += self._guarded(service, partial(self._provision, server, service))
        for service in rotated:
            if service not in todo:
                done += self._guarded(service, partial(self._drop_old_roles, server, service))
        return done

    def _guarded(self, service: str, step: Callable[[], list[str]]) -> list[str]:
        try:
            done = step()
        except TemporaryError:
            raise  # the server: the whole pass waits
        except PaasportError as err:
            if self._said.get(service) != str(err):
                self._said[service] = str(err)
                log.error("%s: postgres add-on: %s", service, err)
                addons.record(
                    self.events,
                    self.system,
                    service,
                    "error",
                    f"postgres add-on: {err}",
                    "failed",
                    error=str(err),
                )
            return []
        self._said.pop(service, None)
        return done

    def _provision(self, server: addons.AddonServer, service: str) -> list[str]:
        check = partial(addons.still_asked, self.system, service)
        creds = addons.provision(self.system, server, self.events, service, check=check)
        if creds is None:
            return []
        log.info("%s: postgres add-on: database %s, role %s", service, creds.database, creds.user)
        return [f"provisioned {service}"]

    def _drop_old_roles(self, server: addons.AddonServer, service: str) -> list[str]:
        cluster = self.system.local_cluster
        index = read_index(self.system.state_dir, cluster, service)
        version = index[POSTGRES_USER_SECRET].version
        current = (addons.stored_credentials(self.system, service) or {}).get("PGUSER")
        try:
            roles = server.admin.info(service, cluster).login_roles
        except NotFoundError:
            return []  # the next check of the databases provisions it again
        old = [r for r in roles[:-1] if r != current]
        if old:
            desired = self.store.service_desired(service)
            configs = dict(desired.instances) if desired else {}
            versions = self.engine.list_app_versions(service)
            why = old_credentials_in_use(configs, index, versions, self.desired_hash)
            if why is not None:
                log.debug("%s: keeping role(s) %s: %s", service, ", ".join(old), why)
                return []
        done = []
        for role in old:
            if not server.admin.drop_role_if_unused(role):
                log.debug("%s: role %s still has sessions", service, role)
                continue
            done.append(f"dropped role {role} of {service}")
            addons.record(
                self.events,
                self.system,
                service,
                "info",
                f"postgres add-on: old role {role} dropped (no task or session uses it)",
                "role_dropped",
                role=role,
                server=server.label,
                database=database_name(service, cluster),
            )
        if len(done) == len(old):
            self._roles_checked[service] = version
        return done
