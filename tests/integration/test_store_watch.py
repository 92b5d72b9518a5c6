"""Non-atomic saves never reach what runs: the real inotify watcher feeding the desired-state store.

An editor that truncates and writes a second later, or a file written in two chunks 50 ms apart,
must never make the store (which deployd, the agent and the monitor read) lose hello's instances
or see a half-written file (issue 9).
"""

from __future__ import annotations

import shutil
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from paasport.config.system import ClusterConfig, SystemConfig
from paasport.reconcile.store import DesiredStore

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "soa-configs"
NEW_TEXT = (
    (EXAMPLES / "hello" / "instances-local.yaml")
    .read_text()
    .replace("  instances: 2\n", "  instances: 3\n")
)


def _truncate_then_write_later(path: Path) -> None:
    path.write_text("")  # truncated and closed: an empty file for a whole second
    time.sleep(1.0)
    path.write_text(NEW_TEXT)


def _two_chunks_one_open(path: Path) -> None:
    half = len(NEW_TEXT) // 2
    with path.open("w") as f:
        f.write(NEW_TEXT[:half])
        f.flush()
        time.sleep(0.05)
        f.write(NEW_TEXT[half:])


def _two_chunks_two_opens(path: Path) -> None:
    half = len(NEW_TEXT) // 3
    path.write_text(NEW_TEXT[:half])
    time.sleep(0.05)
    with path.open("a") as f:
        f.write(NEW_TEXT[half:])


SAVES: list[tuple[str, Callable[[Path], None]]] = [
    ("truncate, write 1 s later", _truncate_then_write_later),
    ("two chunks 50 ms apart, one open", _two_chunks_one_open),
    ("two chunks 50 ms apart, two opens", _two_chunks_two_opens),
]


@pytest.mark.parametrize("save", [s for _, s in SAVES], ids=[n for n, _ in SAVES])
def test_a_non_atomic_save_never_drops_or_half_applies_instances(
    tmp_path: Path, save: Callable[[Path], None]
) -> None:
    soa = tmp_path / "soa"
    shutil.copytree(EXAMPLES, soa)
    system = SystemConfig(
        soa_dir=soa, state_dir=tmp_path / "state", clusters={"local": ClusterConfig("local")}
    )
    store = DesiredStore(soa, "local", system=system)
    store.load_all()
    seen: list[tuple[int | None, int | None]] = []

    def record(keys: set[tuple[str, str]]) -> None:
        main, canary = store.config(("hello", "main")), store.config(("hello", "canary"))
        seen.append((main.instances if main else None, canary.instances if canary else None))

    store.subscribe(record)
    stop = threading.Event()
    try:
        assert store.start(stop)
        time.sleep(0.3)  # the watcher thread has its inotify watches
        save(soa / "hello" / "instances-local.yaml")
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline and seen[-1:] != [(3, 1)]:
            time.sleep(0.05)
        time.sleep(0.6)  # nothing half-written is reported after the final write either
    finally:
        stop.set()
    assert seen, "the watcher never reported the change"
    assert all(canary == 1 and main in (2, 3) for main, canary in seen), seen
    assert seen[-1] == (3, 1)
