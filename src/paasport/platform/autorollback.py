"""The auto-rollback guard: watches each armed deploy of this host's cluster for its window and
rolls the deploy group back by itself when ``monitoring.rollback.judge`` says the new version is
bad: PaaSTA's rollback marker on the bad sha, a deploy tag on the previous good one (through
``platform.mutations.rollback``, like ``paasport rollback``), and a ``deploy`` event per
instance with the evidence, which the ``deploy_failed`` check turns into an alert to the team.

A deploy is armed by deploy.yaml (``auto_rollback: true`` on its step; ``auto_certify_delay`` is
the window, 600 s by default) or by ``mark-for-deployment --auto-rollback`` /
``wait-for-deployment --auto-rollback`` (the mark event says so). A rollback is never judged
itself, and the previous good sha is the newest one the group ran that carries no rollback
marker. ``paasport up`` runs it in a thread; every pass is bounded and an error is logged, the
next pass tries again.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from paasport.config.system import SystemConfig
from paasport.deploy import tags, workflow
from paasport.deploy.git import GitRepo
from paasport.discovery.haproxy_stats import ServerStat
from paasport.engine.base import Engine
from paasport.errors import PaasportError
from paasport.monitoring.events import DeployData, Event, EventKind, EventLog
from paasport.monitoring.rollback import (
    CrashSeen,
    ErrorCounts,
    HealthFailure,
    Signals,
    Verdict,
    error_verdict,
    judge,
    patience_seconds,
)
from paasport.platform import mutations
from paasport.platform.passes import every
from paasport.reconcile.store import DesiredStore
from paasport.types import AppVersion, InstanceConfig, RollbackPolicy

log = logging.getLogger("paasport.autorollback")

ACTOR = mutations.Actor("paasport auto-rollback")
ARMED_BY_MARK_SECONDS = 86400.0  # a --auto-rollback mark older than this arms nothing
INTERVAL_SECONDS = 2.0

Stats = Callable[[], Sequence[ServerStat]]
WithHealth = Callable[[Sequence[AppVersion]], Sequence[AppVersion]]


@dataclass
class _Watch:
    """One recent deploy: (service, group, sha) from ``start``; what clients saw since, and
    the last comparison said (None: not enough requests yet)."""

    start: float
    new: ErrorCounts = field(default_factory=ErrorCounts)
    old: ErrorCounts = field(default_factory=ErrorCounts)
    said_worse: bool | None = None


def newest_mark(marks: Iterable[Event], group: str, sha: str) -> Event | None:
    """The newest mark of ``group`` at ``sha`` (a deploy, a rollback, an arming). Pure."""
    mine = (
        m for m in marks if m.data.get("deploy_group") == group and m.data.get("git_sha") == sha
    )
    return max(mine, key=lambda m: m.time, default=None)


def is_rollback(mark: Event | None) -> bool:
    return mark is not None and mark.data.get("action") == "rollback"


def armed_policy(
    marks: Iterable[Event], group: str, sha: str, configured: RollbackPolicy | None
) -> tuple[RollbackPolicy | None, float | None]:
    """(the policy, the mark's time) of the newest mark of ``group`` at ``sha``: deploy.yaml's
    policy, else the mark's ``--auto-rollback``; none for a rollback (never judged). Pure."""
    newest = newest_mark(marks, group, sha)
    at = newest.time if newest is not None else None
    if newest is not None and is_rollback(newest):
        return None, at
    if configured is not None:
        return configured, at
    if newest is not None and newest.data.get("auto_rollback"):
        window = newest.data.get("auto_rollback_window")
        policy = (
            RollbackPolicy(window_seconds=float(window))
            if isinstance(window, int | float) and window > 0
            else RollbackPolicy()
        )
        return policy, at
    return None, at


def good_sha(refs: Mapping[str, str], group: str, bad: str) -> str | None:
    """The newest sha the group ran before ``bad`` that no group was rolled back from. Pure."""
    for tag in workflow.deployed_commits(refs, group):
        if tag.sha != bad and not tags.rollback_marks(refs, tag.sha):
            return tag.sha
    return None


class AutoRollback:
    """See the module's docstring. ``stats`` reads this host's HAProxy (None: no proxy)."""

    def __init__(
        self,
        system: SystemConfig,
        store: DesiredStore,
        engine: Engine,
        events: EventLog,
        *,
        with_health: WithHealth | None = None,
        stats: Stats | None = None,
        clock: Callable[[], float] = time.time,
        interval: float = INTERVAL_SECONDS,
        may_act: Callable[[], bool] = lambda: True,
    ) -> None:
        self.system = system
        self.store = store
        self.engine = engine
        self.events = events
        self.with_health = with_health
        self.stats = stats
        self.clock = clock
        self.interval = interval
        self.may_act = may_act  # a standby deployd (the cluster lock elsewhere) only watches
        self._watches: dict[tuple[str, str, str], _Watch] = {}
        self._done: set[tuple[str, str, str]] = set()
        self._unhealthy_since: dict[str, float] = {}
        self._counters: dict[tuple[str, str], tuple[str, int, int]] = {}

    def run_forever(self, stop: threading.Event) -> None:
        every(self.interval, stop, self.pass_once, "auto-rollback guard", log)

    # ---- one pass ------------------------------------------------------------------------

    def pass_once(self) -> list[Verdict]:
        if not self.may_act():  # a standby deployd: the active one watches (and says) it all
            self._watches.clear()
            return []
        now = self.clock()
        armed = self._armed(now)
        if not armed:
            self._watches.clear()
            return []
        deltas = self._proxy_deltas()
        acted = []
        for (service, group, sha), (policy, configs, acting) in sorted(armed.items()):
            watch = self._watches[(service, group, sha)]
            versions = tuple(self.engine.list_app_versions(service))
            mine = [v for v in versions if (v.service, v.instance) in
                    {(c.service, c.instance) for c in configs}]  # fmt: skip
            self._count(watch, configs, mine, sha, deltas)
            signals = Signals(
                crashes=self._crashes(service, configs, sha, watch.start),
                health=self._health(service, configs, sha, watch.start, mine, now),
                new=watch.new,
                old=watch.old if watch.old.requests else None,
            )
            canary = any(c.canary_weight_percent for c in configs)
            subject, others = ("canary", "the rest") if canary else ("new version",
                                                                     "the old version")  # fmt: skip
            self._say_comparison(service, group, sha, configs, watch, signals, policy, canary, now)
            if not acting:
                continue  # not armed: compared and said, never rolled back
            verdict = judge(signals, policy, subject, others)
            log.debug(
                "%s %s at %s: %d crash(es), %d health failure(s), new %s, old %s: %s",
                service, group, sha[:8], len(signals.crashes), len(signals.health),
                watch.new.line(), watch.old.line(), verdict.message if verdict else "fine",
            )  # fmt: skip
            if verdict is not None:
                self._roll_back(service, group, sha, verdict, configs, now)
                acted.append(verdict)
        return acted

    def _armed(
        self, now: float
    ) -> dict[tuple[str, str, str], tuple[RollbackPolicy, list[InstanceConfig], bool]]:
        """Every deploy of this cluster within its window, with its policy, its instances and
        whether it is armed (a deploy that is not is watched for the default window and its
        errors compared with the rest's, but never rolled back)."""
        out: dict[tuple[str, str, str], tuple[RollbackPolicy, list[InstanceConfig], bool]] = {}
        by_group: dict[tuple[str, str], list[InstanceConfig]] = {}
        for config in self.store.instances():
            by_group.setdefault((config.service, config.deploy_group), []).append(config)
        marks: list[Event] | None = None
        for (service, group), configs in by_group.items():
            state = self.store.deployment((service, configs[0].instance))
            if state is None or (service, group, state.git_sha) in self._done:
                continue
            desired = self.store.service_desired(service)
            configured = desired.auto_rollback.get(group) if desired else None
            if marks is None:
                marks = self.events.query(since=now - ARMED_BY_MARK_SECONDS, kinds=("mark",))
            mine = [m for m in marks if m.service == service]
            policy, marked_at = armed_policy(mine, group, state.git_sha, configured)
            acting = policy is not None
            if policy is None:
                if is_rollback(newest_mark(mine, group, state.git_sha)):
                    continue
                policy = RollbackPolicy()
            key = (service, group, state.git_sha)
            watch = self._watches.get(key)
            start = marked_at or (  # the events are asked once per deploy, not every pass
                watch.start if watch is not None
                else self._first_started(service, configs, state.git_sha, now)
            )  # fmt: skip
            if start is None or now - start > policy.window_seconds:
                continue
            if watch is None or watch.start != start:
                self._watches[key] = _Watch(start)
            out[key] = (policy, configs, acting)
        for key in set(self._watches) - set(out):
            del self._watches[key]
        return out

    def _first_started(
        self, service: str, configs: Sequence[InstanceConfig], sha: str, now: float
    ) -> float | None:
        names = {c.instance for c in configs}
        started = self.events.query(
            service=service, since=now - ARMED_BY_MARK_SECONDS, kinds=("app_version",)
        )
        times = [e.time for e in started
                 if e.instance in names and e.data.get("git_sha") == sha]  # fmt: skip
        return min(times) if times else None

    def _crashes(
        self, service: str, configs: Sequence[InstanceConfig], sha: str, since: float
    ) -> list[CrashSeen]:
        names = {c.instance for c in configs}
        found = self.events.query(service=service, since=since, kinds=("crash", "oom"))
        out = []
        for e in found:
            if e.instance in names and e.data.get("git_sha") == sha:
                lines = e.data.get("last_lines")
                last = str(lines[-1]) if isinstance(lines, list) and lines else ""
                code = e.data.get("exit_code")
                out.append(
                    CrashSeen(e.time, str(e.data.get("task", "")),
                              code if isinstance(code, int) else None, e.kind == "oom", last)
                )  # fmt: skip
        return out

    def _health(
        self,
        service: str,
        configs: Sequence[InstanceConfig],
        sha: str,
        since: float,
        versions: Sequence[AppVersion],
        now: float,
    ) -> list[HealthFailure]:
        names = {c.instance: c for c in configs}
        out = [
            HealthFailure(e.time, str(e.data.get("task", "")), str(e.data.get("detail", "")))
            for e in self.events.query(service=service, since=since, kinds=("unhealthy",))
            if e.instance in names and e.data.get("git_sha") == sha
        ]
        seen = self.with_health(versions) if self.with_health else versions
        live: set[str] = set()
        for version in seen:
            config = names.get(version.instance)
            if config is None or version.git_sha != sha:
                continue
            for task in version.tasks:
                if task.state != "running" or task.health != "unhealthy":
                    continue
                live.add(task.task_id)
                first = self._unhealthy_since.setdefault(task.task_id, now)
                if now - first > patience_seconds(config.healthcheck):
                    out.append(HealthFailure(now, task.name or task.task_id, task.health_detail))
        for task_id in set(self._unhealthy_since) - live:
            del self._unhealthy_since[task_id]
        return out

    def _proxy_deltas(self) -> dict[tuple[str, str], ErrorCounts]:
        """(proxy, ``host:port``) -> what clients saw through it since the last pass (a slot
        given to another task starts from its counters then)."""
        if self.stats is None:
            return {}
        try:
            rows = self.stats()
        except PaasportError:
            return {}
        out: dict[tuple[str, str], ErrorCounts] = {}
        for row in rows:
            key = (row.proxy, row.server)
            before = self._counters.get(key)
            self._counters[key] = (row.addr, row.errors, row.requests)
            if before is None or before[0] != row.addr:
                continue
            errors, requests = row.errors - before[1], row.requests - before[2]
            if errors >= 0 and requests >= 0 and (errors or requests):
                where = (row.proxy, row.addr)
                seen = ErrorCounts(errors, requests, float(row.rtime_ms * requests))
                out[where] = out.get(where, ErrorCounts()) + seen
        return out

    def _count(
        self,
        watch: _Watch,
        configs: Sequence[InstanceConfig],
        versions: Sequence[AppVersion],
        sha: str,
        deltas: Mapping[tuple[str, str], ErrorCounts],
    ) -> None:
        """The new version's tasks' traffic against everything else in their namespaces: the
        old version's tasks in a bounce, the main instance's beside a canary."""
        proxies = {ns for c in configs for ns in c.registrations}
        new = {
            f"{t.host}:{t.port}" for v in versions if v.git_sha == sha for t in v.tasks if t.port
        }
        for (proxy, addr), seen in deltas.items():
            if proxy not in proxies:
                continue
            if addr in new:
                watch.new = watch.new + seen
            else:
                watch.old = watch.old + seen

    def _say_comparison(
        self,
        service: str,
        group: str,
        sha: str,
        configs: Sequence[InstanceConfig],
        watch: _Watch,
        signals: Signals,
        policy: RollbackPolicy,
        canary: bool,
        now: float,
    ) -> None:
        """A ``canary`` event when the comparison first has enough requests, and when it turns."""
        subject = f"canary git {sha[:8]}" if canary else f"new version git {sha[:8]}"
        others = "the rest" if canary else "the old version"
        compared = error_verdict(signals, policy, subject, others)
        if compared is None or compared[0] == watch.said_worse:
            return
        watch.said_worse = compared[0]
        for config in configs:
            self._record(Event(
                time=now, level="warning" if compared[0] else "info", kind=EventKind.CANARY,
                service=service, instance=config.instance, cluster=config.cluster,
                message=compared[1],
                data={"deploy_group": group, "git_sha": sha, "worse": compared[0],
                      "new": {"errors": signals.new.errors, "requests": signals.new.requests},
                      "rest": ({"errors": signals.old.errors, "requests": signals.old.requests}
                               if signals.old else None)},
            ))  # fmt: skip

    # ---- acting --------------------------------------------------------------------------

    def _roll_back(
        self,
        service: str,
        group: str,
        sha: str,
        verdict: Verdict,
        configs: Sequence[InstanceConfig],
        now: float,
    ) -> None:
        key = (service, group, sha)
        self._done.add(key)  # once, whatever happens next (a person takes over)
        desired = self.store.service_desired(service)
        target = desired.target if desired else None
        good: str | None = None
        error = ""
        if target is None:
            error = "its service.yaml names no git_url to tag"
        else:
            try:
                with GitRepo(target.require_git_url()) as repo:
                    good = good_sha(repo.tag_refs(), group, sha)
                if good is None:
                    error = "the group ran no earlier sha that was not rolled back"
                else:
                    mutations.rollback(self.system, target, group, good, ACTOR, force=True)
            except PaasportError as err:
                error = str(err)
        if error:
            message = (
                f"auto-rollback of {group} from {sha[:8]} impossible ({error}): {verdict.message}"
            )
        else:
            assert good is not None
            message = (
                f"auto-rollback: {group} rolled back from {sha[:8]} to {good[:8]}: "
                f"{verdict.message}"
            )
        log.warning("%s: %s", service, message)
        for config in configs:
            data = DeployData(group, sha, "rolled_back", reason=verdict.message).to_json()
            data.update(rolled_back_to=good or "", why=verdict.reason, evidence=verdict.evidence)
            self._record(Event(
                time=now, level="error", kind=EventKind.DEPLOY, service=service,
                instance=config.instance, cluster=config.cluster, message=message, data=data,
            ))  # fmt: skip

    def _record(self, event: Event) -> None:
        try:
            self.events.record(event)
        except PaasportError as err:
            log.warning("cannot record the auto-rollback event: %s", err)
