"""PaaSTA's deploy/control tag formats and the deployments.json document, as pure functions.

Called by ``deploy.workflow`` (mark, start/stop, rollback, history) and by
``deploy.deployments`` (generate); hands back tag names, parsed tags and plain JSON-able dicts.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Literal

TIMESTAMP_FORMAT = "%Y%m%dT%H%M%S"
TAG_PREFIX = "refs/tags/"
PEELED_SUFFIX = "^{}"

# PaaSTA's regexes (paasta-spec §2.2). A deploy tag's body is "<group>[+<image_version>]".
_DEPLOY_RE = re.compile(r"^refs/tags/paasta-(?P<body>.+)-(?P<tstamp>\d{8}T\d{6})-deploy$")
_CONTROL_RE = re.compile(
    r"^refs/tags/(?:paasta-){0,2}(?P<branch>[a-zA-Z0-9_.-]+)-(?P<force_bounce>[^-]+)"
    r"-(?P<state>start|stop)$"
)
_GENERIC_RE = re.compile(
    r"^refs/tags/(?:paasta-){1,2}(?P<deploy_group>[a-zA-Z0-9._-]+)(?:\+(?P<image_version>.*)){0,1}"
    r"-(?P<tstamp>\d{8}T\d{6})-(?P<tag>.*?)$"
)
DEPLOY_GROUP_RE = re.compile(r"^[a-zA-Z0-9_.-]+$")
_IMAGE_VERSION_RE = re.compile(r"^[a-zA-Z0-9_.]+$")

ControlState = Literal["start", "stop"]


@dataclass(frozen=True, order=True)
class DeployTag:
    """A ``paasta-<group>[+<iv>]-<ts>-deploy`` tag; ordered by (timestamp, ref) = newest last."""

    timestamp: str
    ref: str
    deploy_group: str
    sha: str
    image_version: str | None = None


@dataclass(frozen=True, order=True)
class ControlTag:
    """A ``paasta-<cluster>.<instance>-<ts>-start|stop`` tag; ``branch`` is ``cluster.instance``."""

    timestamp: str
    ref: str
    branch: str
    sha: str
    state: ControlState


def format_timestamp(now: float) -> str:
    """UTC ``YYYYMMDDTHHMMSS`` of a POSIX time."""
    return datetime.fromtimestamp(int(now), tz=UTC).strftime(TIMESTAMP_FORMAT)


def parse_timestamp(stamp: str) -> datetime:
    return datetime.strptime(stamp, TIMESTAMP_FORMAT).replace(tzinfo=UTC)


@dataclass(frozen=True)
class TimestampChoice:
    """The timestamp a new tag takes now, or how long to wait for a second that sorts after
    every existing tag (``stamp`` None). Never a second later than the present."""

    stamp: str | None
    wait_seconds: float = 0.0


def choose_timestamp(now: float, existing: Iterable[str]) -> TimestampChoice:
    """``now``'s second when it sorts after every ``existing`` timestamp of the same kind,
    else wait until one second after the newest of them.

    Bumping the second instead (as paasport once did) pushed concurrent marks' tags up to
    32 s into the future, so a tool tagging "now" afterwards collided or lost.
    """
    stamp = format_timestamp(now)
    newest = max((s for s in existing if _is_timestamp(s)), default=None)
    if newest is None or stamp > newest:
        return TimestampChoice(stamp)
    after = parse_timestamp(newest).timestamp() + 1.0
    return TimestampChoice(None, wait_seconds=max(after - now, 0.001))


def _is_timestamp(stamp: str) -> bool:
    return len(stamp) == 15 and stamp[8] == "T" and stamp[:8].isdigit() and stamp[9:].isdigit()


def deploy_tag_name(deploy_group: str, timestamp: str, image_version: str | None = None) -> str:
    """``paasta-<group>[+<iv>]-<ts>-deploy`` (without ``refs/tags/``)."""
    version = f"+{image_version}" if image_version else ""
    return f"paasta-{deploy_group}{version}-{timestamp}-deploy"


def rollback_tag_name(deploy_group: str, timestamp: str, image_version: str | None = None) -> str:
    """PaaSTA's rollback marker ``paasta-<group>[+<iv>]-<ts>-rollback`` (on the sha left)."""
    version = f"+{image_version}" if image_version else ""
    return f"paasta-{deploy_group}{version}-{timestamp}-rollback"


