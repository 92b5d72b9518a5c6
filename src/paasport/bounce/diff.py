"""What deployd would do, before it does it (pure): ``paasport diff`` and
``mark-for-deployment --dry-run``.

``plan_instance`` takes one instance's desired app version (its AppSpec and
``desired.version_document``), the app versions that run, the merged configs recorded for them,
its past bounce durations and the hosts' headroom, and says whether it bounces and why (a
field-level diff of the merged config), which sha it moves to, how many tasks start and stop, an
estimated duration and whether the engine has room. ``view.diff`` gathers the inputs.
"""

from __future__ import annotations

import json
import statistics
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Any, Literal

from paasport.bounce.plan import is_dead
from paasport.types import AppSpec, AppVersion

Change = Literal["none", "bounce", "bouncing", "scale", "start", "stop", "remove", "not deployed"]
CHANGES_THAT_ACT: frozenset[str] = frozenset({"bounce", "bouncing", "scale", "start", "stop",
                                              "remove"})  # fmt: skip
UNSET = "(unset)"  # the value a field has on the side where it is missing
ESTIMATE_FROM = 5  # the newest bounces the estimate is the median of
_IGNORED = ("recipe",)  # of a version document: not a field of the config


@dataclass(frozen=True)
class FieldChange:
    """One leaf of the merged config that differs (``old``/``new`` None: not set there)."""

    path: str
    old: Any = None
    new: Any = None
    old_set: bool = True
    new_set: bool = True

    def line(self) -> str:
        """``env.GREETING: "hello" -> "hola"``."""
        old = _shown(self.old) if self.old_set else UNSET
        new = _shown(self.new) if self.new_set else UNSET
        return f"{self.path}: {old} -> {new}"

    def to_json(self) -> dict[str, Any]:
        out: dict[str, Any] = {"path": self.path}
        if self.old_set:
            out["old"] = self.old
        if self.new_set:
            out["new"] = self.new
        return out


def _shown(value: Any) -> str:
    return json.dumps(value, sort_keys=True, ensure_ascii=False)


