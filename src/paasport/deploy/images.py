"""Image names, ``cook-image`` (docker build from ``git archive``) and ``push-to-registry``.

``image_name`` is pure and used by the reconciler and CLI; ``cook_image``/``push_image`` are
called by the CLI and are the only users of the Docker SDK and httpx in ``deploy`` (both
imported lazily). SDK and HTTP failures become ImageError.
"""

from __future__ import annotations

import os
import re
import tempfile
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paasport.deploy.git import GitRepo
from paasport.deploy.tags import docker_image_ref
from paasport.errors import ImageError, UsageError, os_reason

# Not the engine's paasport.service/... labels: containers inherit image labels, and a container
# somebody starts by hand from this image must not look like one the engine manages.
LABEL_BUILD_SERVICE = "paasport.build.service"
LABEL_BUILD_GIT_SHA = "paasport.build.git_sha"
MANIFEST_TYPES = ", ".join(
    (
        "application/vnd.docker.distribution.manifest.v2+json",
        "application/vnd.docker.distribution.manifest.list.v2+json",
        "application/vnd.oci.image.manifest.v1+json",
        "application/vnd.oci.image.index.v1+json",
    )
)
Progress = Callable[[str], None]


def image_name(
    service: str, sha: str, registry: str | None, image_version: str | None = None
) -> str:
    """``<registry>/services-<s>:paasta-<sha>[-<iv>]``, or without the registry when None."""
    ref = docker_image_ref(service, sha, image_version)
    return f"{registry.rstrip('/')}/{ref}" if registry else ref


def split_image(name: str) -> tuple[str, str]:
    """``repo[:tag]`` -> (repo, tag); a ``:`` inside a registry host:port is not a tag."""
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1 :]
    return name, "latest"


_FROM_RE = re.compile(r"^\s*FROM\s+(?:--\S+\s+)*(?P<image>\S+)(?:\s+AS\s+(?P<stage>\S+))?", re.I)


def base_images(dockerfile: str) -> list[str]:
    """The images a Dockerfile builds FROM, minus ``scratch``, earlier stages and ``$ARG`` ones."""
    stages: set[str] = set()
    images: list[str] = []
    for line in dockerfile.splitlines():
        m = _FROM_RE.match(line)
        if m is None:
            continue
        image = m["image"]
        if image.lower() != "scratch" and image.lower() not in stages and "$" not in image:
            images.append(image)
        if m["stage"]:
            stages.add(m["stage"].lower())
    return images


DOCKER_TIMEOUT_SECONDS = 60  # each dockerd request (the SDK's default, stated)
BUILD_SILENCE_SECONDS = 900  # a build step may print nothing for long; never forever


def _client(base_url: str | None = None) -> Any:
    import docker  # lazy: the CLI must start without the Docker SDK
    import docker.errors

    try:
        if base_url:
            return docker.DockerClient(base_url=base_url, timeout=DOCKER_TIMEOUT_SECONDS)
        return docker.from_env(timeout=DOCKER_TIMEOUT_SECONDS)
    except docker.errors.DockerException as err:
        env = os.environ.get("DOCKER_HOST")
        where = base_url or (f"{env} (DOCKER_HOST)" if env else "the local socket")
        raise ImageError(
            f"the Docker engine at {where} did not answer ({os_reason(err)}); is dockerd running?"
        ) from None


def cook_image(
    repo: GitRepo,
    service: str,
    sha: str,
    registry: str | None,
    *,
    progress: Progress = lambda _line: None,
    base_url: str | None = None,
) -> str:
    """Build the repo's Dockerfile at ``sha`` (context = ``git archive``); returns the image."""
    import docker.errors

    name = image_name(service, sha, registry)
    dockerfile = repo.read_file(sha, "Dockerfile")
    if dockerfile is None:
        raise ImageError(f"{service}: no Dockerfile at the root of {repo.url} at commit {sha[:12]}")
    client = _client(base_url)
    try:
        _require_bases(client, dockerfile.decode(errors="replace"), service, f"at {sha[:12]}")
        with tempfile.TemporaryFile() as context:
            repo.archive(sha, context)
            context.seek(0)
            stream = client.api.build(
                fileobj=context,
                custom_context=True,
                tag=name,
                labels={LABEL_BUILD_SERVICE: service, LABEL_BUILD_GIT_SHA: sha},
                pull=False,
                rm=True,
                forcerm=True,
                decode=True,
                # the SDK's build waits forever by default; this bounds each silence of dockerd
                timeout=BUILD_SILENCE_SECONDS,
            )
            _follow(stream, progress, f"{service}: docker build of {sha[:12]} failed")
        client.images.get(name)
    except docker.errors.ImageNotFound as err:
        raise ImageError(f"{service}: docker build of {sha[:12]} produced no image {name}") from err
    except docker.errors.DockerException as err:
        raise ImageError(f"{service}: docker build of {sha[:12]} failed: {err}") from err
    finally:
        client.close()
    return name


def _require_bases(client: Any, dockerfile: str, service: str, where: str) -> None:
    """Every base image of ``dockerfile`` is in the local store (paasport never pulls)."""
    import docker.errors

    for base in base_images(dockerfile):
        try:
            client.images.get(base)
        except docker.errors.ImageNotFound as err:
            raise ImageError(
                f"{service}: base image {base} (Dockerfile {where}) is not in the local image "
                "store, and paasport never pulls; build or load it first"
            ) from err


