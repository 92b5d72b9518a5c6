"""``proxy_lock.conflict_reason``: when a second proxy on a port is refused, and why."""

from __future__ import annotations

from pathlib import Path

import pytest

from paasport.discovery.proxy_lock import conflict_reason, owner_line, parse_owner

MINE, OTHER = Path("/s/mine/haproxy"), Path("/s/other/haproxy")


def alive(workdir: Path) -> int | None:
    return 4242 if workdir == OTHER else None


CASES = [
    ("free port", None, False, 100, None),
    ("a lock without an owner line", None, True, 100, "locked by another process"),
    ("another agent holds it", (7, OTHER), True, 100, "paasport agent pid 7"),
    ("another agent on our own files", (7, MINE), True, 100, "paasport agent pid 7"),
    ("this process, same files (adoption)", (100, MINE), True, 100, None),
    ("this process, other files", (100, OTHER), True, 100, "paasport agent pid 100"),
    ("dead agent, its HAProxy still serves", (7, OTHER), False, 100, "HAProxy pid 4242"),
    ("dead agent, its HAProxy gone too", (7, Path("/s/gone")), False, 100, None),
    ("our own files from a previous run", (7, MINE), False, 100, None),
]


@pytest.mark.parametrize("name,owner,held,pid,expected", CASES, ids=[c[0] for c in CASES])
def test_conflict_reason(
    name: str, owner: tuple[int, Path] | None, held: bool, pid: int, expected: str | None
) -> None:
    why = conflict_reason(19101, MINE, owner, held, pid, alive)
    if expected is None:
        assert why is None
    else:
        assert why is not None and expected in why and "19101" in why


def test_owner_line_round_trips() -> None:
    assert parse_owner(owner_line(12, MINE)) == (12, MINE)
    assert parse_owner("") is None and parse_owner("garbage") is None


def test_without_root_the_locks_live_in_a_folder_of_this_user(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    import os

    from paasport.discovery import proxy_lock

    monkeypatch.setattr(os, "access", lambda path, mode: False)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(tmp_path))
    assert proxy_lock.default_lock_dir() == (
        tmp_path
        / f"paasport-{os.geteuid()}"
        / "proxy-ports"
        / proxy_lock.netns_folder(proxy_lock.current_netns())
    )


def test_each_network_namespace_has_its_own_lock_folder(monkeypatch: pytest.MonkeyPatch) -> None:
    """The lab's three hosts are three namespaces of one machine serving the same ports."""
    from paasport.discovery import proxy_lock

    folders = set()
    for inode in (4026531840, 4026532999, 4026532999, None):
        monkeypatch.setattr(proxy_lock, "current_netns", lambda inode=inode: inode)
        folders.add(proxy_lock.default_lock_dir())
    assert len(folders) == 3
    assert all(f.parent == proxy_lock.default_lock_dir().parent for f in folders)
    assert proxy_lock.netns_folder(7) == "netns-7"
