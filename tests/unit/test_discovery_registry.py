"""Registry semantics shared by MemoryRegistry and SqliteRegistry (one table, both backends)."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from paasport.discovery.registry import Backend, MemoryRegistry, Registry
from paasport.discovery.sqlite_registry import SqliteRegistry

B1 = Backend("web.main", "t1", "127.0.0.1", 1001, "h1")
B2 = Backend("web.main", "t2", "127.0.0.1", 1002, "h1")
B3 = Backend("api.main", "t3", "127.0.0.1", 1003, "h2")


@pytest.fixture(params=["memory", "sqlite"])
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Registry]:
    clock: Callable[[], float] = lambda: 100.0  # noqa: E731
    reg: Registry = (
        MemoryRegistry()
        if request.param == "memory"
        else SqliteRegistry(tmp_path / "r.sqlite", stale_after=10.0, clock=clock)
    )
    yield reg
    reg.close()


def test_version_moves_only_on_route_changes(registry: Registry) -> None:
    v0 = registry.version()
    registry.register(B1)
    v1 = registry.version()
    registry.register(Backend(**{**B1.__dict__, "registered_at": 5.0}))  # same route
    assert registry.version() == v1 > v0
    registry.register(Backend(**{**B1.__dict__, "port": 2001}))
    assert registry.version() == v1 + 1
    registry.deregister("web.main", "t1")
    registry.deregister("web.main", "t1")  # already gone: no change
    assert registry.version() == v1 + 2
    assert registry.backends() == ()


def test_backends_filter_and_sort(registry: Registry) -> None:
    for b in (B3, B2, B1):
        registry.register(b)
    assert registry.backends() == (B3, B1, B2)
    assert registry.backends("web.main") == (B1, B2)


def test_drain_marks_overlay_and_survive_re_registration(registry: Registry) -> None:
    registry.register(B1)
    v = registry.set_draining("web.main", "t1", True, now=50.0)
    assert v == registry.version()
    assert registry.set_draining("web.main", "t1", True, now=60.0) == v  # idempotent
    registry.register(B1)  # the agent registers it "up" again: the mark still wins
    assert [b.state for b in registry.backends()] == ["drain"]
    (mark,) = registry.drain_marks()
    assert (mark.version, mark.since) == (v, 50.0)
    snap = registry.snapshot()
    assert snap.version == v and snap.drains == (mark,)
    assert registry.set_draining("web.main", "t1", False, now=70.0) == v + 1
    assert [b.state for b in registry.backends()] == ["up"]


def test_acks_and_reports(registry: Registry) -> None:
    registry.ack("h1", 3, now=99.0, sessions={"web.main/t1": 2})
    registry.ack("h2", 5, now=95.0)
    assert registry.acks() == {"h1": 3, "h2": 5}
    assert registry.reports()["h1"].sessions == {"web.main/t1": 2}


def test_sqlite_stale_agents_are_not_live(tmp_path: Path) -> None:
    now = [100.0]
    reg = SqliteRegistry(tmp_path / "r.sqlite", stale_after=10.0, clock=lambda: now[0])
    reg.ack("h1", 1, now=100.0)
    now[0] = 111.0
    assert reg.acks() == {}
    reg.close()


def test_sqlite_is_shared_across_connections(tmp_path: Path) -> None:
    a = SqliteRegistry(tmp_path / "r.sqlite")
    b = SqliteRegistry(tmp_path / "r.sqlite")
    a.register(B1)
    b.set_draining("web.main", "t1", True, now=1.0)
    assert a.backends()[0].state == "drain"
    assert a.version() == b.version() == 2
    a.close()
    b.close()


def test_reports_carry_the_loads_of_autoscaled_tasks(registry: Registry) -> None:
    loads = {"t1": {"scur": 3.0, "cpu_at": 99.0, "cpu_total": 5e9, "cpu_system": 8e11,
                    "cpu_online": 2.0}, "t2": {"scur": 0.0}}  # fmt: skip
    registry.ack("h1", 3, now=99.0, sessions={}, loads=loads)
    registry.ack("h2", 3, now=99.0)
    reports = registry.reports()
    assert reports["h1"].loads == loads
    assert reports["h2"].loads == {}


def test_an_older_sqlite_registry_file_gains_the_loads_column(tmp_path: Path) -> None:
    import sqlite3

    path = tmp_path / "registry.sqlite"
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE acks (agent_id TEXT PRIMARY KEY, version INTEGER NOT NULL, "
               "time REAL NOT NULL, sessions TEXT NOT NULL)")  # fmt: skip
    db.execute("INSERT INTO acks VALUES ('old', 1, 99.0, '{}')")
    db.commit()
    db.close()
    registry = SqliteRegistry(path, clock=lambda: 100.0)
    assert registry.reports()["old"].loads == {}
    registry.ack("new", 2, now=100.0, loads={"t": {"scur": 1.0}})
    assert registry.reports()["new"].loads == {"t": {"scur": 1.0}}