def _follow(stream: Iterable[Mapping[str, Any]], progress: Progress, failure: str) -> str | None:
    """Show a build/push stream; raise ImageError on its error line; return a pushed digest."""
    digest: str | None = None
    for chunk in stream:
        if "error" in chunk or "errorDetail" in chunk:
            detail = chunk.get("errorDetail") or {}
            message = chunk.get("error") or detail.get("message") or "unknown error"
            raise ImageError(f"{failure}: {str(message).strip()}")
        if "stream" in chunk:
            text = str(chunk["stream"]).rstrip("\n")
            if text.strip():
                progress(text)
        elif "status" in chunk:
            status = str(chunk["status"])
            if chunk.get("id") and "progress" not in chunk:
                progress(f"{chunk['id']}: {status}")
            elif "id" not in chunk:
                progress(status)
        aux = chunk.get("aux")
        if isinstance(aux, dict) and aux.get("Digest"):
            digest = str(aux["Digest"])
    return digest


@dataclass(frozen=True)
class PushResult:
    image: str
    pushed: bool  # False: the registry already had it
    digest: str | None


def _registry_url(registry: str) -> str:
    host = registry.split("/", 1)[0]
    hostname = host.rsplit(":", 1)[0] if not host.startswith("[") else host
    loopback = hostname in ("localhost", "[::1]") or hostname.startswith("127.")
    return f"{'http' if loopback else 'https'}://{host}"


def registry_digest(registry: str, repository: str, tag: str) -> str | None:
    """The manifest digest the registry holds for ``repository:tag``, or None when absent."""
    import httpx  # lazy

    path = registry.split("/", 1)[1] + "/" if "/" in registry else ""
    url = f"{_registry_url(registry)}/v2/{path}{repository}/manifests/{tag}"
    try:
        try:
            resp = httpx.head(url, headers={"Accept": MANIFEST_TYPES}, timeout=10.0)
        except httpx.ConnectError as err:
            if "SSL" not in str(err) or not url.startswith("https://"):
                raise
            # a registry that speaks plain HTTP (the daemon's insecure-registries, the lab's):
            # asked the way Docker asks one; pushes and pulls stay the daemon's decision
            resp = httpx.head("http://" + url[8:], headers={"Accept": MANIFEST_TYPES}, timeout=10.0)
    except httpx.HTTPError as err:
        raise ImageError(f"registry {registry} is unreachable: {err}") from err
    if resp.status_code == 200:
        return resp.headers.get("Docker-Content-Digest") or "present"
    if resp.status_code in (401, 403, 404):
        return None
    raise ImageError(f"registry {registry} answered {resp.status_code} for {repository}:{tag}")


def push_image(
    service: str,
    sha: str,
    registry: str | None,
    *,
    progress: Progress = lambda _line: None,
    base_url: str | None = None,
) -> PushResult:
    """Push the cooked image; a no-op when the registry already has that tag."""
    import docker.errors

    if not registry:
        raise UsageError(
            f"{service}: no docker registry configured (service.yaml docker_registry or the "
            "system config's docker_registry); with none, images stay in the local engine"
        )
    name = image_name(service, sha, registry)
    repository, tag = split_image(name)
    existing = registry_digest(registry, repository.split("/", 1)[1], tag)
    if existing is not None:
        progress(f"{name} is already in the registry")
        return PushResult(image=name, pushed=False, digest=existing)
    client = _client(base_url)
    try:
        try:
            client.images.get(name)
        except docker.errors.ImageNotFound as err:
            raise ImageError(
                f"{service}: image {name} is not built here; run cook-image -s {service} -c {sha}"
            ) from err
        stream = client.api.push(repository, tag=tag, stream=True, decode=True)
        digest = _follow(stream, progress, f"{service}: registry {registry} refused {name}")
    except docker.errors.DockerException as err:
        raise ImageError(f"{service}: pushing {name} to {registry} failed: {err}") from err
    finally:
        client.close()
    return PushResult(image=name, pushed=True, digest=digest)


def build_working_tree(
    path: Path,
    service: str,
    *,
    progress: Progress = lambda _line: None,
    base_url: str | None = None,
) -> str:
    """Build ``path``'s Dockerfile from the files as they are (uncommitted ones included, the
    ``.git`` folder left out), for ``local-run --build``; returns the image
    ``services-<service>:paasport-local-run``."""
    import tarfile

    import docker.errors

    name = f"services-{service}:paasport-local-run"
    dockerfile = path / "Dockerfile"
    if not dockerfile.is_file():
        raise ImageError(f"{service}: no Dockerfile in {path} (local-run --build builds it)")
    client = _client(base_url)
    try:
        _require_bases(client, dockerfile.read_text(errors="replace"), service, f"in {path}")
        with tempfile.TemporaryFile() as context:
            with tarfile.open(fileobj=context, mode="w") as tar:
                for entry in sorted(path.iterdir()):
                    if entry.name != ".git":
                        tar.add(entry, arcname=entry.name)
            context.seek(0)
            stream = client.api.build(
                fileobj=context, custom_context=True, tag=name,
                labels={LABEL_BUILD_SERVICE: service}, pull=False, rm=True, forcerm=True,
                decode=True, timeout=BUILD_SILENCE_SECONDS,
            )  # fmt: skip
            _follow(stream, progress, f"{service}: docker build of {path} failed")
        client.images.get(name)
    except docker.errors.DockerException as err:
        raise ImageError(f"{service}: docker build of {path} failed: {err}") from err
    finally:
        client.close()
    return name
