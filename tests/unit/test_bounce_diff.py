"""The plan of ``paasport diff`` (bounce.diff), as case tables: which change an instance sees,
the field-level diff of two merged configs, the estimate from past bounces, the room check and
two revisions of soa-configs."""

from __future__ import annotations

from typing import Any

import pytest

from paasport.bounce.actions import CreateAppVersion, DrainTask, KillTask
from paasport.bounce.desired import desired_app, hash_of, version_document
from paasport.bounce.diff import (
    FieldChange,
    Headroom,
    InstanceFacts,
    Revision,
    bounce_durations,
    estimate,
    field_changes,
    flatten,
    plan_instance,
    plan_revisions,
)
from paasport.bounce.plan import hold_old_tasks, ramp_anchor, ramp_share
from paasport.types import AppSpec, AppVersion, DeploymentState, InstanceConfig, Task

SHA1, SHA2 = "1" * 40, "2" * 40


def config(**kw: Any) -> InstanceConfig:
    base: dict[str, Any] = dict(
        service="web", instance="main", cluster="c1", deploy_group="c1.main", instances=3,
        cpus=0.5, mem=256, env={"GREETING": "hello"},
    )  # fmt: skip
    base.update(kw)
    return InstanceConfig(**base)


def deployment(sha: str = SHA1, **kw: Any) -> DeploymentState:
    return DeploymentState(f"services-web:paasta-{sha}", sha, **kw)


def running(spec: AppSpec, n: int, *, live: bool = True) -> AppVersion:
    tasks = tuple(
        Task(f"{spec.config_hash}-{i}", "web", "main", "c1", spec.config_hash, spec.git_sha,
             "running" if live else "exited", health="healthy")
        for i in range(n)
    )  # fmt: skip
    return AppVersion("web", "main", "c1", spec.config_hash, spec.git_sha, spec.image, tasks)


def facts(
    now: InstanceConfig | None,
    state: DeploymentState | None,
    observed: list[AppVersion],
    known: dict[str, dict[str, Any]] | None = None,
    **kw: Any,
) -> InstanceFacts:
    desired = desired_app(now, state) if now and state else None
    doc = version_document(now, state) if now and state else None
    return InstanceFacts("web", "main", "c1", desired, doc, observed, known or {}, **kw)


OLD = config()
OLD_SPEC = desired_app(OLD, deployment())
OLD_DOC = version_document(OLD, deployment())


@pytest.mark.parametrize(
    ("case", "change", "summary"),
    [
        pytest.param(facts(OLD, deployment(), [running(OLD_SPEC, 3)]), "none", "up to date",
                     id="the desired version runs: nothing"),
        pytest.param(facts(OLD, deployment(), [running(OLD_SPEC, 2)]), "scale",
                     "scales 2 -> 3, no bounce", id="fewer tasks: scale, no bounce"),
        pytest.param(facts(config(instances=1), deployment(), [running(OLD_SPEC, 3)]), "scale",
                     "scales 3 -> 1, no bounce", id="instances is not in the hash"),
        pytest.param(facts(OLD, deployment(), []), "start",
                     f"starts 3 task(s) of git {SHA1[:8]}", id="nothing runs yet"),
        pytest.param(facts(OLD, deployment(desired_state="stop"), [running(OLD_SPEC, 3)]),
                     "stop", "desired_state stop: 3 task(s) stop, no bounce", id="stopped"),
        pytest.param(facts(OLD, None, [running(OLD_SPEC, 3)]), "not deployed",
                     "not marked for deployment: deployd leaves it alone", id="never marked"),
        pytest.param(facts(None, None, [running(OLD_SPEC, 3)], configured=False), "remove",
                     "removed from soa-configs: 3 task(s) stop", id="removed from the configs"),
        pytest.param(
            facts(config(env={"GREETING": "hola"}), deployment(), [running(OLD_SPEC, 3)],
                  {OLD_SPEC.config_hash: OLD_DOC}),
            "bounce", "bounces: env.GREETING changed", id="an env change bounces",
        ),
        pytest.param(
            facts(OLD, deployment(SHA2), [running(OLD_SPEC, 3)], {OLD_SPEC.config_hash: OLD_DOC}),
            "bounce", f"bounces: git {SHA1[:8]} -> {SHA2[:8]}; image changed",
            id="a new sha: the image and git_sha move",
        ),
        pytest.param(
            facts(config(env={"GREETING": "hola"}), deployment(), [running(OLD_SPEC, 3)]),
            "bounce",
            f"bounces: config {OLD_SPEC.config_hash[:8]} -> "
            f"{desired_app(config(env={'GREETING': 'hola'}), deployment()).config_hash[:8]} "
            "(the running version's config was not recorded)",
            id="an old version without a recorded config: hashes only",
        ),
        pytest.param(
            facts(config(env={"GREETING": "hola"}), deployment(),
                  [running(OLD_SPEC, 2),
                   running(desired_app(config(env={"GREETING": "hola"}), deployment()), 1)]),
            "bouncing", f"bouncing to git {SHA1[:8]} config "
            f"{desired_app(config(env={'GREETING': 'hola'}), deployment()).config_hash[:8]}: "
            "1/3 new task(s) up, 2 old left",
            id="a bounce under way",
        ),
        pytest.param(facts(OLD, deployment(), [running(OLD_SPEC, 3, live=False)]), "start",
                     f"starts 3 task(s) of git {SHA1[:8]}", id="only corpses: a start"),
    ],
)  # fmt: skip
def test_what_an_instance_would_do(case: InstanceFacts, change: str, summary: str) -> None:
    plan = plan_instance(case)
    assert (plan.change, plan.summary) == (change, summary)


