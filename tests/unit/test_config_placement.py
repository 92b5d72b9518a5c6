# ruff: noqa: E501  (the case tables read best one case per line)
"""config.placement as tables: one YAML rule -> its normalized form or error, and the
Constraints -> engine-neutral rules translation (AppSpec.placement)."""

from __future__ import annotations

from typing import Any

import pytest

from paasport.config.placement import effective_constraints, parse_constraint, placement_rules
from paasport.types import Constraint

PARSE_CASES: list[tuple[object, object]] = [
    # YAML rule, normalized rule (a list) or the error text
    (["pool", "CLUSTER", "batch"], ["pool", "CLUSTER", "batch"]),
    (["rack", "CLUSTER", 3], ["rack", "CLUSTER", "3"]),
    (["pool", "LIKE", "batch"], ["pool", "LIKE", "batch"]),
    (["hostname", "UNLIKE", "lab2.example.com"], ["hostname", "UNLIKE", "lab2.example.com"]),
    (["hostname", "UNIQUE"], ["hostname", "UNIQUE", None]),
    (["hostname", "UNIQUE", "x"], ["hostname", "UNIQUE", None]),
    (["region", "GROUP_BY"], ["region", "GROUP_BY", None]),
    (["region", "GROUP_BY", "3"], ["region", "GROUP_BY", "3"]),
    (["hostname", "MAX_PER", 2], ["hostname", "MAX_PER", "2"]),
    (["pool", "LIKE", "a|b"], 'expected a plain value after LIKE (Swarm constraints cannot match a regex), found "a|b"'),
    (["pool", "LIKE", ".*"], 'expected a plain value after LIKE (Swarm constraints cannot match a regex), found ".*"'),
    (["pool", "UNLIKE", "^lab$"], 'expected a plain value after UNLIKE (Swarm constraints cannot match a regex), found "^lab$"'),
    (["pool", "CLUSTER", "a b"], 'expected a label value (letters, digits and _ . - : /) after CLUSTER, found "a b"'),
    (["pool", "CLUSTER", ""], 'expected a label value (letters, digits and _ . - : /) after CLUSTER, found ""'),
    (["pool", "LIKE"], "expected a value after LIKE, found nothing"),
    (["pool", "UNLIKE", None], "expected a value after UNLIKE, found nothing"),
    (["hostname", "MAX_PER"], "expected a value after MAX_PER, found nothing"),
    (["hostname", "MAX_PER", -1], "expected a count >= 1 after MAX_PER, found -1"),
    (["pool", "EQUALS", "x"], 'expected an operator: one of CLUSTER, LIKE, UNLIKE, UNIQUE, GROUP_BY, MAX_PER, found "EQUALS"'),
    (["pool", "LIKE", ["a"]], "expected a string value after LIKE, found a list"),
    (["a=b", "LIKE", "a"], 'expected an attribute name (letters, digits and _ . -) first, found "a=b"'),
    ("pool", 'expected [attribute, OPERATOR, value], found "pool"'),
    ([], "expected [attribute, OPERATOR, value], found a list of 0"),
]  # fmt: skip


@pytest.mark.parametrize(("rule", "expected"), PARSE_CASES, ids=[str(c[0]) for c in PARSE_CASES])
def test_parse_constraint(rule: object, expected: object) -> None:
    normalized, error = parse_constraint(rule)
    assert (error if isinstance(expected, str) else normalized) == expected
    assert (normalized is None) == isinstance(expected, str)


RULE_CASES: list[tuple[tuple[Constraint, ...], tuple[str, ...]]] = [
    ((), ()),
    ((Constraint("pool", "LIKE", "batch"),), ("pool==batch",)),
    ((Constraint("pool", "CLUSTER", "batch"), Constraint("hostname", "UNLIKE", "lab2")),
     ("pool==batch", "hostname!=lab2")),
    ((Constraint("hostname", "UNIQUE"), Constraint("region", "GROUP_BY", "2"),
      Constraint("hostname", "MAX_PER", "1")), ()),
    ((Constraint("pool", "LIKE", "batch"), Constraint("pool", "CLUSTER", "batch")), ("pool==batch",)),
    ((Constraint("rack", "UNLIKE", "a"), Constraint("hostname", "UNIQUE")), ("rack!=a",)),
]  # fmt: skip


@pytest.mark.parametrize(("constraints", "rules"), RULE_CASES)
def test_placement_rules(constraints: tuple[Constraint, ...], rules: tuple[str, ...]) -> None:
    assert placement_rules(constraints) == rules


EFFECTIVE_CASES: list[tuple[dict[str, Any], tuple[Constraint, ...], list[str]]] = [
    # merged values, effective constraints, warned fields
    ({}, (), []),
    ({"pool": "batch"}, (Constraint("pool", "LIKE", "batch"),), []),
    ({"pool": "batch", "extra_constraints": [["hostname", "UNLIKE", "lab2"]]},
     (Constraint("pool", "LIKE", "batch"), Constraint("hostname", "UNLIKE", "lab2")), []),
    ({"pool": "batch", "constraints": []}, (), ["pool"]),
    ({"pool": "batch", "constraints": [["pool", "CLUSTER", "b"]]}, (Constraint("pool", "CLUSTER", "b"),), []),
    ({"constraints": [["rack", "LIKE", "a"]], "extra_constraints": [["x", "LIKE", "y"]]},
     (Constraint("rack", "LIKE", "a"),), ["extra_constraints"]),
    ({"extra_constraints": [None, ["x", "LIKE", "y"]]}, (Constraint("x", "LIKE", "y"),), []),
]  # fmt: skip


@pytest.mark.parametrize(("merged", "constraints", "warned"), EFFECTIVE_CASES)
def test_effective_constraints(
    merged: dict[str, Any], constraints: tuple[Constraint, ...], warned: list[str]
) -> None:
    got, issues = effective_constraints(merged)
    assert got == constraints
    assert [(i.path[0], i.severity) for i in issues] == [(w, "warning") for w in warned]