def rollback_marks(refs: Mapping[str, str], sha: str) -> list[AnyTag]:
    """The rollback markers on ``sha`` (any deploy group), oldest first: a sha some group was
    rolled back from (PaaSTA's ``check-rollback-status`` exits 1 for it). Pure."""
    found = (parse_any_tag(ref, s) for ref, s in peel(refs).items() if s == sha)
    return sorted(
        (t for t in found if t is not None and t.kind == "rollback"), key=lambda t: t.timestamp
    )


def control_tag_name(cluster: str, instance: str, timestamp: str, state: ControlState) -> str:
    """``paasta-<cluster>.<instance>-<ts>-start|stop`` (without ``refs/tags/``)."""
    return f"paasta-{cluster}.{instance}-{timestamp}-{state}"


def check_deploy_group(deploy_group: str) -> str | None:
    """Why ``deploy_group`` cannot be put in a tag name, or None when it can."""
    if not DEPLOY_GROUP_RE.match(deploy_group):
        return f"deploy group {deploy_group!r} must match {DEPLOY_GROUP_RE.pattern}"
    return None


def check_image_version(image_version: str) -> str | None:
    """Why ``image_version`` cannot be put in a tag name, or None when it can."""
    if not _IMAGE_VERSION_RE.match(image_version):
        return f"image version {image_version!r} must match {_IMAGE_VERSION_RE.pattern}"
    return None


def peel(refs: Mapping[str, str]) -> dict[str, str]:
    """ref -> commit sha: an annotated tag's ``^{}`` line (from ls-remote) replaces its object."""
    out: dict[str, str] = {}
    peeled: dict[str, str] = {}
    for ref, sha in refs.items():
        if ref.endswith(PEELED_SUFFIX):
            peeled[ref[: -len(PEELED_SUFFIX)]] = sha
        else:
            out[ref] = sha
    out.update(peeled)
    return out


def parse_deploy_tag(ref: str, sha: str) -> DeployTag | None:
    """A deploy tag, or None. A group never contains ``+``, so the first ``+`` starts the image
    version; ``paasta-paasta-x`` is group ``paasta-x``, as PaaSTA's per-group regex reads it."""
    m = _DEPLOY_RE.match(ref)
    if m is None:
        return None
    group, plus, version = m["body"].partition("+")
    if not group or not DEPLOY_GROUP_RE.match(group):
        return None
    return DeployTag(
        timestamp=m["tstamp"],
        ref=ref,
        deploy_group=group,
        sha=sha,
        image_version=version if plus else None,
    )


def parse_control_tag(ref: str, sha: str) -> ControlTag | None:
    m = _CONTROL_RE.match(ref)
    if m is None:
        return None
    state: ControlState = "start" if m["state"] == "start" else "stop"
    return ControlTag(
        timestamp=m["force_bounce"], ref=ref, branch=m["branch"], sha=sha, state=state
    )


@dataclass(frozen=True)
class AnyTag:
    """PaaSTA's generic CLI parse of any ``paasta-`` tag (deploy, start, stop, rollback, ...)."""

    ref: str
    sha: str
    target: str  # deploy group or cluster.instance
    image_version: str | None
    timestamp: str
    kind: str  # "deploy", "start", "stop", "rollback", ...


def parse_any_tag(ref: str, sha: str) -> AnyTag | None:
    m = _GENERIC_RE.match(ref)
    if m is None:
        return None
    return AnyTag(
        ref=ref,
        sha=sha,
        target=m["deploy_group"],
        image_version=m["image_version"],
        timestamp=m["tstamp"],
        kind=m["tag"],
    )


