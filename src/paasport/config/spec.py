"""A small declarative field language: checks plain YAML values, normalizes them, emits JSON Schema.

Pure. ``config.fields`` writes the file kinds in it; ``config.tree``/``config.system`` call
``Spec.check`` and turn each ``Issue`` (path, message, severity) into a ConfigProblem with a line.
Messages read ``expected <what>, found <what>``; that text is part of the CLI contract.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from abc import ABC, abstractmethod
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field

Key = str | int
IssuePath = tuple[Key, ...]

NOT_USED = "accepted, not used by paasport"


@dataclass(frozen=True)
class Issue:
    path: IssuePath
    message: str
    severity: str = "error"


def describe(value: object) -> str:
    """How a found value is shown in a message."""
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int) and value.bit_length() > 10_000:
        return "a number too large"  # repr of thousands of digits raises, and reads badly
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, str):
        text = value if len(value) <= 60 else value[:57] + "..."
        return json.dumps(text)
    if isinstance(value, list):
        return "a list"
    if isinstance(value, dict):
        return "a mapping"
    return type(value).__name__


def field_name(path: IssuePath) -> str:
    """``("extra_volumes", 0, "mode")`` -> ``extra_volumes[0].mode``."""
    out = ""
    for part in path:
        if isinstance(part, int):
            out += f"[{part}]"
        else:
            out += f".{part}" if out else part
    return out


class Spec(ABC):
    """One value's rule. ``check`` appends issues and returns the normalized value."""

    expected = "a value"
    description = ""

    @abstractmethod
    def check(self, value: object, path: IssuePath, out: list[Issue]) -> object: ...

    @abstractmethod
    def schema(self) -> dict[str, object]: ...

    def fail(self, value: object, path: IssuePath, out: list[Issue]) -> None:
        out.append(Issue(path, f"expected {self.expected}, found {describe(value)}"))

    def _described(self, schema: dict[str, object]) -> dict[str, object]:
        if self.description:
            schema["description"] = self.description
        return schema


@dataclass
class Str(Spec):
    pattern: str | None = None
    what: str = "a string"
    description: str = ""
    max_length: int | None = None

    def __post_init__(self) -> None:
        self._re = re.compile(self.pattern) if self.pattern else None
        self.expected = self.what

    def check(self, value: object, path: IssuePath, out: list[Issue]) -> object:
        if not isinstance(value, str):
            self.fail(value, path, out)
            return None
        if (self._re is not None and not self._re.fullmatch(value)) or (
            self.max_length is not None and len(value) > self.max_length
        ):
            self.fail(value, path, out)
            return None
        return value

    def schema(self) -> dict[str, object]:
        out: dict[str, object] = {"type": "string"}
        if self.pattern:
            out["pattern"] = f"^(?:{self.pattern})$"
        if self.max_length is not None:
            out["maxLength"] = self.max_length
        return self._described(out)


def _range_text(lo: float | None, hi: float | None, lo_exclusive: bool) -> str:
    if lo is not None and hi is not None and not lo_exclusive:
        return f" from {lo:g} to {hi:g}"
    parts = []
    if lo is not None:
        parts.append(f"> {lo:g}" if lo_exclusive else f">= {lo:g}")
    if hi is not None:
        parts.append(f"<= {hi:g}")
    return (" " + " and ".join(parts)) if parts else ""


