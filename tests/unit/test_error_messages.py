"""Bad input gets one clear line naming the file (and field) or the service/instance: tables of
broken soa-configs, system configs and flags -> the exact message and exit code, no traceback.

Runs the CLI in process (``cli.main.main``) over throwaway trees; no engine is reached (every
case fails or answers before the engine would be asked).
"""

from __future__ import annotations

import os
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest

from paasport.cli import main as cli_main
from paasport.cli.status import config_errors
from paasport.config.source import load_yaml, parse_yaml
from paasport.config.system import ClusterConfig, SystemConfig
from paasport.config.tree import load_tree
from paasport.errors import ConfigError, ConfigProblem

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "soa-configs"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        cli_main.main(argv)
    out = capsys.readouterr()
    code = exc.value.code
    return (code if isinstance(code, int) else 1), out.out, out.err


@pytest.fixture
def soa(tmp_path: Path) -> Path:
    root = tmp_path / "soa"
    shutil.copytree(EXAMPLES, root, ignore=shutil.ignore_patterns("deployments.json"))
    return root


def system_for(soa: Path) -> SystemConfig:
    return SystemConfig(clusters={"local": ClusterConfig("local")}, soa_dir=soa, state_dir=soa)


# --- messages without a file ----------------------------------------------------------------


@pytest.mark.parametrize(
    ("problem", "text"),
    [
        (ConfigProblem("", 0, "", "", "no soa dir"), "no soa dir"),
        (ConfigProblem("", 0, "web", "", "broken"), "web: broken"),
        (ConfigProblem("f.yaml", 0, "", "", "broken"), "f.yaml: broken"),
        (ConfigProblem("f.yaml", 3, "main", "cpus", "bad"), "f.yaml:3: main: cpus: bad"),
    ],
)
def test_a_problem_without_a_file_has_no_leading_colon(problem: ConfigProblem, text: str) -> None:
    assert str(problem) == text
    assert str(ConfigError("no soa dir")) == "no soa dir"


# --- files that are not YAML text -----------------------------------------------------------


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (
            b"\x7fELF\x02\x01",
            "f.yaml:1: not YAML: expected a text file, found control character \\x7f (column 1)",
        ),
        (
            b"\x00\x00garbage",
            "f.yaml:1: not YAML: expected a text file, found control character \\x00 (column 1)",
        ),
        (
            b"a: \xff\xfe\xc3",
            "f.yaml:1: not YAML: expected UTF-8 text, found byte \\xff (column 4)",
        ),
        (
            b'main:\n  cmd: run\n  env: {A: "caf\xe9"}\n',
            "f.yaml:3: not YAML: expected UTF-8 text, found byte \\xe9 (column 16)",
        ),
        (
            b"main:\n  cmd: run\x01\n",
            "f.yaml:2: not YAML: expected a text file, found control character \\x01 (column 11)",
        ),
    ],
)
def test_binary_garbage_is_one_line(raw: bytes, message: str) -> None:
    doc = parse_yaml(raw, "f.yaml")
    assert [str(p) for p in doc.problems] == [message]
    assert doc.data is None


@pytest.mark.parametrize(
    ("text", "message"),
    [
        (
            "main: " + "[" * 10_000 + "]" * 10_000 + "\n",
            "f.yaml:1: YAML syntax error: exceeded maximum nesting depth "
            "(while increasing flow level)",
        ),
        (
            "".join(" " * i + "a:\n" for i in range(150)),
            "f.yaml:101: nested too deeply: expected at most 100 levels",
        ),
        ("mem: 1" + "0" * 400 + "\n", "f.yaml:1: mem: expected a number of at most 100 digits"),
    ],
)
def test_deep_or_huge_yaml_is_one_line(text: str, message: str) -> None:
    doc = parse_yaml(text, "f.yaml")
    assert len(doc.problems) == 1 and str(doc.problems[0]).startswith(message), doc.problems
    assert doc.data is None


# --- a soa-configs tree with something other than a file where a file should be ------------


def _dir_instead_of_file(soa: Path) -> Path:
    target = soa / "hello" / "instances-local.yaml"
    target.unlink()
    target.mkdir()
    return target


def _dir_instead_of_service_yaml(soa: Path) -> Path:
    target = soa / "hello" / "service.yaml"
    target.unlink()
    target.mkdir()
    return target


