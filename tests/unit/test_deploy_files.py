"""deployments.json read/write (atomic, only on change, mtime cache) and image naming."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from paasport.deploy import deployments as dep
from paasport.deploy.git import is_local_url, resolve_git_url
from paasport.deploy.images import base_images, image_name, split_image
from paasport.errors import ConfigError
from paasport.types import DeploymentState

DOC = {
    "v1": {},
    "v2": {
        "deployments": {
            "prod": {
                "docker_image": "services-web:paasta-aaaa",
                "git_sha": "aaaa",
                "image_version": None,
            },
            "canary": {
                "docker_image": "services-web:paasta-bbbb-v2",
                "git_sha": "bbbb",
                "image_version": "v2",
            },
        },
        "controls": {
            "web:local.main": {"desired_state": "start", "force_bounce": None},
            "web:local.worker": {"desired_state": "stop", "force_bounce": "20240102T000000"},
        },
    },
}


@pytest.fixture
def soa(tmp_path: Path) -> Path:
    (tmp_path / "web").mkdir()
    return tmp_path


@pytest.mark.parametrize(
    ("cluster", "instance", "group", "expect"),
    [
        ("local", "main", "prod", DeploymentState("services-web:paasta-aaaa", "aaaa")),
        (
            "local",
            "worker",
            "prod",
            DeploymentState("services-web:paasta-aaaa", "aaaa", None, "stop", "20240102T000000"),
        ),
        ("local", "canary", "canary", DeploymentState("services-web:paasta-bbbb-v2", "bbbb", "v2")),
        ("local", "main", "never-marked", None),
    ],
)
def test_state_for(
    soa: Path, cluster: str, instance: str, group: str, expect: DeploymentState | None
) -> None:
    dep.write_deployments(soa, "web", DOC)
    loaded = dep.read_deployments(soa, "web")
    assert loaded is not None
    assert loaded.state_for(cluster, instance, group) == expect


def test_missing_file_means_not_deployed(soa: Path) -> None:
    assert dep.read_deployments(soa, "web") is None


def test_write_only_on_change_and_stable_bytes(soa: Path) -> None:
    assert dep.write_deployments(soa, "web", DOC) is True
    path = soa / "web" / "deployments.json"
    first = path.read_bytes()
    inode = path.stat().st_ino
    assert dep.write_deployments(soa, "web", json.loads(json.dumps(DOC))) is False
    assert path.stat().st_ino == inode  # untouched, not rewritten
    assert path.read_bytes() == first
    assert first.endswith(b"}\n") and json.loads(first) == DOC
    assert [p.name for p in (soa / "web").iterdir()] == ["deployments.json"]  # no temp files left


def test_read_is_cached_until_the_file_changes(soa: Path) -> None:
    dep.write_deployments(soa, "web", DOC)
    first = dep.read_deployments(soa, "web")
    assert dep.read_deployments(soa, "web") is first
    changed = json.loads(json.dumps(DOC))
    changed["v2"]["deployments"]["prod"]["git_sha"] = "cccc"
    dep.write_deployments(soa, "web", changed)
    again = dep.read_deployments(soa, "web")
    assert again is not first and again is not None
    assert again.deployments["prod"]["git_sha"] == "cccc"


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (b"{not json", ":1: invalid JSON: Expecting property name enclosed in double quotes"),
        (b'{"v1": {}}', 'expected a "v2" object, found none'),
        (b'{"v2": {"deployments": [], "controls": {}}}', "v2.deployments: expected an object"),
        (b'{"v2": {"controls": {"x": 1}}}', "v2.controls: expected an object of objects"),
        (
            b'{"v2": {"deployments": {"prod": {"git_sha": "a"}}}}',
            "v2.deployments.prod: expected docker_image (strings) (regenerate it: paasport "
            "generate-deployments -s web)",
        ),
        (b"\x80abc", "not a JSON text file"),
        (b"[" * 100_000, ":1: invalid JSON: nested too deeply"),
        (b'{"v2": ' + b"1" * 5000 + b"}", ":1: invalid JSON: Exceeds the limit"),
    ],
)
def test_malformed_file_names_the_file(soa: Path, content: bytes, message: str) -> None:
    path = soa / "web" / "deployments.json"
    path.write_bytes(content)
    os.utime(path, ns=(1, 1))
    with pytest.raises(ConfigError) as err:
        dep.read_deployments(soa, "web")
    assert str(path) in str(err.value) and message in str(err.value)


@pytest.mark.parametrize(
    ("service", "sha", "registry", "iv", "expect"),
    [
        ("web", "abc123", None, None, "services-web:paasta-abc123"),
        ("web", "abc123", "127.0.0.1:5000", None, "127.0.0.1:5000/services-web:paasta-abc123"),
        ("web", "abc123", "reg.example/", "v2", "reg.example/services-web:paasta-abc123-v2"),
    ],
)
def test_image_name(
    service: str, sha: str, registry: str | None, iv: str | None, expect: str
) -> None:
    assert image_name(service, sha, registry, iv) == expect


@pytest.mark.parametrize(
    ("name", "expect"),
    [
        ("127.0.0.1:5000/services-web:paasta-abc", ("127.0.0.1:5000/services-web", "paasta-abc")),
        ("127.0.0.1:5000/services-web", ("127.0.0.1:5000/services-web", "latest")),
        ("services-web:paasta-abc", ("services-web", "paasta-abc")),
    ],
)
def test_split_image(name: str, expect: tuple[str, str]) -> None:
    assert split_image(name) == expect


@pytest.mark.parametrize(
    ("dockerfile", "expect"),
    [
        ("FROM scratch\nCOPY busybox /bin/busybox\n", []),
        (
            "from debian:12 AS build\nRUN make\nFROM scratch\nCOPY --from=build /a /a\n",
            ["debian:12"],
        ),
        ("FROM --platform=linux/amd64 base:1 as b\nFROM b\n", ["base:1"]),
        ("ARG BASE=x\nFROM $BASE\n", []),
    ],
)
def test_base_images(dockerfile: str, expect: list[str]) -> None:
    assert base_images(dockerfile) == expect


@pytest.mark.parametrize(
    ("url", "local", "resolved"),
    [
        ("../../repos/web", True, "/soa/repos/web"),
        ("/srv/git/web", True, "/srv/git/web"),
        ("file:///srv/git/web.git", False, "file:///srv/git/web.git"),
        ("git@github.com:org/web.git", False, "git@github.com:org/web.git"),
        ("host:web.git", False, "host:web.git"),
        ("https://git.example/web.git", False, "https://git.example/web.git"),
    ],
)
def test_git_url_resolution(url: str, local: bool, resolved: str) -> None:
    assert is_local_url(url) is local
    assert resolve_git_url(url, Path("/soa/web/sub")) == resolved
