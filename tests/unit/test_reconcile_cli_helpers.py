"""Tables for the small pure helpers of the reconcile commands: --since parsing, wait's "done"."""

from __future__ import annotations

from dataclasses import replace

import pytest

from paasport.bounce.desired import desired_app
from paasport.cli.logs import parse_since
from paasport.cli.wait import instance_done, mark_problem
from paasport.errors import UsageError
from paasport.types import AppVersion, DeploymentState, InstanceConfig, Task
from paasport.view.diagnosis import InstanceFacts, Verdict
from paasport.view.history import MarkReading
from paasport.view.observe import InstanceView

NOW = 1_000_000.0


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("30s", NOW - 30),
        ("10m", NOW - 600),
        ("2h", NOW - 7200),
        ("1d", NOW - 86400),
        ("45", NOW - 45),
        ("1.5m", NOW - 90),
    ],
)
def test_parse_since(text: str, expected: float) -> None:
    assert parse_since(text, NOW) == expected


def test_parse_since_rejects_nonsense() -> None:
    with pytest.raises(UsageError, match="--since"):
        parse_since("5q", NOW)


CONFIG = InstanceConfig(service="web", cluster="c", instance="main", deploy_group="c.main")
DEP = DeploymentState(docker_image="services-web:paasta-" + "a" * 40, git_sha="a" * 40)
SPEC = desired_app(CONFIG, DEP)
NEW = AppVersion("web", "main", "c", SPEC.config_hash, "a" * 40, SPEC.image)
OLD = AppVersion("web", "main", "c", "old", "b" * 40, "x", tasks=())
OLD_TASK = Task("t-old", "web", "main", "c", "old", "b" * 40, "running")


def view(
    deployment: DeploymentState | None,
    healthy: int,
    versions: tuple[AppVersion, ...],
    why: str = "",
) -> InstanceView:
    facts = InstanceFacts(
        deployed=deployment is not None,
        desired_state="start",
        expected=1,
        running=healthy,
        healthy=healthy,
    )
    return InstanceView(
        CONFIG,
        deployment,
        SPEC if deployment else None,
        versions,
        (),
        None,
        facts,
        Verdict(healthy >= 1, "x", why),
    )


@pytest.mark.parametrize(
    ("v", "commit", "done", "why"),
    [
        (view(DEP, 1, (NEW,)), "aaaa", True, "done"),
        (view(DEP, 1, (NEW,)), "bbbb", False, "deployments.json says aaaaaaaa, not bbbb"),
        (view(None, 0, ()), "aaaa", False, "not marked for deployment yet"),
        (
            view(DEP, 0, (NEW,), why="health check failing on t1: HTTP 500"),
            "aaaa",
            False,
            "health check failing on t1: HTTP 500",
        ),
        (view(DEP, 1, (NEW, replace(OLD, tasks=(OLD_TASK,)))), "aaaa", False, ""),
        (view(replace(DEP, desired_state="stop"), 0, ()), "aaaa", True, "stopped"),
    ],
)
def test_instance_done(v: InstanceView, commit: str, done: bool, why: str) -> None:
    got_done, got_why = instance_done(v, commit)
    assert got_done == done
    assert got_why.startswith(why)


A, B = "a" * 40, "b" * 40


@pytest.mark.parametrize(
    ("marks", "commit", "problem"),
    [
        (MarkReading(True, A, (A,)), "aaaa", None),
        (MarkReading(True, A, (A, B)), A, None),
        (MarkReading(False, why_not="git did not answer"), "cccc", None),  # may still land
        (MarkReading(False), "cccc", None),  # no git_url: deployments.json may still change
        (
            MarkReading(True, A, (A,)),
            "cccc",
            f"web: cccc was never marked for deployment to deploy group c.main, which is "
            f"marked at {A}",
        ),
        (
            MarkReading(True, None, ()),
            "cccc",
            "web: cccc was never marked for deployment to deploy group c.main, which was never "
            "marked at all",
        ),
        (
            MarkReading(True, A, (A, B)),
            "bbbb",
            f"web: deploy group c.main is marked at {A}, not bbbb (marked before, then "
            "replaced: paasport rollback -s web -l c.main -c bbbb)",
        ),
    ],
)
def test_mark_problem(marks: MarkReading, commit: str, problem: str | None) -> None:
    assert mark_problem("web", "c.main", commit, marks) == problem