def _dangling_link(soa: Path) -> Path:
    target = soa / "hello" / "smartstack.yaml"
    target.unlink()
    target.symlink_to(soa / "nowhere.yaml")
    return target


def _dir_instead_of_deployments(soa: Path) -> Path:
    target = soa / "hello" / "deployments.json"
    target.mkdir()
    return target


@pytest.mark.parametrize(
    ("breakage", "found"),
    [
        (_dir_instead_of_file, "a directory"),
        (_dir_instead_of_service_yaml, "a directory"),
        (_dangling_link, "a link that cannot be followed (No such file or directory)"),
        (_dir_instead_of_deployments, "a directory"),
    ],
)
def test_not_a_file_is_an_error_and_the_service_is_incomplete(
    soa: Path, breakage: Callable[[Path], Path], found: str
) -> None:
    target = breakage(soa)
    tree = load_tree(soa, system=system_for(soa))
    assert f"{target}: expected a file, found {found}" in [str(p) for p in tree.errors]
    # incomplete: the reconciler keeps what runs instead of reading "no instances"
    assert tree.incomplete_services == {"hello"}


def test_an_unreadable_service_folder_is_an_error_not_an_empty_service(
    soa: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    real_scandir = os.scandir
    folder = soa / "hello"

    def scandir(path: object) -> object:
        if Path(str(path)) == folder:
            raise PermissionError(13, "Permission denied", str(path))
        return real_scandir(path)  # type: ignore[call-overload]

    monkeypatch.setattr("paasport.config.tree.os.scandir", scandir)
    tree = load_tree(soa, system=system_for(soa))
    assert [str(p) for p in tree.errors] == [
        f"{folder}: cannot read the service folder: Permission denied"
    ]
    assert tree.incomplete_services == {"hello"}


def test_validate_prints_the_not_a_file_error(
    soa: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    target = _dir_instead_of_file(soa)
    code, out, err = run(["validate", "--soa-dir", str(soa)], capsys)
    assert code == 1
    assert f"{target}: expected a file, found a directory\n" in out
    assert "Traceback" not in out + err


# --- status names a broken file instead of "no instances configured" -----------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("- main\n- canary\n", ":1: expected a mapping of instance names to instances"),
        ("main: [\n", ":2: YAML syntax error:"),
    ],
)
def test_status_names_a_broken_instance_file(soa: Path, content: str, message: str) -> None:
    path = soa / "hello" / "instances-local.yaml"
    path.write_text(content)
    entries = config_errors(system_for(soa), None, None)
    assert [(e["service"], e["instance"], e["state"], e["ok"]) for e in entries] == [
        ("hello", None, "Config error", False)
    ]
    why = str(entries[0]["why"])
    assert why.startswith(f"{path}{message}")
    assert why.endswith("(what runs is left as it is until the file is fixed)")


def test_status_ignores_a_broken_file_of_another_cluster(soa: Path) -> None:
    (soa / "hello" / "instances-prod.yaml").write_text("- not a mapping\n")
    assert config_errors(system_for(soa), None, None) == []


# --- deployments.json of the wrong shape ----------------------------------------------------


