"""The ``paasport`` entry point: lazy verbs, one place for exit codes."""

from __future__ import annotations

import subprocess
import sys

import pytest

from paasport.cli import main as cli_main


def test_help_lists_registered_verbs() -> None:
    out = subprocess.run(
        [sys.executable, "-m", "paasport", "--help"],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
    )
    assert "Usage: paasport" in out.stdout
    for verb in cli_main.COMMANDS:
        assert verb in out.stdout


def test_unknown_verb_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        cli_main.main(["no-such-verb"])
    assert exc.value.code == 2
    assert "No such command" in capsys.readouterr().err
