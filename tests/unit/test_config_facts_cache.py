"""The smartstack facts cache behind ``load_tree(services=[...])``: same answers as a full parse,
follows every change of another service's file, and never breaks loading when it cannot work."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import pytest

from paasport.config.facts_cache import cache_path
from paasport.config.system import ClusterConfig, SystemConfig
from paasport.config.tree import load_tree

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "soa-configs"
AN_HOUR_AGO = 3600


def _age(root: Path, seconds: float = AN_HOUR_AGO) -> None:
    """Files written just now are never cached (a second write within the same timestamp tick
    would keep the key): back-date them, as files of a real checkout are."""
    for path in root.rglob("*"):
        if path.is_file():
            st = path.stat()
            os.utime(path, ns=(st.st_atime_ns, st.st_mtime_ns - int(seconds * 1e9)))


@pytest.fixture
def soa(tmp_path: Path) -> Path:
    root = tmp_path / "soa"
    shutil.copytree(EXAMPLES, root)
    _age(root)
    return root


def _system(soa: Path, state_dir: Path) -> SystemConfig:
    return SystemConfig(
        clusters={"local": ClusterConfig("local")}, soa_dir=soa, state_dir=state_dir
    )


def _load(soa: Path, state: Path, service: str = "worker") -> tuple[object, ...]:
    tree = load_tree(soa, [service], system=_system(soa, state))
    return tree.namespaces, tree.problems, tree.instances


def test_a_warm_cache_gives_what_a_full_parse_gives(soa: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    cold = _load(soa, state)
    path = cache_path(soa, state)
    assert path.parent == state / ".paasport-cache" and path.exists()
    assert sorted(json.loads(path.read_text())["services"]) == ["echo", "hello"]
    warm = _load(soa, state)
    assert warm == cold
    assert warm[0] == load_tree(soa, system=_system(soa, state)).namespaces


def test_without_a_state_dir_the_cache_sits_beside_the_soa_dir(soa: Path, tmp_path: Path) -> None:
    _load(soa, tmp_path / "no-state")
    assert not (tmp_path / "no-state").exists()  # never created just for a cache
    assert cache_path(soa, tmp_path / "no-state").parent == soa.parent / ".paasport-cache"
    assert cache_path(soa, tmp_path / "no-state").exists()


def test_a_change_to_another_services_file_is_seen(soa: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    _load(soa, state, "hello")  # caches echo's facts
    echo = soa / "echo" / "smartstack.yaml"
    hello_port = load_tree(soa, system=_system(soa, state)).namespaces["hello.main"].proxy_port
    echo.write_text(f"main:\n  proxy_port: {hello_port}\n  mode: tcp\n")
    _age(echo.parent, 1800)  # a new mtime, still old enough to be cached
    problems = [str(p) for p in load_tree(soa, ["hello"], system=_system(soa, state)).errors]
    assert any(f"found {hello_port} (also used by echo.main" in p for p in problems), problems


def test_a_just_written_file_is_not_cached(soa: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (soa / "echo" / "smartstack.yaml").write_text("main:\n  proxy_port: 19999\n")
    _load(soa, state)
    services = json.loads(cache_path(soa, state).read_text())["services"]
    assert sorted(services) == ["hello"]


@pytest.mark.parametrize("damage", ["not json", '{"version": 1, "services": {"echo": 5}}', "[]"])
def test_a_damaged_cache_is_ignored_and_rewritten(soa: Path, tmp_path: Path, damage: str) -> None:
    state = tmp_path / "state"
    state.mkdir()
    expected = _load(soa, state)
    cache_path(soa, state).write_text(damage)
    assert _load(soa, state) == expected


def test_an_entry_with_unknown_fields_is_parsed_again(soa: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    expected = _load(soa, state)
    path = cache_path(soa, state)
    doc = json.loads(path.read_text())
    doc["services"]["echo"]["namespaces"]["main"]["bogus"] = 1
    path.write_text(json.dumps(doc))
    assert _load(soa, state) == expected


def test_an_unwritable_cache_never_breaks_loading(soa: Path, tmp_path: Path) -> None:
    state = tmp_path / "state"
    state.mkdir()
    (state / ".paasport-cache").write_text("a file where the cache folder would be")
    expected = load_tree(soa, system=_system(soa, state))
    tree = load_tree(soa, ["worker"], system=_system(soa, state))
    assert tree.namespaces == expected.namespaces
