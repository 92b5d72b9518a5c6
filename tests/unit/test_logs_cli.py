"""``paasport logs`` over a fake engine: lines prefixed by task, and a note when there are none."""

from __future__ import annotations

from pathlib import Path

import pytest
from click.testing import CliRunner

from paasport.cli.logs import logs
from paasport.types import AppSpec

from fake_engine import FakeEngine

SPEC = AppSpec("web", "main", "test", "img", "a" * 40, "c" * 12, replicas=1)


@pytest.mark.parametrize(
    "lines,stdout,stderr",
    [
        (["hello", "world"], "T | hello\nT | world\n", ""),
        ([], "", "the tasks of web wrote no log lines\n"),
    ],
    ids=["lines", "silent tasks"],
)
def test_logs(
    lines: list[str], stdout: str, stderr: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    engine = FakeEngine()
    engine.create_app_version(SPEC, 1)
    engine.log_lines = {"T": lines}
    monkeypatch.setattr("paasport.engine.factory.engine_for", lambda cluster: engine)
    result = CliRunner().invoke(logs, ["-s", "web"])  # PAASPORT_CONFIG: none (tests/conftest)
    assert result.exit_code == 0, result.output
    assert (result.stdout, result.stderr) == (stdout, stderr)