def test_a_bounce_says_what_moves_and_how_many_tasks() -> None:
    new = config(env={"GREETING": "hola", "EXTRA": "1"}, cpus=1)
    plan = plan_instance(
        facts(
            new,
            deployment(SHA2),
            [running(OLD_SPEC, 3)],
            {OLD_SPEC.config_hash: OLD_DOC},
            method="crossover",
            margin=0.5,
            past_bounces=[40, 10, 12, 11, 13, 30],
        )
    )
    lines = [c.line() for c in plan.changes]
    assert lines == [
        "cpus: 0.5 -> 1",
        'env.EXTRA: (unset) -> "1"',
        'env.GREETING: "hello" -> "hola"',
        f'git_sha: "{SHA1}" -> "{SHA2}"',
        f'image: "services-web:paasta-{SHA1}" -> "services-web:paasta-{SHA2}"',
    ]
    assert (plan.sha_from, plan.sha_to) == (SHA1, SHA2)
    assert (plan.tasks_start, plan.tasks_stop, plan.method, plan.margin) == (3, 3, "crossover", 0.5)
    assert (plan.estimate_seconds, plan.estimate_from) == (12.0, 5)  # the newest 5's median
    assert plan.to_json()["changes"][1] == {"path": "env.EXTRA", "new": "1"}


@pytest.mark.parametrize(
    ("method", "hosts", "needed", "fits", "ok"),
    [
        pytest.param("crossover", [Headroom("h1", 2, 4096)], 3, 4, True, id="4 fit by cpu"),
        pytest.param("crossover", [Headroom("h1", 1, 600)], 3, 2, False, id="mem: 2 fit"),
        pytest.param("downthenup", [Headroom("h1", 0, 0)], 0, 0, True,
                     id="down then up frees the old tasks first"),
        pytest.param("crossover", [Headroom("h1", 8, 8192, schedulable=False),
                                   Headroom("h2", 1, 8192)], 3, 2, False,
                     id="a drained host takes none"),
    ],
)  # fmt: skip
def test_the_room_check(
    method: str, hosts: list[Headroom], needed: int, fits: int, ok: bool
) -> None:
    plan = plan_instance(
        facts(
            config(env={"GREETING": "hola"}),
            deployment(),
            [running(OLD_SPEC, 3)],
            method=method,
            headroom=hosts,
        )
    )
    assert plan.room is not None
    assert (plan.room.needed, plan.room.fits, plan.room.ok) == (needed, fits, ok)


def test_no_capacity_reading_is_no_room_check() -> None:
    plan = plan_instance(facts(config(env={"A": "b"}), deployment(), [running(OLD_SPEC, 3)]))
    assert plan.room is None


@pytest.mark.parametrize(
    ("old", "new", "lines"),
    [
        pytest.param({"a": 1}, {"a": 1}, [], id="same"),
        pytest.param({"config": {"env": {"A": "1"}}}, {"config": {"env": {}}},
                     ['env.A: "1" -> (unset)'], id="a removed env var"),
        pytest.param({"config": {"healthcheck": {"path": "/"}}},
                     {"config": {"healthcheck": {"path": "/ok"}}},
                     ['healthcheck.path: "/" -> "/ok"'], id="nested"),
        pytest.param({"config": {"args": ["a"]}}, {"config": {"args": ["a", "b"]}},
                     ['args: ["a"] -> ["a", "b"]'], id="a list is one leaf"),
        pytest.param({"recipe": "v1", "env": {"PAASTA_GIT_SHA": "1"}},
                     {"recipe": "v2", "env": {"PAASTA_GIT_SHA": "2"}}, [],
                     id="the recipe and the derived container env are not fields"),
        pytest.param({"env": {"PAASTA_MONITORING_TEAM": "a"}, "config": {"env": {}}},
                     {"env": {"PAASTA_MONITORING_TEAM": "b"}, "config": {"env": {}}},
                     ['container_env.PAASTA_MONITORING_TEAM: "a" -> "b"'],
                     id="but the team, which reaches the container only so, is"),
    ],
)  # fmt: skip
def test_field_changes(old: dict[str, Any], new: dict[str, Any], lines: list[str]) -> None:
    assert [c.line() for c in field_changes(old, new)] == lines


