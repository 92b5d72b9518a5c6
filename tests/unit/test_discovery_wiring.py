"""discovery.wiring.read_proxy: reading the proxy view never creates state."""

from __future__ import annotations

from pathlib import Path

from paasport.config.system import SystemConfig
from paasport.discovery.wiring import read_proxy


def test_reading_with_nothing_running_creates_nothing(tmp_path: Path) -> None:
    state = tmp_path / "state"
    reading = read_proxy(SystemConfig(soa_dir=tmp_path, state_dir=state))
    assert (reading.stats, reading.backends) == ((), ())
    assert "no proxy answer on" in reading.error
    assert not state.exists()
