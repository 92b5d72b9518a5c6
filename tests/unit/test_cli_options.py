"""The shared CLI options: ``--state-dir`` (flag, then env, then the config file, then the default)
reaches ``settings_from``, and every verb that reads or writes state takes the same option."""

from __future__ import annotations

import importlib
from pathlib import Path

import click
import pytest
from click.testing import CliRunner

from paasport.cli import main as cli_main
from paasport.cli.options import (
    config_option,
    settings_from,
    soa_dir_option,
    state_dir_option,
)
from paasport.config.system import DEFAULT_STATE_DIR


@click.command()
@soa_dir_option
@config_option
@state_dir_option
@click.pass_context
def show_state_dir(ctx: click.Context, **_: object) -> None:
    click.echo(str(settings_from(ctx).state_dir))


# flag, env, the config file's state_dir (None: no file), expected (relative to tmp_path)
STATE_DIR_CASES = [
    pytest.param("flag", None, None, "flag", id="flag"),
    pytest.param(None, "env", None, "env", id="env"),
    pytest.param(None, None, "file", "etc/file", id="file-relative-to-the-file"),
    pytest.param("flag", "env", "file", "flag", id="flag-beats-env-and-file"),
    pytest.param(None, "env", "file", "env", id="env-beats-file"),
    pytest.param(None, "", "file", "etc/file", id="empty-env-is-unset"),
    pytest.param(None, None, None, None, id="default"),
]


@pytest.mark.parametrize(("flag", "env", "in_file", "expected"), STATE_DIR_CASES)
def test_state_dir_precedence(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    flag: str | None,
    env: str | None,
    in_file: str | None,
    expected: str | None,
) -> None:
    config = tmp_path / "etc" / "paasport.yaml"
    if in_file is not None:
        config.parent.mkdir()
        config.write_text(f"state_dir: {in_file}\n")
    monkeypatch.setenv("PAASPORT_CONFIG", str(config))
    if env is not None:
        monkeypatch.setenv("PAASPORT_STATE_DIR", str(tmp_path / env) if env else "")
    args = ["--state-dir", str(tmp_path / flag)] if flag else []
    result = CliRunner().invoke(show_state_dir, args, catch_exceptions=False)
    assert result.exit_code == 0, result.output
    want = tmp_path / expected if expected is not None else DEFAULT_STATE_DIR
    assert result.output.strip() == str(want)


def test_settings_from_a_mapping(tmp_path: Path) -> None:
    system = settings_from({"state_dir": str(tmp_path / "s"), "soa_dir": str(tmp_path / "soa")})
    assert (system.state_dir, system.soa_dir) == (tmp_path / "s", tmp_path / "soa")


STATE_VERBS = [
    "agent",
    "deployd",
    "down",
    "events",
    "mesh-status",
    "monitor",
    "status",
    "up",
    "wait-for-deployment",
]


@pytest.mark.parametrize("verb", STATE_VERBS)
def test_verbs_that_touch_state_take_the_shared_state_dir(verb: str) -> None:
    module_name, attr = cli_main.COMMANDS[verb].split(":")
    command = getattr(importlib.import_module(module_name), attr)
    (option,) = [p for p in command.params if "--state-dir" in p.opts]
    shared = click.command()(state_dir_option(lambda **_: None)).params[0]
    assert (option.name, option.envvar, option.help) == (shared.name, shared.envvar, shared.help)


@pytest.mark.parametrize("how", ["flag", "env"])
def test_events_reads_the_given_state_dir(
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
    how: str,
) -> None:
    state = tmp_path / "state"
    args = ["events"]
    if how == "flag":
        args += ["--state-dir", str(state)]
    else:
        monkeypatch.setenv("PAASPORT_STATE_DIR", str(state))
    with pytest.raises(SystemExit) as exc:
        cli_main.main(args)
    assert exc.value.code == 0
    assert f"{state / 'events.sqlite'} does not exist" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("how", "exit_code"),
    [
        pytest.param("flag", 2, id="a typed --config must exist"),
        pytest.param("env", 0, id="PAASPORT_CONFIG may be missing: defaults"),
    ],
)
def test_a_missing_config_file(
    how: str,
    exit_code: int,
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    missing = tmp_path / "typo.yaml"
    args = ["list-clusters", "--soa-dir", str(tmp_path)]
    if how == "flag":
        args += ["--config", str(missing)]
    else:
        monkeypatch.setenv("PAASPORT_CONFIG", str(missing))
    with pytest.raises(SystemExit) as exc:
        cli_main.main(args)
    assert exc.value.code == exit_code
    err = capsys.readouterr().err
    if exit_code:
        assert f"{missing} does not exist (`paasport up` writes a default one" in err
