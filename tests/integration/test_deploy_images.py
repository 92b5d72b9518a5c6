"""cook-image and push-to-registry against the real Docker engine and the real registry."""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from paasport.deploy.git import GitRepo
from paasport.deploy.images import LABEL_BUILD_GIT_SHA, LABEL_BUILD_SERVICE, cook_image, push_image
from paasport.errors import ImageError, UsageError

BUSYBOX = shutil.which("busybox") or "/bin/busybox"
DOCKERFILE = """FROM scratch
COPY busybox /bin/busybox
COPY . /src/
RUN ["/bin/busybox", "sh", "-c", "test -e /src/committed.txt && test ! -e /src/uncommitted.txt"]
CMD ["/bin/busybox", "httpd", "-f", "-p", "8888", "-h", "/src"]
"""


def git(repo: Path, *args: str) -> str:
    out = subprocess.run(
        ["git", "-C", str(repo), *args], capture_output=True, text=True, check=True, timeout=120
    )
    return out.stdout.strip()


def docker(*args: str, check: bool = True) -> str:
    out = subprocess.run(
        ["docker", *args], capture_output=True, text=True, check=False, timeout=120
    )
    if check and out.returncode != 0:
        raise AssertionError(f"docker {' '.join(args)}: {out.stderr}")
    return out.stdout.strip()


@pytest.fixture
def service() -> Iterator[str]:
    name = f"t{uuid.uuid4().hex[:8]}"
    yield name
    ids = docker("image", "ls", "-q", "--filter", f"label={LABEL_BUILD_SERVICE}={name}")
    for image_id in sorted(set(ids.split())):
        docker("image", "rm", "-f", image_id, check=False)


def make_repo(tmp_path: Path, dockerfile: str | None = DOCKERFILE) -> tuple[Path, str]:
    repo = tmp_path / "repo"
    subprocess.run(["git", "init", "-q", "-b", "main", str(repo)], check=True, timeout=120)
    shutil.copy(BUSYBOX, repo / "busybox")
    (repo / "committed.txt").write_text("ok\n")
    if dockerfile is not None:
        (repo / "Dockerfile").write_text(dockerfile)
    git(repo, "add", ".")
    git(repo, "-c", "user.name=dev", "-c", "user.email=dev@example.com", "commit", "-qm", "init")
    (repo / "uncommitted.txt").write_text("must not reach the image\n")
    if dockerfile is not None:  # a build from the working tree would fail
        (repo / "Dockerfile").write_text('FROM scratch\nRUN ["/no/such/binary"]\n')
    return repo, git(repo, "rev-parse", "HEAD")


def test_cook_push_and_pull_back_by_digest(
    tmp_path: Path, service: str, registry_addr: str
) -> None:
    repo, sha = make_repo(tmp_path)
    lines: list[str] = []
    with GitRepo(str(repo)) as r:
        name = cook_image(r, service, sha, registry_addr, progress=lines.append)
    assert name == f"{registry_addr}/services-{service}:paasta-{sha}"
    assert any("Step" in line or "COPY" in line for line in lines)  # progress was shown
    labels = docker("image", "inspect", "--format", "{{json .Config.Labels}}", name)
    assert f'"{LABEL_BUILD_SERVICE}":"{service}"' in labels
    assert f'"{LABEL_BUILD_GIT_SHA}":"{sha}"' in labels

    pushed = push_image(service, sha, registry_addr)
    assert pushed.pushed and pushed.digest and pushed.digest.startswith("sha256:")
    again = push_image(service, sha, registry_addr)
    assert not again.pushed and again.digest == pushed.digest

    image_id = docker("image", "inspect", "--format", "{{.Id}}", name)
    docker("image", "rm", name)
    by_digest = f"{registry_addr}/services-{service}@{pushed.digest}"
    docker("pull", "-q", by_digest)
    assert docker("image", "inspect", "--format", "{{.Id}}", by_digest) == image_id
    docker("image", "rm", by_digest)


def test_cook_from_a_remote_url_without_registry(tmp_path: Path, service: str) -> None:
    repo, sha = make_repo(tmp_path)
    bare = tmp_path / "remote.git"
    subprocess.run(["git", "clone", "-q", "--bare", str(repo), str(bare)], check=True, timeout=120)
    with GitRepo(f"file://{bare}") as r:
        name = cook_image(r, service, sha, None)
    assert name == f"services-{service}:paasta-{sha}"
    assert docker("image", "inspect", "--format", "{{.Id}}", name).startswith("sha256:")
    with pytest.raises(UsageError, match="no docker registry configured"):
        push_image(service, sha, None)


@pytest.mark.parametrize(
    ("dockerfile", "message"),
    [
        (None, "no Dockerfile at the root of"),
        ("FROM paasport-no-such-base:1\nCMD x\n", "never pulls"),
        ('FROM scratch\nRUN ["/bin/false"]\n', "docker build of"),
    ],
)
def test_cook_failures(tmp_path: Path, service: str, dockerfile: str | None, message: str) -> None:
    repo, sha = make_repo(tmp_path, dockerfile)
    with GitRepo(str(repo)) as r, pytest.raises(ImageError, match=message):
        cook_image(r, service, sha, None)
    assert docker("image", "ls", "-q", f"services-{service}") == ""


def test_push_of_an_image_never_cooked(service: str, registry_addr: str) -> None:
    with pytest.raises(ImageError, match="run cook-image"):
        push_image(service, "f" * 40, registry_addr)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@pytest.fixture
def readonly_registry(tmp_path: Path) -> Iterator[str]:
    """A second real registry in read-only maintenance mode: it refuses every push."""
    port = _free_port()
    config = tmp_path / "registry.yml"
    config.write_text(
        "version: 0.1\nlog: {level: error}\n"
        f"storage: {{filesystem: {{rootdirectory: {tmp_path}/data}}, "
        "maintenance: {readonly: {enabled: true}}}\n"
        f"http: {{addr: 127.0.0.1:{port}}}\n"
    )
    proc = subprocess.Popen(
        ["docker-registry", "serve", str(config)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        for _ in range(100):
            try:
                if httpx.get(f"http://127.0.0.1:{port}/v2/", timeout=1).status_code == 200:
                    break
            except httpx.HTTPError:
                time.sleep(0.05)
        yield f"127.0.0.1:{port}"
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def test_push_refused_by_the_registry(tmp_path: Path, service: str, readonly_registry: str) -> None:
    repo, sha = make_repo(tmp_path)
    with GitRepo(str(repo)) as r:
        cook_image(r, service, sha, readonly_registry)
    with pytest.raises(ImageError, match=f"registry {readonly_registry} refused"):
        push_image(service, sha, readonly_registry)


def test_push_to_an_unreachable_registry(service: str) -> None:
    registry = f"127.0.0.1:{_free_port()}"
    with pytest.raises(ImageError, match=f"registry {registry} is unreachable"):
        push_image(service, "f" * 40, registry)