def deploy_tags(refs: Mapping[str, str]) -> list[DeployTag]:
    """Every deploy tag in ``refs`` (peeled), oldest first."""
    tags = (parse_deploy_tag(ref, sha) for ref, sha in peel(refs).items())
    return sorted(t for t in tags if t is not None)


def control_tags(refs: Mapping[str, str]) -> list[ControlTag]:
    """Every start/stop tag in ``refs`` (peeled), oldest first."""
    tags = (parse_control_tag(ref, sha) for ref, sha in peel(refs).items())
    return sorted(t for t in tags if t is not None)


def latest_deploy_tags(
    refs: Mapping[str, str], deploy_groups: Iterable[str] | None = None
) -> dict[str, DeployTag]:
    """deploy group -> its newest deploy tag (greatest timestamp; ties broken by tag name)."""
    groups = None if deploy_groups is None else set(deploy_groups)
    latest: dict[str, DeployTag] = {}
    for ref, sha in peel(refs).items():
        tag = parse_deploy_tag(ref, sha)
        if tag is None or (groups is not None and tag.deploy_group not in groups):
            continue
        current = latest.get(tag.deploy_group)
        if current is None or tag > current:
            latest[tag.deploy_group] = tag
    return latest


def docker_image_ref(service: str, sha: str, image_version: str | None = None) -> str:
    """The registry-relative image ``services-<service>:paasta-<sha>[-<iv>]`` (deployments.json)."""
    version = f"-{image_version}" if image_version else ""
    return f"services-{service}:paasta-{sha}{version}"


def deployments_from_refs(
    service: str, refs: Mapping[str, str], control_branches: Mapping[str, str]
) -> dict[str, object]:
    """The deployments.json document (v1 + v2, paasta-spec §2.4) as a pure function of the tags.

    ``refs``: ref name -> sha as ``git ls-remote`` lists them (``^{}`` lines peel annotated tags).
    ``control_branches``: ``cluster.instance`` -> deploy group, for every instance of the service.
    """
    peeled = peel(refs)
    groups = set(control_branches.values())
    latest = latest_deploy_tags(peeled, groups)
    controls_by_branch: dict[str, ControlTag] = {}
    for ref, sha in peeled.items():
        tag = parse_control_tag(ref, sha)
        if tag is None or tag.branch not in control_branches:
            continue
        deployed = latest.get(control_branches[tag.branch])
        # Only tags on the currently deployed sha count: a new deploy resets a stop (PaaSTA).
        if deployed is None or deployed.sha != tag.sha:
            continue
        current = controls_by_branch.get(tag.branch)
        if current is None or tag > current:
            controls_by_branch[tag.branch] = tag

    v1: dict[str, object] = {}
    deployments: dict[str, object] = {}
    controls: dict[str, object] = {}
    for group, latest_tag in latest.items():
        deployments[group] = {
            "docker_image": docker_image_ref(service, latest_tag.sha, latest_tag.image_version),
            "git_sha": latest_tag.sha,
            "image_version": latest_tag.image_version,
        }
    for branch, group in control_branches.items():
        deployed = latest.get(group)
        if deployed is None:
            continue
        control = controls_by_branch.get(branch)
        state: ControlState = control.state if control else "start"
        force_bounce = control.timestamp if control else None
        v1[f"{service}:paasta-{branch}"] = {
            # PaaSTA's generator writes the same image, image version included, in v1 and v2.
            "docker_image": docker_image_ref(service, deployed.sha, deployed.image_version),
            "desired_state": state,
            "force_bounce": force_bounce,
        }
        controls[f"{service}:{branch}"] = {"desired_state": state, "force_bounce": force_bounce}
    return {"v1": v1, "v2": {"deployments": deployments, "controls": controls}}