def _finite(value: float) -> bool:
    """Not NaN, not infinite, and representable as a float (an int of 400 digits is not)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


@dataclass
class Num(Spec):
    """A number (int or float, never a bool) in an optional range; normalized to float."""

    lo: float | None = None
    hi: float | None = None
    lo_exclusive: bool = False
    description: str = ""
    integer: bool = False

    def __post_init__(self) -> None:
        kind = "an integer" if self.integer else "a number"
        self.expected = kind + _range_text(self.lo, self.hi, self.lo_exclusive)

    def check(self, value: object, path: IssuePath, out: list[Issue]) -> object:
        ok_type = isinstance(value, int) if self.integer else isinstance(value, int | float)
        if not ok_type or isinstance(value, bool):
            self.fail(value, path, out)
            return None
        assert isinstance(value, int | float)
        if not _finite(value) or (
            self.lo is not None and (value <= self.lo if self.lo_exclusive else value < self.lo)
        ):
            self.fail(value, path, out)
            return None
        if self.hi is not None and value > self.hi:
            self.fail(value, path, out)
            return None
        return value if self.integer else float(value)

    def schema(self) -> dict[str, object]:
        out: dict[str, object] = {"type": "integer" if self.integer else "number"}
        if self.lo is not None:
            out["exclusiveMinimum" if self.lo_exclusive else "minimum"] = self.lo
        if self.hi is not None:
            out["maximum"] = self.hi
        return self._described(out)


def Int(lo: float | None = None, hi: float | None = None, description: str = "") -> Num:
    return Num(lo=lo, hi=hi, description=description, integer=True)


@dataclass
class Bool(Spec):
    description: str = ""
    expected: str = "true or false"

    def check(self, value: object, path: IssuePath, out: list[Issue]) -> object:
        if not isinstance(value, bool):
            self.fail(value, path, out)
            return None
        return value

    def schema(self) -> dict[str, object]:
        return self._described({"type": "boolean"})


@dataclass
class Enum(Spec):
    """One of a fixed set of strings; ``aliases`` map accepted PaaSTA spellings (with a warning)."""

    values: tuple[str, ...]
    description: str = ""
    aliases: Mapping[str, str] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.expected = "one of " + ", ".join(self.values)

    def check(self, value: object, path: IssuePath, out: list[Issue]) -> object:
        if isinstance(value, str) and value in self.values:
            return value
        if isinstance(value, str) and value in self.aliases:
            target = self.aliases[value]
            out.append(Issue(path, f'"{value}" is PaaSTA\'s; paasport uses "{target}"', "warning"))
            return target
        self.fail(value, path, out)
        return None

    def schema(self) -> dict[str, object]:
        return self._described({"enum": [*self.values, *self.aliases]})


@dataclass
class Nullable(Spec):
    inner: Spec

    def __post_init__(self) -> None:
        self.expected = f"{self.inner.expected} or null"
        self.description = self.inner.description

    def check(self, value: object, path: IssuePath, out: list[Issue]) -> object:
        if value is None:
            return None
        mark = len(out)
        result = self.inner.check(value, path, out)
        if len(out) > mark and out[-1].path == path and out[-1].severity == "error":
            out[-1] = Issue(path, f"expected {self.expected}, found {describe(value)}")
        return result

    def schema(self) -> dict[str, object]:
        return self._described({"anyOf": [self.inner.schema(), {"type": "null"}]})


_DURATION_RE = re.compile(r"(?:\d+(?:\.\d+)?[YMWDwdhms])+")
_DURATION_PART = re.compile(r"(\d+(?:\.\d+)?)([YMWDwdhms])")
_UNIT_SECONDS = {
    "s": 1,
    "m": 60,
    "h": 3600,
    "d": 86400,
    "D": 86400,
    "w": 604800,
    "W": 604800,
    "M": 2592000,
    "Y": 31536000,
}


def parse_duration(text: str) -> float | None:
    """``"5m"`` -> 300.0, ``"1h30m"`` -> 5400.0; None when it is not a duration."""
    if not _DURATION_RE.fullmatch(text):
        return None
    return float(sum(float(n) * _UNIT_SECONDS[u] for n, u in _DURATION_PART.findall(text)))


@dataclass
class Duration(Spec):
    """A duration: a number of seconds or text like ``30s``, ``5m``, ``1h``, ``1h30m``, ``2d``."""

    description: str = ""
    expected: str = 'a duration (seconds, or text like "30s", "5m", "1h")'

    def check(self, value: object, path: IssuePath, out: list[Issue]) -> object:
        if (
            isinstance(value, int | float)
            and not isinstance(value, bool)
            and value >= 0
            and _finite(value)
        ):
            return float(value)
        if isinstance(value, str):
            seconds = parse_duration(value.strip())
            if seconds is not None:
                return seconds
        self.fail(value, path, out)
        return None

    def schema(self) -> dict[str, object]:
        return self._described(
            {
                "anyOf": [
                    {"type": "number", "minimum": 0},
                    {"type": "string", "pattern": f"^{_DURATION_RE.pattern}$"},
                ]
            }
        )


@dataclass
class ListOf(Spec):
    item: Spec
    unique: bool = False
    description: str = ""

    def __post_init__(self) -> None:
        self.expected = f"a list of {_plural(self.item.expected)}"

    def check(self, value: object, path: IssuePath, out: list[Issue]) -> object:
        if not isinstance(value, list):
            self.fail(value, path, out)
            return None
        result = []
        seen: set[object] = set()
        for i, item in enumerate(value):
            checked = self.item.check(item, (*path, i), out)
            if self.unique and isinstance(checked, str):
                if checked in seen:
                    out.append(Issue((*path, i), f"expected no duplicates, found {describe(item)}"))
                seen.add(checked)
            result.append(checked)
        return result

    def schema(self) -> dict[str, object]:
        out: dict[str, object] = {"type": "array", "items": self.item.schema()}
        if self.unique:
            out["uniqueItems"] = True
        return self._described(out)


def _plural(expected: str) -> str:
    for article in ("a ", "an "):
        if expected.startswith(article):
            return (
                expected[len(article) :]
                .replace("string", "strings", 1)
                .replace("integer", "integers", 1)
                .replace("number", "numbers", 1)
            )
    return expected


@dataclass
class MapOf(Spec):
    """A mapping of string keys (optionally matching ``key_pattern``) to ``value`` specs."""

    value: Spec
    key_pattern: str | None = None
    key_what: str = "a key"
    description: str = ""

    def __post_init__(self) -> None:
        self.expected = "a mapping"
        self._key_re = re.compile(self.key_pattern) if self.key_pattern else None

    def check(self, value: object, path: IssuePath, out: list[Issue]) -> object:
        if not isinstance(value, dict):
            self.fail(value, path, out)
            return None
        result = {}
        for key, item in value.items():
            if self._key_re is not None and not self._key_re.fullmatch(key):
                out.append(Issue((*path, key), f"expected {self.key_what}, found {describe(key)}"))
                continue
            result[key] = self.value.check(item, (*path, key), out)
        return result

    def schema(self) -> dict[str, object]:
        out: dict[str, object] = {"type": "object", "additionalProperties": self.value.schema()}
        if self.key_pattern:
            out["propertyNames"] = {"pattern": f"^(?:{self.key_pattern})$"}
        return self._described(out)


@dataclass
class Custom(Spec):
    """An escape hatch: ``fn(value) -> (normalized, error_or_None)`` with its own schema."""

    fn: Callable[[object], tuple[object, str | None]]
    json_schema: dict[str, object]
    expected: str = "a value"
    description: str = ""

    def check(self, value: object, path: IssuePath, out: list[Issue]) -> object:
        result, error = self.fn(value)
        if error is not None:
            out.append(Issue(path, error))
            return None
        return result

    def schema(self) -> dict[str, object]:
        return self._described(dict(self.json_schema))


@dataclass
class Obj(Spec):
    """A mapping with known fields: unknown keys are errors, PaaSTA-only keys are warnings.

    ``check`` returns a dict holding only the fields that were present and valid (so merging
    can tell "set" from "default"); PaaSTA-only (``unused``) keys are dropped with a warning.
    """

    fields: Mapping[str, Spec]
    required: frozenset[str] = frozenset()
    unused: frozenset[str] = frozenset()
    description: str = ""

    def __post_init__(self) -> None:
        self.expected = "a mapping of fields"
        self._known = sorted([*self.fields, *self.unused])

    def check(self, value: object, path: IssuePath, out: list[Issue]) -> object:
        if not isinstance(value, dict):
            self.fail(value, path, out)
            return None
        result: dict[str, object] = {}
        fields = self.fields
        for key, item in value.items():
            spec = fields.get(key)
            if spec is not None:
                checked = spec.check(item, (*path, key), out)
                if checked is not None or item is None:
                    result[key] = checked
            elif key in self.unused:
                out.append(Issue((*path, key), NOT_USED, "warning"))
            else:
                out.append(Issue((*path, key), self.unknown_message(key)))
        for key in sorted(self.required - value.keys()):
            out.append(
                Issue((*path, key), f"required: expected {fields[key].expected}, found nothing")
            )
        return result

    def unknown_message(self, key: str) -> str:
        close = difflib.get_close_matches(key, self._known, n=1, cutoff=0.75)
        hint = f' (did you mean "{close[0]}"?)' if close else ""
        return f"unknown field{hint}"

    def schema(self) -> dict[str, object]:
        props: dict[str, object] = {k: s.schema() for k, s in self.fields.items()}
        for key in sorted(self.unused):
            props[key] = {"description": f"PaaSTA field, {NOT_USED}"}
        out: dict[str, object] = {
            "type": "object",
            "properties": props,
            "additionalProperties": False,
        }
        if self.required:
            out["required"] = sorted(self.required)
        return self._described(out)
