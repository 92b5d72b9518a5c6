"""TreeWatcher's fallback without inotify keeps the stability rule: a service whose files keep
changing is not reported until their (mtime, size) stood still for ``quiet_seconds`` (issue 9)."""

from __future__ import annotations

import os
import time
from pathlib import Path

from paasport.reconcile.watch import Change, TreeWatcher

QUIET = 0.3
POLL = 0.05


def _watcher(root: Path) -> TreeWatcher:
    watcher = TreeWatcher(root, quiet_seconds=QUIET, inotify=False, poll_seconds=POLL)
    assert not watcher.uses_inotify
    return watcher


def _tree(tmp_path: Path) -> Path:
    (tmp_path / "web").mkdir()
    (tmp_path / "web" / "instances-c1.yaml").write_text("main:\n  instances: 1\n")
    (tmp_path / "web" / "deployments.json").write_text("{}")
    return tmp_path


def _collect(watcher: TreeWatcher, seconds: float) -> list[Change]:
    out: list[Change] = []
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        out.extend(watcher.changes(timeout=0.05))
    return out


def test_a_file_still_being_written_is_not_reported_until_it_stood_still(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    watcher = _watcher(root)
    path = root / "web" / "instances-c1.yaml"
    during: list[Change] = []
    with path.open("w") as f:  # a slow save: a chunk every 0.1 s for 1 s (each < QUIET apart)
        for n in range(10):
            f.write(f"# chunk {n}\n")
            f.flush()
            during.extend(_collect(watcher, 0.1))
    assert during == []
    after = _collect(watcher, QUIET + 0.5)
    assert after == [Change("web", only_deployments=False)]
    assert _collect(watcher, QUIET + 0.2) == []  # reported once


def test_a_same_mtime_rewrite_is_seen_by_its_size(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    path = root / "web" / "instances-c1.yaml"
    stamp = path.stat().st_mtime_ns
    watcher = _watcher(root)
    path.write_text("main:\n  instances: 12\n")
    os.utime(path, ns=(stamp, stamp))
    assert _collect(watcher, QUIET + 0.5) == [Change("web", only_deployments=False)]


def test_deployments_json_alone_is_a_deployments_only_change(tmp_path: Path) -> None:
    root = _tree(tmp_path)
    watcher = _watcher(root)
    (root / "web" / "deployments.json").write_text('{"v2": {}}')
    assert _collect(watcher, QUIET + 0.5) == [Change("web", only_deployments=True)]