def flatten(document: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """``{"env": {"A": "1"}, "x": {}}`` -> ``{"env.A": "1"}``; lists and scalars are leaves."""
    out: dict[str, Any] = {}
    for key, value in document.items():
        path = f"{prefix}{key}"
        if isinstance(value, Mapping):  # an empty one has no leaf: nothing set under it
            out.update(flatten(value, path + "."))
        else:
            out[path] = value
    return out


def _fields(document: Mapping[str, Any]) -> dict[str, Any]:
    """The leaves a person changes: the config's fields at the top (``env.GREETING``, not
    ``config.env.GREETING``), the image and sha beside them; the container env derived from
    both (``env`` of the document, PAASTA_* included) only where it says more than they do."""
    config = document.get("config")
    config = config if isinstance(config, Mapping) else {}
    leaves = flatten({k: v for k, v in document.items() if k not in ("config", "env", *_IGNORED)})
    leaves.update(flatten(config))
    env = config.get("env")
    user_env: Mapping[str, Any] = env if isinstance(env, Mapping) else {}
    container_env = document.get("env")
    if isinstance(container_env, Mapping):
        for name, value in container_env.items():
            if name not in user_env and name.startswith("PAASTA_MONITORING"):
                leaves[f"container_env.{name}"] = value  # the team reaches the container only so
    return leaves


def field_changes(old: Mapping[str, Any], new: Mapping[str, Any]) -> tuple[FieldChange, ...]:
    """Every leaf that differs between two version documents, sorted by path."""
    before, after = _fields(old), _fields(new)
    out = []
    for path in sorted(before.keys() | after.keys()):
        if path in before and path in after:
            if before[path] != after[path]:
                out.append(FieldChange(path, before[path], after[path]))
        elif path in before:
            out.append(FieldChange(path, before[path], None, new_set=False))
        else:
            out.append(FieldChange(path, None, after[path], old_set=False))
    return tuple(out)


@dataclass(frozen=True)
class Headroom:
    """One host's free capacity for new tasks (its size less what tasks reserve)."""

    host: str
    cpus: float
    mem_mb: float
    schedulable: bool = True  # a drained or down host takes no new task

    def fits(self, cpus: float, mem_mb: float) -> int:
        """How many tasks of that size fit here."""
        if not self.schedulable:
            return 0
        by_cpu = int(self.cpus // cpus) if cpus > 0 else 10**6
        by_mem = int(self.mem_mb // mem_mb) if mem_mb > 0 else 10**6
        return max(min(by_cpu, by_mem), 0)

    def to_json(self) -> dict[str, Any]:
        return {"host": self.host, "cpus_free": round(self.cpus, 3),
                "mem_mb_free": round(self.mem_mb, 1), "schedulable": self.schedulable}  # fmt: skip


@dataclass(frozen=True)
class Room:
    """Whether the tasks that start before others stop fit on the hosts."""

    needed: int  # tasks that must fit at once
    fits: int  # how many fit on the hosts' headroom
    hosts: tuple[Headroom, ...] = ()

    @property
    def ok(self) -> bool:
        return self.fits >= self.needed

    def line(self, cpus: float, mem_mb: float) -> str:
        each = f"{cpus:g} cpu / {mem_mb:g} MB each"
        if self.ok:
            return f"room for {self.needed} new task(s) ({each}): {self.fits} fit"
        return f"NO ROOM: {self.needed} new task(s) ({each}) but only {self.fits} fit"

    def to_json(self) -> dict[str, Any]:
        return {"ok": self.ok, "needed": self.needed, "fits": self.fits,
                "hosts": [h.to_json() for h in self.hosts]}  # fmt: skip


@dataclass(frozen=True)
class InstancePlan:
    """What deployd would do with one instance, and why."""

    service: str
    instance: str
    cluster: str
    change: Change
    summary: str
    changes: tuple[FieldChange, ...] = ()
    config_known: bool = True  # the running version's config was recorded (else no field diff)
    sha_from: str | None = None
    sha_to: str | None = None
    hash_from: str | None = None
    hash_to: str | None = None
    method: str = ""
    margin: float = 1.0
    tasks_start: int = 0
    tasks_stop: int = 0
    replicas_from: int = 0
    replicas_to: int = 0
    estimate_seconds: float | None = None
    estimate_from: int = 0  # how many past bounces the estimate is the median of
    room: Room | None = None
    cpus: float = 0.0
    mem_mb: float = 0.0

    @property
    def acts(self) -> bool:
        return self.change in CHANGES_THAT_ACT

    @property
    def bounces(self) -> bool:
        return self.change == "bounce"

    def to_json(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "instance": self.instance,
            "cluster": self.cluster,
            "change": self.change,
            "summary": self.summary,
            "changes": [c.to_json() for c in self.changes],
            "config_known": self.config_known,
            "git_sha_from": self.sha_from,
            "git_sha_to": self.sha_to,
            "config_hash_from": self.hash_from,
            "config_hash_to": self.hash_to,
            "bounce_method": self.method,
            "bounce_margin_factor": self.margin,
            "tasks_start": self.tasks_start,
            "tasks_stop": self.tasks_stop,
            "instances_from": self.replicas_from,
            "instances_to": self.replicas_to,
            "estimate_seconds": self.estimate_seconds,
            "estimate_from_bounces": self.estimate_from,
            "room": self.room.to_json() if self.room else None,
        }


@dataclass(frozen=True)
class InstanceFacts:
    """The inputs of ``plan_instance`` for one instance."""

    service: str
    instance: str
    cluster: str
    desired: AppSpec | None  # None: not marked for deployment, or removed from the configs
    document: Mapping[str, Any] | None  # the desired version's version_document
    observed: Sequence[AppVersion] = ()
    known: Mapping[str, Mapping[str, Any]] = field(default_factory=dict)  # hash -> document
    configured: bool = True  # False: removed from soa-configs
    method: str = "crossover"
    margin: float = 1.0
    past_bounces: Sequence[float] = ()  # durations in seconds, oldest first
    headroom: Sequence[Headroom] | None = None  # None: the engine's capacity is unknown


def _live(versions: Iterable[AppVersion]) -> list[Any]:
    return [t for v in versions for t in v.tasks if not is_dead(t) and not t.draining]


def _serving(versions: Sequence[AppVersion]) -> AppVersion | None:
    """The old version the instance runs most of (its newest on a tie)."""
    with_live = [v for v in versions if _live([v])]
    if not with_live:
        return None
    return max(with_live, key=lambda v: (len(_live([v])), v.created_at))


def estimate(durations: Sequence[float]) -> tuple[float | None, int]:
    """The median of the newest ``ESTIMATE_FROM`` bounce durations, and how many it used."""
    recent = list(durations)[-ESTIMATE_FROM:]
    return (round(statistics.median(recent), 1) if recent else None), len(recent)


def _room(facts: InstanceFacts, start: int, stop: int) -> Room | None:
    if facts.headroom is None or facts.desired is None or start <= 0:
        return None
    # crossover and upthendown start the new tasks before the old ones go; downthenup and
    # brutal free the old tasks' reservations first
    needed = start if facts.method in ("crossover", "upthendown") else max(start - stop, 0)
    d = facts.desired
    fits = sum(h.fits(d.cpus, d.mem) for h in facts.headroom)
    return Room(needed, fits, tuple(facts.headroom))


def plan_instance(facts: InstanceFacts) -> InstancePlan:
    """The plan of one instance (see the module's docstring)."""
    head = InstancePlan(facts.service, facts.instance, facts.cluster, "none", "")
    live = _live(facts.observed)
    desired = facts.desired
    if desired is None:
        if not facts.configured:
            return _stops_all(head, len(live), "remove", "removed from soa-configs")
        return replace(
            head, change="not deployed", replicas_from=len(live),
            summary="not marked for deployment: deployd leaves it alone",
        )  # fmt: skip
    new = [v for v in facts.observed if v.config_hash == desired.config_hash]
    old = [v for v in facts.observed if v.config_hash != desired.config_hash]
    new_live, old_live = _live(new), _live(old)
    head = replace(
        head, sha_to=desired.git_sha, hash_to=desired.config_hash, method=facts.method,
        margin=facts.margin, replicas_to=desired.replicas, cpus=desired.cpus, mem_mb=desired.mem,
    )  # fmt: skip
    if desired.replicas == 0:
        return _stops_all(head, len(live), "stop", "desired_state stop", ", no bounce")
    if not old_live:
        have = len(new_live)
        if have == desired.replicas:
            return replace(head, replicas_from=have, sha_from=desired.git_sha,
                           hash_from=desired.config_hash, summary="up to date")  # fmt: skip
        start = max(desired.replicas - have, 0)
        if have == 0:
            kind: Change = "start"
            what = f"starts {desired.replicas} task(s) of git {desired.git_sha[:8]}"
        else:
            kind, what = "scale", f"scales {have} -> {desired.replicas}, no bounce"
        return replace(
            head, change=kind, summary=what, replicas_from=have,
            sha_from=desired.git_sha if have else None,
            hash_from=desired.config_hash if have else None,
            tasks_start=start, tasks_stop=max(have - desired.replicas, 0),
            room=_room(facts, start, 0),
        )  # fmt: skip
    serving = _serving(old)
    assert serving is not None  # old_live is not empty
    seconds, basis = estimate(facts.past_bounces)
    start = max(desired.replicas - len(new_live), 0)
    known = facts.known.get(serving.config_hash)
    changes = field_changes(known, facts.document) if known and facts.document else ()
    if new:  # the new version runs already: a bounce under way
        kind = "bouncing"
        summary = (
            f"bouncing to git {desired.git_sha[:8]} config {desired.config_hash[:8]}: "
            f"{len(new_live)}/{desired.replicas} new task(s) up, {len(old_live)} old left"
        )
    else:
        kind, summary = "bounce", _bounce_summary(serving, desired, changes, known is not None)
    return replace(
        head, change=kind, summary=summary, changes=changes, config_known=known is not None,
        sha_from=serving.git_sha, hash_from=serving.config_hash,
        replicas_from=len(old_live) + len(new_live), tasks_start=start, tasks_stop=len(old_live),
        estimate_seconds=seconds, estimate_from=basis, room=_room(facts, start, len(old_live)),
    )  # fmt: skip


def _stops_all(
    head: InstancePlan, live: int, change: Change, why: str, more: str = ""
) -> InstancePlan:
    """Every live task stops (or nothing runs already)."""
    if not live:
        return replace(head, summary=f"{why}; nothing runs")
    return replace(head, change=change, tasks_stop=live, replicas_from=live,
                   summary=f"{why}: {live} task(s) stop{more}")  # fmt: skip


def _bounce_summary(
    serving: AppVersion, desired: AppSpec, changes: Sequence[FieldChange], known: bool
) -> str:
    moves = []
    if serving.git_sha != desired.git_sha:
        moves.append(f"git {serving.git_sha[:8]} -> {desired.git_sha[:8]}")
    if known:
        named = [c.path for c in changes if c.path != "git_sha"]
        if named:
            shown = ", ".join(named[:4]) + (f" and {len(named) - 4} more" if len(named) > 4 else "")
            moves.append(f"{shown} changed")
    else:
        moves.append(
            f"config {serving.config_hash[:8]} -> {desired.config_hash[:8]} (the running "
            "version's config was not recorded)"
        )
    return "bounces: " + "; ".join(moves or [f"config {desired.config_hash[:8]}"])


def bounce_durations(events: Iterable[tuple[float, str, str]]) -> list[float]:
    """Durations of finished bounces, oldest first, from ``(time, message, target)`` of an
    instance's bounce events (``... started`` then ``... finished`` with the same target).
    A bounce superseded before it finished counts from its start to the finish that ended it."""
    started: float | None = None
    out: list[float] = []
    for when, message, _target in sorted(events):
        if message.endswith(" started"):
            started = when if started is None else started
        elif message.endswith(" finished") and started is not None:
            out.append(round(when - started, 3))
            started = None
    return out


@dataclass(frozen=True)
class Revision:
    """One instance as one revision of soa-configs declares it."""

    desired: AppSpec | None  # None: not marked for deployment in that revision
    document: Mapping[str, Any] | None
    method: str = "crossover"
    margin: float = 1.0


def plan_revisions(
    service: str, instance: str, cluster: str, old: Revision | None, new: Revision | None
) -> InstancePlan:
    """What moving from one revision of soa-configs to another does to one instance (``diff
    --against REF``): no engine is asked, so tasks are the declared counts."""
    head = InstancePlan(service, instance, cluster, "none", "")
    if new is None:
        if old is None:
            return replace(head, summary="in neither revision")
        count = old.desired.replicas if old.desired else 0
        return replace(head, change="remove", tasks_stop=count, replicas_from=count,
                       summary=f"removed: {count} task(s) stop")  # fmt: skip
    d = new.desired
    head = replace(head, method=new.method, margin=new.margin)
    if d is None:
        return replace(head, change="not deployed", summary="not marked for deployment")
    head = replace(head, sha_to=d.git_sha, hash_to=d.config_hash, replicas_to=d.replicas,
                   cpus=d.cpus, mem_mb=d.mem)  # fmt: skip
    before = old.desired if old else None
    if before is None:
        what = f"added: starts {d.replicas} task(s) of git {d.git_sha[:8]}"
        return replace(head, change="start", tasks_start=d.replicas, summary=what)
    head = replace(head, sha_from=before.git_sha, hash_from=before.config_hash,
                   replicas_from=before.replicas)  # fmt: skip
    if before.config_hash != d.config_hash:
        assert old is not None
        known = old.document is not None
        changes = field_changes(old.document or {}, new.document or {}) if known else ()
        serving = AppVersion(service, instance, cluster, before.config_hash, before.git_sha, "")
        return replace(
            head, change="bounce", changes=changes, tasks_start=d.replicas,
            tasks_stop=before.replicas, summary=_bounce_summary(serving, d, changes, known),
        )  # fmt: skip
    if before.replicas != d.replicas:
        kind: Change = "stop" if d.replicas == 0 else "scale"
        what = (f"stops its {before.replicas} task(s), no bounce" if kind == "stop"
                else f"scales {before.replicas} -> {d.replicas}, no bounce")  # fmt: skip
        return replace(head, change=kind, summary=what,
                       tasks_start=max(d.replicas - before.replicas, 0),
                       tasks_stop=max(before.replicas - d.replicas, 0))  # fmt: skip
    return replace(head, summary="unchanged")
