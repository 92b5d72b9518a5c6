"""Reading and writing ``<soa_dir>/<service>/deployments.json``.

The reconciler, status and API call ``read_deployments`` (cached by file identity + mtime, so
polling is cheap) and get DeploymentState values; ``deploy.workflow`` calls
``write_deployments`` (atomic, only on change) with a document from ``tags.deployments_from_refs``.
"""

from __future__ import annotations

import json
import os
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path

from paasport.errors import ConfigError, ConfigProblem
from paasport.types import DeploymentState

FILENAME = "deployments.json"


@dataclass(frozen=True)
class Deployments:
    """One service's deployments.json (v2 part), as the reconciler reads it."""

    service: str
    deployments: Mapping[str, Mapping[str, object]] = field(default_factory=dict)
    controls: Mapping[str, Mapping[str, object]] = field(default_factory=dict)

    def state_for(self, cluster: str, instance: str, deploy_group: str) -> DeploymentState | None:
        """What the instance should run; None when its deploy group was never marked."""
        deployed = self.deployments.get(deploy_group)
        if deployed is None:
            return None
        control = self.controls.get(f"{self.service}:{cluster}.{instance}", {})
        state = control.get("desired_state", "start")
        force_bounce = control.get("force_bounce")
        image_version = deployed.get("image_version")
        return DeploymentState(
            docker_image=str(deployed["docker_image"]),
            git_sha=str(deployed["git_sha"]),
            image_version=str(image_version) if image_version else None,
            desired_state="stop" if state == "stop" else "start",
            force_bounce=str(force_bounce) if force_bounce else None,
        )


def render_deployments(document: Mapping[str, object]) -> bytes:
    """Stable bytes for a document: the same tags always give the same file."""
    return (json.dumps(document, sort_keys=True, indent=2) + "\n").encode()


def deployments_path(soa_dir: Path, service: str) -> Path:
    return soa_dir / service / FILENAME


def parse_deployments(service: str, raw: bytes, source: str) -> Deployments:
    """A Deployments from the file's bytes; ConfigError naming the file when malformed."""
    regenerate = f"(regenerate it: paasport generate-deployments -s {service})"
    try:
        doc = json.loads(raw)
    except json.JSONDecodeError as err:
        raise ConfigError(
            _problem(source, f"invalid JSON: {err.msg} {regenerate}", line=err.lineno)
        ) from None
    except UnicodeDecodeError as err:
        raise ConfigError(_problem(source, f"not a JSON text file: {err} {regenerate}")) from None
    except ValueError as err:  # e.g. an integer of thousands of digits
        raise ConfigError(_problem(source, f"invalid JSON: {err} {regenerate}", line=1)) from None
    except RecursionError:
        raise ConfigError(
            _problem(source, f"invalid JSON: nested too deeply {regenerate}", line=1)
        ) from None
    v2 = doc.get("v2") if isinstance(doc, dict) else None
    if not isinstance(v2, dict):
        raise ConfigError(_problem(source, f'expected a "v2" object, found none {regenerate}'))
    deployments = v2.get("deployments", {})
    controls = v2.get("controls", {})
    for name, value in (("deployments", deployments), ("controls", controls)):
        if not isinstance(value, dict) or not all(isinstance(v, dict) for v in value.values()):
            raise ConfigError(
                _problem(source, f"expected an object of objects {regenerate}", f"v2.{name}")
            )
    for group, entry in deployments.items():
        missing = [k for k in ("docker_image", "git_sha") if not isinstance(entry.get(k), str)]
        if missing:
            raise ConfigError(
                _problem(
                    source,
                    f"expected {' and '.join(missing)} (strings) {regenerate}",
                    f"v2.deployments.{group}",
                )
            )
    return Deployments(service=service, deployments=deployments, controls=controls)


def _problem(source: str, message: str, fld: str = "", line: int = 0) -> tuple[ConfigProblem, ...]:
    return (ConfigProblem(file=source, line=line, subject="", field=fld, message=message),)


_cache: dict[Path, tuple[tuple[int, int, int], Deployments]] = {}
_cache_lock = threading.Lock()


def read_deployments(soa_dir: Path, service: str) -> Deployments | None:
    """The service's deployments.json, or None when it has none. Re-parsed only when it changed."""
    path = deployments_path(soa_dir, service)
    try:
        st = path.stat()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise ConfigError(_problem(str(path), f"cannot read: {err.strerror}")) from err
    key = (st.st_ino, st.st_mtime_ns, st.st_size)
    with _cache_lock:
        hit = _cache.get(path)
    if hit is not None and hit[0] == key:
        return hit[1]
    try:
        raw = path.read_bytes()
    except FileNotFoundError:
        return None
    except OSError as err:
        raise ConfigError(_problem(str(path), f"cannot read: {err.strerror}")) from err
    parsed = parse_deployments(service, raw, str(path))
    with _cache_lock:
        _cache[path] = (key, parsed)
    return parsed


def write_deployments(soa_dir: Path, service: str, document: Mapping[str, object]) -> bool:
    """Write the document atomically; False (and no write) when the file already says it."""
    path = deployments_path(soa_dir, service)
    data = render_deployments(document)
    try:
        if path.read_bytes() == data:
            return False
    except FileNotFoundError:
        pass
    except OSError as err:
        raise ConfigError(_problem(str(path), f"cannot read: {err.strerror}")) from err
    import tempfile  # here: `validate` reads these files on every run and never writes them

    try:
        fd, tmp = tempfile.mkstemp(prefix=f".{FILENAME}.", dir=path.parent)
    except OSError as err:
        raise ConfigError(_problem(str(path), f"cannot write: {err.strerror}")) from err
    try:
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except OSError as err:
        Path(tmp).unlink(missing_ok=True)
        raise ConfigError(_problem(str(path), f"cannot write: {err.strerror}")) from err
    return True
