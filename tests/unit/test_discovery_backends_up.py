"""``mesh.backends_up``: the replication check's count of an instance's tasks up in the proxy."""

from __future__ import annotations

import pytest

from paasport.discovery.mesh import backends_up

STATES = {
    "t1": {"web.main": "up", "web.alt": "up"},
    "t2": {"web.main": "drain", "web.alt": "up"},
    "t3": {"web.main": "down"},
    "t4": {"web.main": "up"},
}

CASES = [
    ("not in discovery", (), ["t1", "t2"], None),
    ("every task up", ("web.main",), ["t1", "t4"], 2),
    ("drain and down do not count", ("web.main",), ["t1", "t2", "t3", "t4"], 2),
    ("a task the proxy does not know is not up", ("web.main",), ["t9"], 0),
    ("up under every registration", ("web.main", "web.alt"), ["t1", "t2", "t4"], 1),
    ("no tasks", ("web.main",), [], 0),
]


@pytest.mark.parametrize("name,registrations,tasks,expected", CASES, ids=[c[0] for c in CASES])
def test_backends_up(
    name: str, registrations: tuple[str, ...], tasks: list[str], expected: int | None
) -> None:
    assert backends_up(registrations, tasks, STATES) == expected