def test_flatten_and_a_change_as_json() -> None:
    assert flatten({"a": {"b": {"c": 1}, "d": {}}, "e": [1]}) == {"a.b.c": 1, "e": [1]}
    assert FieldChange("x", None, 2, old_set=False).to_json() == {"path": "x", "new": 2}


@pytest.mark.parametrize(
    ("events", "durations"),
    [
        pytest.param([], [], id="none"),
        pytest.param([(10, "crossover bounce to X started", "a"),
                      (25, "bounce to X finished", "a")], [15], id="one"),
        pytest.param([(10, "b started", "a"), (12, "b started", "b"),
                      (30, "b finished", "b")], [20], id="superseded: from the first start"),
        pytest.param([(30, "b finished", "a")], [], id="a finish without its start"),
        pytest.param([(40, "b finished", "b"), (10, "b started", "a"), (20, "b finished", "a"),
                      (30, "b started", "b")], [10, 10], id="out of order: sorted by time"),
    ],
)  # fmt: skip
def test_bounce_durations(events: list[tuple[float, str, str]], durations: list[float]) -> None:
    assert bounce_durations(events) == durations


def test_estimate() -> None:
    assert estimate([]) == (None, 0)
    assert estimate([5, 7]) == (6.0, 2)


def revision(c: InstanceConfig, state: DeploymentState | None = None) -> Revision:
    state = state or deployment()
    return Revision(desired_app(c, state), version_document(c, state), c.bounce_method)


@pytest.mark.parametrize(
    ("old", "new", "change", "summary"),
    [
        pytest.param(revision(OLD), revision(OLD), "none", "unchanged", id="unchanged"),
        pytest.param(revision(OLD), revision(config(instances=5)), "scale",
                     "scales 3 -> 5, no bounce", id="scaling"),
        pytest.param(revision(OLD), revision(config(env={"GREETING": "hola"})), "bounce",
                     "bounces: env.GREETING changed", id="env"),
        pytest.param(None, revision(OLD), "start", f"added: starts 3 task(s) of git {SHA1[:8]}",
                     id="added"),
        pytest.param(revision(OLD), None, "remove", "removed: 3 task(s) stop", id="removed"),
        pytest.param(revision(OLD), Revision(None, None), "not deployed",
                     "not marked for deployment", id="not deployed"),
    ],
)  # fmt: skip
def test_two_revisions(
    old: Revision | None, new: Revision | None, change: str, summary: str
) -> None:
    plan = plan_revisions("web", "main", "c1", old, new)
    assert (plan.change, plan.summary) == (change, summary)


def test_the_hash_is_the_documents() -> None:
    assert hash_of(OLD_DOC) == OLD_SPEC.config_hash


@pytest.mark.parametrize(
    ("ramp", "since", "now", "share"),
    [
        pytest.param((), 0.0, 5.0, None, id="no ramp"),
        pytest.param((10, 50, 100), None, 5.0, None, id="no new task yet"),
        pytest.param((10, 50, 100), 100.0, 100.0, 10.0, id="step 0"),
        pytest.param((10, 50, 100), 100.0, 129.9, 10.0, id="still step 0"),
        pytest.param((10, 50, 100), 100.0, 130.0, 50.0, id="step 1"),
        pytest.param((10, 50, 100), 100.0, 160.0, None, id="100: the ramp is over"),
        pytest.param((10, 50), 100.0, 160.0, None, id="past the last step: over"),
        pytest.param((10, 50), 100.0, 90.0, 10.0, id="a clock behind the start: step 0"),
    ],
)  # fmt: skip
def test_ramp_share(
    ramp: tuple[float, ...], since: float | None, now: float, share: float | None
) -> None:
    assert ramp_share(ramp, 30.0, since, now) == share


def test_a_ramp_holds_the_old_live_tasks_only() -> None:
    new = desired_app(config(env={"GREETING": "hola"}), deployment())
    old = running(OLD_SPEC, 2)
    dead = running(OLD_SPEC, 1, live=False).tasks[0]
    actions = (
        DrainTask(old.tasks[0]), KillTask(old.tasks[1], reason="old task (crossover bounce)"),
        KillTask(dead, reason="task exited"), CreateAppVersion(new, 3),
    )  # fmt: skip
    assert hold_old_tasks(actions, new) == (actions[2], actions[3])
    assert ramp_anchor([old], OLD_SPEC.config_hash) is None  # no start time known
