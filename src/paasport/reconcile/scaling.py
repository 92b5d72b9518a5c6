"""What the autoscaler decided, kept on disk: ``<state_dir>/autoscale.json``.

The autoscaler (``platform.autoscaler``) writes each autoscaled instance's task count, the
metric it read and its last decision; deployd's store applies the counts (so a restarted
deployd keeps the scaled count instead of falling back to ``instances``), and ``status`` shows
them. Overrides (``paasport autoscale-override``) live beside it in
``<state_dir>/autoscale-overrides.json``. Writes are atomic (a temp file renamed); an unreadable
file reads as empty, with the reason logged: it only ever loses the scaled counts, never data.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import os
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from paasport.config.state_files import private_dir
from paasport.types import InstanceConfig

log = logging.getLogger("paasport.autoscale")
SCALES_FILE = "autoscale.json"
OVERRIDES_FILE = "autoscale-overrides.json"


@dataclass(frozen=True)
class Scale:
    """One autoscaled instance as the autoscaler left it."""

    target: int  # the task count deployd runs
    metric: float | None = None  # the value compared with the setpoint (None: no reading)
    setpoint: float = 0.0
    provider: str = "cpu"
    reason: str = ""  # the last decision, for people
    decided_at: float = 0.0  # when the count last changed
    read_at: float = 0.0  # when the metric was read


@dataclass(frozen=True)
class OverrideRange:
    """``paasport autoscale-override``: min/max in force until ``until`` (epoch seconds)."""

    min_instances: int
    max_instances: int
    until: float
    by: str = ""
    set_at: float = 0.0


def _key(service: str, instance: str) -> str:
    return f"{service}.{instance}"


def _read(path: Path) -> dict[str, Any]:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as err:
        log.warning("cannot read %s (%s): read as empty", path, err)
        return {}
    return data if isinstance(data, dict) else {}


def _write(path: Path, data: Mapping[str, Any]) -> None:
    private_dir(path.parent)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as out:
        json.dump(data, out, sort_keys=True, indent=1)
    os.replace(tmp, path)


def _known(cls: type, value: object) -> Any:
    names = {f.name for f in dataclasses.fields(cls)}
    if not isinstance(value, dict):
        return None
    try:
        return cls(**{k: v for k, v in value.items() if k in names})
    except TypeError:
        return None


def read_scales(state_dir: Path) -> dict[tuple[str, str], Scale]:
    out: dict[tuple[str, str], Scale] = {}
    for key, value in _read(state_dir / SCALES_FILE).items():
        scale = _known(Scale, value)
        service, _, instance = key.partition(".")
        if scale is not None and isinstance(scale.target, int) and instance:
            out[service, instance] = scale
    return out


def write_scales(state_dir: Path, scales: Mapping[tuple[str, str], Scale]) -> None:
    _write(state_dir / SCALES_FILE,
           {_key(s, i): dataclasses.asdict(v) for (s, i), v in sorted(scales.items())})  # fmt: skip


def read_overrides(state_dir: Path) -> dict[tuple[str, str], OverrideRange]:
    out: dict[tuple[str, str], OverrideRange] = {}
    for key, value in _read(state_dir / OVERRIDES_FILE).items():
        found = _known(OverrideRange, value)
        service, _, instance = key.partition(".")
        if found is not None and instance:
            out[service, instance] = found
    return out


def write_override(state_dir: Path, service: str, instance: str,
                   override: OverrideRange | None) -> None:  # fmt: skip
    """Set (or with None, clear) one instance's override, keeping the others'."""
    data = {_key(s, i): dataclasses.asdict(o) for (s, i), o in read_overrides(state_dir).items()}
    if override is None:
        data.pop(_key(service, instance), None)
    else:
        data[_key(service, instance)] = dataclasses.asdict(override)
    _write(state_dir / OVERRIDES_FILE, data)


def scaled(config: InstanceConfig, scales: Mapping[tuple[str, str], Scale]) -> InstanceConfig:
    """``config`` with the autoscaler's count as ``instances`` (an autoscaled instance that has
    one; the count kept within min/max of the config as it is now). Pure."""
    scale = scales.get((config.service, config.instance))
    if not config.autoscaled:
        return config
    if scale is None:
        return dataclasses.replace(config, instances=starting_count(config))
    lo = config.min_instances if config.min_instances is not None else 1
    hi = config.max_instances if config.max_instances is not None else scale.target
    target = min(max(scale.target, lo), hi) if lo <= hi else hi
    return dataclasses.replace(config, instances=target)


def starting_count(config: InstanceConfig) -> int:
    """An autoscaled instance's count before any decision: ``instances`` within min/max. Pure."""
    lo = config.min_instances if config.min_instances is not None else 1
    hi = config.max_instances if config.max_instances is not None else config.instances
    return max(lo, min(config.instances, hi))


def all_scaled(configs: Iterable[InstanceConfig], scales: Mapping[tuple[str, str], Scale]
               ) -> tuple[InstanceConfig, ...]:  # fmt: skip
    return tuple(scaled(c, scales) for c in configs)
