"""What an instance may reach on the host: ``extra_volumes`` host paths and ``net: host``.

Pure. Called by ``config.merge.build_instance`` with the merged instance values and the system
config's ``allowed_host_paths`` / ``allow_host_network``; returns Issues (instance-relative paths).
"""

from __future__ import annotations

import posixpath
from collections.abc import Mapping, Sequence
from typing import Any

from paasport.config.spec import Issue

# a task holding the Docker socket owns the host; so does one holding a folder above it
DOCKER_SOCKETS = ("/var/run/docker.sock", "/run/docker.sock")


def normalized(path: str) -> str:
    """``/srv/../etc//x`` -> ``/etc/x``: the path a bind mount would really reach (no symlinks)."""
    out = posixpath.normpath(path)
    return "/" + out.lstrip("/") if out.startswith("//") else out


def host_path_problem(host_path: str, allowed: Sequence[str]) -> str | None:
    """Why ``host_path`` may not be mounted under ``allowed`` prefixes; None when it may.

    ``/``, the Docker socket and any folder holding it are allowed only when listed exactly.
    """
    path = normalized(host_path)
    listed = [normalized(p) for p in allowed]
    if path in listed:
        return None
    if path == "/" or any(s == path or s.startswith(path + "/") for s in DOCKER_SOCKETS):
        return (
            "expected a host path that does not expose the host (/ and the Docker socket need "
            f'an exact allowed_host_paths entry in the system config), found "{host_path}"'
        )
    if any(path.startswith(prefix.rstrip("/") + "/") for prefix in listed):
        return None
    where = ", ".join(allowed) if allowed else "none listed"
    return (
        f"expected a path under the system config's allowed_host_paths ({where}), "
        f'found "{host_path}"'
    )


def host_access_issues(
    merged: Mapping[str, Any], allowed_host_paths: Sequence[str], allow_host_network: bool
) -> list[Issue]:
    issues: list[Issue] = []
    for i, volume in enumerate(merged.get("extra_volumes") or ()):
        host_path = volume.get("hostPath") if isinstance(volume, dict) else None
        if not isinstance(host_path, str):
            continue  # missing or malformed: field validation already said so
        problem = host_path_problem(host_path, allowed_host_paths)
        if problem is not None:
            issues.append(Issue(("extra_volumes", i, "hostPath"), problem))
    if merged.get("net") == "host" and not allow_host_network:
        issues.append(
            Issue(
                ("net",),
                "expected bridge (net: host needs allow_host_network: true in the system "
                'config), found "host"',
            )
        )
    return issues
