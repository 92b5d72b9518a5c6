"""The deployments refresher keeps running whatever one round raises."""

from __future__ import annotations

import threading
from pathlib import Path

import pytest

from paasport.errors import GitError
from paasport.reconcile import refresh


@pytest.mark.parametrize("error", [RuntimeError("a bug"), GitError("repo unreachable")])
def test_a_failing_round_does_not_end_the_loop(
    error: Exception, monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    stop = threading.Event()
    rounds: list[int] = []

    def refresh_once(targets_fn: object) -> list[str]:
        rounds.append(1)
        if len(rounds) == 1:
            raise error
        stop.set()
        return ["web"]

    monkeypatch.setattr(refresh, "refresh_once", refresh_once)
    refresh.DeploymentsRefresher(Path("/nowhere"), interval=0.0, targets_fn=list).run_forever(stop)
    assert len(rounds) == 2
    assert "refreshing deployments" in caplog.text
