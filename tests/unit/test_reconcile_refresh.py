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


class _Repo:
    """GitRepo's stand-in: the "broken" service's repo raises what no PaasportError covers."""

    def __init__(self, url: str) -> None:
        if url == "/repos/broken":
            raise OSError("git: Resource temporarily unavailable")
        self.url = url

    def __enter__(self) -> _Repo:
        return self

    def __exit__(self, *exc: object) -> None:
        return None


def test_one_services_failure_never_skips_the_others(monkeypatch: pytest.MonkeyPatch) -> None:
    from paasport.deploy.workflow import ServiceTarget

    generated: list[str] = []

    def generate(target: ServiceTarget, repo: object) -> object:
        generated.append(target.service)
        return type("Result", (), {"changed": True})()

    monkeypatch.setattr(refresh, "GitRepo", _Repo)
    monkeypatch.setattr(refresh, "generate", generate)
    found = [ServiceTarget("broken", "/repos/broken"), ServiceTarget("web", "/repos/web")]
    assert refresh.refresh_once(lambda: found) == ["web"]
    assert generated == ["web"]


def test_the_loop_survives_its_store_raising_and_resumes(monkeypatch: pytest.MonkeyPatch) -> None:
    """targets_fn (the store) fails for three rounds mid-call, then answers: rounds go on."""
    stop = threading.Event()
    calls: list[int] = []

    def targets() -> list[object]:
        calls.append(1)
        if len(calls) <= 3:
            raise (RuntimeError if len(calls) % 2 else GitError)("store went away")
        if len(calls) >= 6:
            stop.set()
        return []

    loop = refresh.DeploymentsRefresher(Path("/nowhere"), interval=0.0, targets_fn=targets)  # type: ignore[arg-type]
    thread = threading.Thread(target=loop.run_forever, args=(stop,), daemon=True)
    thread.start()
    thread.join(timeout=10)
    assert not thread.is_alive() and len(calls) == 6
