"""Placement (pure): ``pool``, ``constraints``, ``extra_constraints`` -> Constraints -> rules.

``config.fields`` checks each ``[attribute, OPERATOR, value]`` with ``CONSTRAINT``;
``config.merge`` calls ``effective_constraints`` for InstanceConfig; ``bounce.desired`` calls
``placement_rules`` for AppSpec.placement, which engines translate (``engine.swarm_spec``).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from typing import Any, cast

from paasport.config.spec import Issue, IssuePath, Spec, describe
from paasport.types import Constraint, ConstraintOperator

OPERATORS: tuple[ConstraintOperator, ...] = (
    "CLUSTER",
    "LIKE",
    "UNLIKE",
    "UNIQUE",
    "GROUP_BY",
    "MAX_PER",
)
# Marathon's spreading operators: Swarm has no such constraint (docs/placement.md)
SPREAD_OPERATORS = frozenset({"UNIQUE", "GROUP_BY", "MAX_PER"})
_NEEDS_VALUE = frozenset({"CLUSTER", "LIKE", "UNLIKE", "MAX_PER"})

ATTRIBUTE = r"[A-Za-z_][A-Za-z0-9_.-]*"
ATTRIBUTE_WHAT = "an attribute name (letters, digits and _ . -)"
# A label value Swarm's constraint syntax takes verbatim; a dot is taken literally.
LITERAL = r"[A-Za-z0-9_.:/-]+"
LITERAL_WHAT = "a label value (letters, digits and _ . - : /)"
_ATTRIBUTE_RE = re.compile(ATTRIBUTE)
_LITERAL_RE = re.compile(LITERAL)
_REGEX_META = re.compile(r"[\\^$*+?()\[\]{}|]")
_SHAPE = "[attribute, OPERATOR, value]"


def _value_problem(op: str, text: str, raw: object) -> str | None:
    """Why ``text`` (``raw`` as written) cannot follow ``op``; None when it can."""
    if op in ("MAX_PER", "GROUP_BY"):
        if text.isdigit() and int(text) >= 1:
            return None
        return f"expected a count >= 1 after {op}, found {describe(raw)}"
    if op == "UNIQUE":
        return None  # Marathon ignores it
    if op in ("LIKE", "UNLIKE") and _REGEX_META.search(text):
        return (
            f"expected a plain value after {op} (Swarm constraints cannot match a regex), "
            f"found {describe(text)}"
        )
    if not _LITERAL_RE.fullmatch(text):
        return f"expected {LITERAL_WHAT} after {op}, found {describe(text)}"
    return None


def parse_constraint(value: object) -> tuple[list[Any] | None, str | None]:
    """One YAML rule -> (``[attribute, OPERATOR, value-or-None]``, None) or (None, error)."""
    if not isinstance(value, list) or len(value) not in (2, 3):
        found = f"a list of {len(value)}" if isinstance(value, list) else describe(value)
        return None, f"expected {_SHAPE}, found {found}"
    attr, op = value[0], value[1]
    raw = value[2] if len(value) == 3 else None
    if not isinstance(attr, str) or not _ATTRIBUTE_RE.fullmatch(attr):
        return None, f"expected {ATTRIBUTE_WHAT} first, found {describe(attr)}"
    if op not in OPERATORS:
        return None, f"expected an operator: one of {', '.join(OPERATORS)}, found {describe(op)}"
    if raw is None:
        if op in _NEEDS_VALUE:
            return None, f"expected a value after {op}, found nothing"
        return [attr, op, None], None
    if isinstance(raw, bool) or not isinstance(raw, str | int):
        return None, f"expected a string value after {op}, found {describe(raw)}"
    text = str(raw)
    problem = _value_problem(op, text, raw)
    if problem is not None:
        return None, problem
    return [attr, op, None if op == "UNIQUE" else text], None


class ConstraintRule(Spec):
    """One ``[attribute, OPERATOR, value]``; spreading operators validate with a warning."""

    expected = f"an {_SHAPE}"  # reads "a list of [attribute, OPERATOR, value]" in a ListOf
    description = "a Marathon-style placement rule"

    def check(self, value: object, path: IssuePath, out: list[Issue]) -> object:
        rule, error = parse_constraint(value)
        if error is not None:
            out.append(Issue(path, error))
            return None
        assert rule is not None
        if rule[1] in SPREAD_OPERATORS:
            out.append(
                Issue(
                    path,
                    f"{rule[1]} is not enforced: Swarm has no such constraint and spreads "
                    "tasks over the least-loaded nodes instead (best effort)",
                    "warning",
                )
            )
        return rule

    def schema(self) -> dict[str, object]:
        return self._described(
            {
                "type": "array",
                "minItems": 2,
                "maxItems": 3,
                "items": [
                    {"type": "string", "pattern": f"^(?:{ATTRIBUTE})$"},
                    {"enum": list(OPERATORS)},
                    {"type": ["string", "integer", "null"]},
                ],
            }
        )


CONSTRAINT = ConstraintRule()


def _constraints(rules: Iterable[Any]) -> list[Constraint]:
    out: list[Constraint] = []
    for rule in rules:
        if rule is None:
            continue  # already reported
        c = Constraint(rule[0], cast(ConstraintOperator, rule[1]), rule[2])
        if c not in out:
            out.append(c)
    return out


def effective_constraints(merged: Mapping[str, Any]) -> tuple[tuple[Constraint, ...], list[Issue]]:
    """PaaSTA's calculated constraints from merged instance values, with warnings.

    ``constraints`` set (even empty): exactly those, replacing the pool rule and ignoring
    ``extra_constraints``; otherwise ``[pool, LIKE, <pool>]`` (when ``pool`` is set) plus
    ``extra_constraints``. There are no other defaults."""
    pool = merged.get("pool")
    own = merged.get("constraints")
    extra = merged.get("extra_constraints") or []
    issues: list[Issue] = []
    if own is None:
        pool_rule = [["pool", "LIKE", pool]] if pool is not None else []
        return tuple(_constraints([*pool_rule, *extra])), issues
    if extra:
        issues.append(
            Issue(
                ("extra_constraints",),
                "ignored: constraints is set, and replaces every default and extra_constraints",
                "warning",
            )
        )
    if pool is not None and not any(r is not None and r[0] == "pool" for r in own):
        issues.append(
            Issue(
                ("pool",),
                "not a placement rule here: constraints is set and replaces the pool rule; "
                f"add [pool, LIKE, {pool}] to constraints to keep it",
                "warning",
            )
        )
    return tuple(_constraints(own)), issues


def placement_rules(constraints: Iterable[Constraint]) -> tuple[str, ...]:
    """Engine-neutral rules: CLUSTER/LIKE -> ``attr==value``, UNLIKE -> ``attr!=value``.

    The spreading operators give none (Swarm spreads by itself)."""
    out: list[str] = []
    for c in constraints:
        if c.value is None or c.operator in SPREAD_OPERATORS:
            continue
        rule = f"{c.attribute}{'!=' if c.operator == 'UNLIKE' else '=='}{c.value}"
        if rule not in out:
            out.append(rule)
    return tuple(out)