@pytest.mark.parametrize(
    ("content", "message"),
    [
        (
            '{"v2": {"deployments": 5, "controls": {}}}',
            "deployments.json: v2.deployments: expected an object of objects (regenerate it: "
            "paasport generate-deployments -s hello)",
        ),
        (
            '{"v2": {"deployments": {"local.main": {"docker_image": 5}}, "controls": {}}}',
            "deployments.json: v2.deployments.local.main: expected docker_image and git_sha "
            "(strings) (regenerate it: paasport generate-deployments -s hello)",
        ),
        ("[1, 2]", "deployments.json:1: expected a JSON object (deployments.json v2)"),
        ('{"v2": ', "deployments.json:1: invalid JSON: Expecting value"),
    ],
)
def test_validate_checks_the_shape_of_deployments_json(
    soa: Path, content: str, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    (soa / "hello" / "deployments.json").write_text(content)
    code, out, _ = run(["validate", "--soa-dir", str(soa)], capsys)
    assert code == 1
    assert f"{soa}/hello/{message}\n" in out
    assert "invalid: 1 error(s)" in out


def test_status_does_not_call_a_corrupt_deployments_json_not_deployed(
    soa: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from paasport.cli.status import deployments_errors

    (soa / "hello" / "deployments.json").write_text('{"v2": {"deployments": []}}')
    errors = deployments_errors(system_for(soa), ["hello", "echo"])
    assert errors == {
        "hello": f"{soa}/hello/deployments.json: v2.deployments: expected an object of objects "
        "(regenerate it: paasport generate-deployments -s hello)"
    }


# --- flags ---------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("argv", "code", "message"),
    [
        (["status", "-i", "nope"], 1, "error: no service has an instance 'nope' on cluster local"),
        (["status", "-s", "hello", "-i", "nope"], 1, "error: hello: no instance 'nope' on cluster"),
    ],
)
def test_flag_messages(
    soa: Path, argv: list[str], code: int, message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    got, out, err = run([*argv, "--soa-dir", str(soa)], capsys)
    assert got == code
    assert message in err
    assert "Traceback" not in out + err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["wait-for-deployment", "-s", "hello", "-l", "local.main", "-c", "abc", "-t", "-5"],
            "Invalid value for '--timeout' / '-t': -5.0 is not in the range x>0.",
        ),
        (
            ["events", "-n", "-3"],
            "Invalid value for '-n' / '--limit': -3 is not in the range x>=1.",
        ),
        (
            ["logs", "-s", "hello", "-n", "-1"],
            "Invalid value for '-n' / '--tail': -1 is not in the range x>=0.",
        ),
        (
            ["deploy-history", "-s", "hello", "-n", "0"],
            "Invalid value for '--limit' / '-n': 0 is not in the range x>=1.",
        ),
        (
            ["monitor", "--once", "--interval", "0"],
            "Invalid value for '--interval': 0.0 is not in the range x>0.",
        ),
    ],
)
def test_out_of_range_numbers_are_usage_errors(
    argv: list[str], message: str, capsys: pytest.CaptureFixture[str]
) -> None:
    code, _, err = run(argv, capsys)
    assert code == 2
    assert message in err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["-s", "nope"], "error: no service nope in {soa} (known: echo, hello, worker)\n"),
        (["-s", "nope", "-f"], "error: no service nope in {soa} (known: echo, hello, worker)\n"),
        (
            ["-s", "hello", "-i", "nope"],
            "error: hello: no instance 'nope' on cluster local (instances: canary, main)\n",
        ),
    ],
)
def test_logs_of_an_unknown_service_or_instance_is_an_error(
    soa: Path,
    argv: list[str],
    message: str,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    from fake_engine import FakeEngine

    monkeypatch.setattr("paasport.engine.factory.engine_for", lambda cluster: FakeEngine())
    monkeypatch.setenv("PAASPORT_SOA_DIR", str(soa))
    code, _, err = run(["logs", *argv], capsys)
    assert (code, err) == (1, message.format(soa=soa))


def test_logs_of_a_known_service_without_tasks_says_so(
    soa: Path, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    from fake_engine import FakeEngine

    monkeypatch.setattr("paasport.engine.factory.engine_for", lambda cluster: FakeEngine())
    monkeypatch.setenv("PAASPORT_SOA_DIR", str(soa))
    code, _, err = run(["logs", "-s", "hello", "-i", "main"], capsys)
    assert (code, err) == (0, "no tasks of hello.main on cluster local\n")


def _chained() -> BaseException:
    try:
        try:
            raise ConnectionRefusedError(111, "Connection refused")
        except OSError as inner:
            raise RuntimeError("HTTPConnectionPool(host='127.0.0.1', port=1): ...") from inner
    except RuntimeError as middle:
        try:
            raise ValueError("Error while fetching server API version: (...)") from middle
        except ValueError as outer:
            return outer


@pytest.mark.parametrize(
    ("err", "reason"),
    [
        (_chained(), "Connection refused"),
        (
            RuntimeError("x", FileNotFoundError(2, "No such file or directory")),
            "No such file or directory",
        ),
        (RuntimeError("plain text"), "plain text"),
    ],
)
def test_os_reason_digs_out_the_innermost_os_error(err: BaseException, reason: str) -> None:
    from paasport.errors import os_reason

    assert os_reason(err) == reason


def test_a_fifo_where_a_yaml_file_should_be_never_hangs(tmp_path: Path) -> None:
    fifo = tmp_path / "paasport.yaml"
    os.mkfifo(fifo)
    doc = load_yaml(fifo)
    assert [str(p) for p in doc.problems] == [f"{fifo}: expected a file"]
