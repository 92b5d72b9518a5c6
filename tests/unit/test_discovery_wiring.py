"""discovery.wiring.read_proxy: reading the proxy view never creates state."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

from paasport.config.system import SystemConfig
from paasport.discovery import wiring
from paasport.discovery.wiring import BackendsUp, read_proxy
from paasport.types import InstanceConfig


def test_reading_with_nothing_running_creates_nothing(tmp_path: Path) -> None:
    state = tmp_path / "state"
    reading = read_proxy(SystemConfig(soa_dir=tmp_path, state_dir=state))
    assert (reading.stats, reading.backends) == ((), ())
    assert "no proxy answer on" in reading.error
    assert not state.exists()


class CountingRegistry:
    opened = 0

    def __init__(self) -> None:
        CountingRegistry.opened += 1
        self.closed = False
        self.fail = False

    def backends(self) -> tuple[()]:
        if self.fail:
            from paasport.errors import RegistryUnavailable

            raise RegistryUnavailable("zookeeper 127.0.0.1:2181 did not answer")
        return ()

    def close(self) -> None:
        self.closed = True


def _system(tmp_path: Path) -> SystemConfig:
    state = tmp_path / "state"
    state.mkdir()
    (state / "registry.sqlite").write_text("")  # "something registered here"
    return SystemConfig(soa_dir=tmp_path, state_dir=state)


CONFIG = InstanceConfig("web", "c1", "main", "c1.main", registrations=("web.main",))


def test_backends_up_keeps_one_registry_client(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(wiring, "_read_stats", lambda system: ((), ""))
    clients: list[CountingRegistry] = []

    def open_one(system: SystemConfig) -> CountingRegistry:
        clients.append(CountingRegistry())
        return clients[-1]

    up = BackendsUp(_system(tmp_path), max_age=0.0, open_registry=open_one)  # type: ignore[arg-type]
    for _ in range(5):
        assert up(CONFIG, []) == 0
    clients[0].fail = True
    assert up(CONFIG, []) is None  # registry unknown: not this host's proxy's fault
    clients[0].fail = False
    assert up(CONFIG, []) == 0
    assert len(clients) == 1 and not clients[0].closed
    up.close()
    assert clients[0].closed


def test_backends_up_says_why_when_the_proxy_does_not_answer(tmp_path: Path) -> None:
    up = BackendsUp(_system(tmp_path), open_registry=lambda s: CountingRegistry())  # type: ignore[arg-type,return-value]
    answer = up(CONFIG, [])
    assert isinstance(answer, str)
    assert answer.startswith("this host's HAProxy does not answer: no proxy answer on")
    assert up(replace(CONFIG, registrations=()), []) is None  # not in discovery
