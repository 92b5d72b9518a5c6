"""Pure tag parsing/formatting and deployments_from_refs, as case tables (tests/cases/deploy)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from paasport.deploy import tags
from paasport.deploy.deployments import render_deployments

CASES = Path(__file__).parent.parent / "cases" / "deploy"


def _load(name: str) -> list[dict[str, Any]]:
    with open(CASES / name) as fh:
        cases: list[dict[str, Any]] = yaml.load(fh, Loader=yaml.CSafeLoader)
    return cases


PARSE = _load("parse_tags.yaml")
FROM_REFS = _load("deployments_from_refs.yaml")


@pytest.mark.parametrize("case", PARSE, ids=[c["name"] for c in PARSE])
def test_parse_tag(case: dict[str, Any]) -> None:
    deploy = tags.parse_deploy_tag(case["ref"], "sha1")
    control = tags.parse_control_tag(case["ref"], "sha1")
    generic = tags.parse_any_tag(case["ref"], "sha1")
    got_deploy = deploy and {
        "deploy_group": deploy.deploy_group,
        "timestamp": deploy.timestamp,
        "image_version": deploy.image_version,
    }
    got_control = control and {
        "branch": control.branch,
        "timestamp": control.timestamp,
        "state": control.state,
    }
    got_any = generic and {
        "target": generic.target,
        "kind": generic.kind,
        "image_version": generic.image_version,
        "timestamp": generic.timestamp,
    }
    assert (got_deploy, got_control, got_any) == (case["deploy"], case["control"], case["any"])


@pytest.mark.parametrize("case", FROM_REFS, ids=[c["name"] for c in FROM_REFS])
def test_deployments_from_refs(case: dict[str, Any]) -> None:
    doc = tags.deployments_from_refs(case["service"], case["refs"], case["control_branches"])
    assert doc == case["expect"]


@pytest.mark.parametrize("case", FROM_REFS, ids=[c["name"] for c in FROM_REFS])
def test_same_tags_same_bytes_in_any_order(case: dict[str, Any]) -> None:
    refs = case["refs"]
    shuffled = dict(reversed(list(refs.items())))
    branches = dict(reversed(list(case["control_branches"].items())))
    first = render_deployments(
        tags.deployments_from_refs(case["service"], refs, case["control_branches"])
    )
    again = render_deployments(tags.deployments_from_refs(case["service"], shuffled, branches))
    assert first == again


@pytest.mark.parametrize(
    ("group", "stamp", "iv", "state", "deploy_name", "control_name"),
    [
        (
            "prod",
            "20240102T030405",
            None,
            "start",
            "paasta-prod-20240102T030405-deploy",
            "paasta-local.main-20240102T030405-start",
        ),
        (
            "prod.canary",
            "20240102T030405",
            "v2",
            "stop",
            "paasta-prod.canary+v2-20240102T030405-deploy",
            "paasta-local.main-20240102T030405-stop",
        ),
    ],
)
def test_format_round_trips(
    group: str,
    stamp: str,
    iv: str | None,
    state: tags.ControlState,
    deploy_name: str,
    control_name: str,
) -> None:
    name = tags.deploy_tag_name(group, stamp, iv)
    assert name == deploy_name
    parsed = tags.parse_deploy_tag(tags.TAG_PREFIX + name, "s")
    assert parsed is not None
    assert (parsed.deploy_group, parsed.timestamp, parsed.image_version) == (group, stamp, iv)
    control = tags.control_tag_name("local", "main", stamp, state)
    assert control == control_name
    parsed_control = tags.parse_control_tag(tags.TAG_PREFIX + control, "s")
    assert parsed_control is not None
    assert (parsed_control.branch, parsed_control.state) == ("local.main", state)


# 1704164645 = 2024-01-02T03:04:05Z
@pytest.mark.parametrize(
    ("now", "existing", "stamp", "wait"),
    [
        (1704164645.9, [], "20240102T030405", 0.0),
        (1704164645, ["20240101T000000"], "20240102T030405", 0.0),
        (1704164645.25, ["20240102T030405"], None, 0.75),  # same second: wait for the next
        (1704164645, ["20240102T030405", "20240102T030406"], None, 2.0),
        (1704164645, ["20240102T035959"], None, 3355.0),  # a tag ahead of this clock
        (1704164645, ["20231231T235959", "garbage"], "20240102T030405", 0.0),
        (1704067200, ["20231231T235959"], "20240101T000000", 0.0),  # rolls over the year
    ],
)
def test_choose_timestamp_never_leaves_the_present(
    now: float, existing: list[str], stamp: str | None, wait: float
) -> None:
    choice = tags.choose_timestamp(now, existing)
    assert (choice.stamp, choice.wait_seconds) == (stamp, pytest.approx(wait))
    if choice.stamp is not None:
        assert tags.parse_timestamp(choice.stamp).timestamp() <= now


@pytest.mark.parametrize(
    ("value", "ok"),
    [
        ("prod.canary", True),
        ("dev-stage_1", True),
        ("bad group", False),
        ("a+b", False),
        ("", False),
    ],
)
def test_check_deploy_group(value: str, ok: bool) -> None:
    assert (tags.check_deploy_group(value) is None) == ok


def test_latest_deploy_tags_breaks_timestamp_ties_by_name() -> None:
    refs = {
        "refs/tags/paasta-prod-20240101T000000-deploy": "a",
        "refs/tags/paasta-prod+v2-20240101T000000-deploy": "b",
    }
    reordered = dict(reversed(list(refs.items())))
    assert tags.latest_deploy_tags(refs)["prod"].sha == "a"
    assert tags.latest_deploy_tags(reordered)["prod"].sha == "a"


@pytest.mark.parametrize(
    ("refs", "sha", "groups"),
    [
        pytest.param({}, "a" * 40, [], id="no tags"),
        pytest.param(
            {"refs/tags/paasta-prod-20240101T000000-deploy": "a" * 40},
            "a" * 40,
            [],
            id="a deploy tag is no rollback",
        ),
        pytest.param(
            {
                "refs/tags/paasta-prod-20240102T000000-rollback": "a" * 40,
                "refs/tags/paasta-canary+v2-20240101T000000-rollback": "a" * 40,
                "refs/tags/paasta-prod-20240103T000000-rollback": "b" * 40,
            },
            "a" * 40,
            ["canary", "prod"],
            id="only this sha's, oldest first, any group, image_version too",
        ),
        pytest.param(
            {
                "refs/tags/paasta-prod-20240102T000000-rollback": "c" * 40,
                "refs/tags/paasta-prod-20240102T000000-rollback^{}": "a" * 40,
            },
            "a" * 40,
            ["prod"],
            id="an annotated marker peeled to its commit",
        ),
    ],
)
def test_rollback_marks(refs: dict[str, str], sha: str, groups: list[str]) -> None:
    assert [m.target for m in tags.rollback_marks(refs, sha)] == groups
