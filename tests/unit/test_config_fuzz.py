"""Fuzz the config loader with seeded mutations of examples/soa-configs (deterministic).

Byte flips, truncation, duplicated and deleted lines, deep nesting, huge numbers, wrong types,
random unicode, alias bombs, empty and deleted files, symlink loops: ``load_tree`` may only raise
ConfigError/NotFoundError, and ``paasport validate`` (in process, via click's CliRunner) never
lets anything else escape nor prints a traceback.
"""

from __future__ import annotations

import json
import random
import re
import shutil
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from paasport.cli import main as cli_main
from paasport.config.system import ClusterConfig, SystemConfig, load_system_config
from paasport.config.tree import load_tree
from paasport.errors import ConfigError, ConfigProblem, NotFoundError, PaasportError

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "soa-configs"
DEPLOYMENTS = {
    "v2": {
        "deployments": {
            "local.main": {"docker_image": "services-hello:paasta-abc", "git_sha": "abc"}
        },
        "controls": {"hello:local.main": {"desired_state": "start", "force_bounce": None}},
    }
}
SYSTEM_YAML = (
    b"local_cluster: local\nclusters:\n  local:\n    engine: docker\n"
    b"allowed_host_paths: [/srv]\nallow_host_network: false\n"
    b"instance_defaults:\n  mem: 256\n  env: {A: b}\n"
)
ROUNDS = 6
PER_ROUND = 350  # 2,100 mutated trees in all
CLI_EVERY = 25  # of which every 25th also runs `paasport validate`

Mutation = Callable[[random.Random, bytes], bytes | None]  # None: delete the file

_NUMBER = re.compile(rb"(?<![\w.])\d+(?:\.\d+)?(?![\w.])")
_VALUE = re.compile(rb": [^\n]+")
_ODD_TEXT = (
    "\x00",
    "\x01",
    "\x7f",
    "\x85",
    "\u2028",
    "\ufeff",
    "\ufffe",
    "\u202e",
    "\U0001f600",
    "é",
    "\t",
    "\r",
    "'",
    '"',
    "&",
    "*",
    "!",
    "%",
    "@",
    "`",
    "|",
    ">",
    "{",
    "[",
    "<<: ",
    "? ",
    "---\n",
    "...\n",
)
_WRONG = (
    b"[]",
    b"{}",
    b"null",
    b"~",
    b"true",
    b"no",
    b"'text'",
    b"12",
    b"-3",
    b"0x10",
    b"1_000",
    b"2020-01-01",
    b".nan",
    b"-.inf",
    b"*nope",
    b"&a x",
    b"!!binary aGk=",
    b"!!python/object:os.system x",
    b"[a, [b, {c: d}]]",
    b"{<<: []}",
)


def _flip(rng: random.Random, raw: bytes) -> bytes:
    data = bytearray(raw or b"x")
    for _ in range(rng.randint(1, 4)):
        data[rng.randrange(len(data))] = rng.randrange(256)
    return bytes(data)


def _truncate(rng: random.Random, raw: bytes) -> bytes:
    return raw[: rng.randrange(len(raw) + 1)]


def _lines(raw: bytes) -> list[bytes]:
    return raw.splitlines(keepends=True) or [b"\n"]


def _duplicate_line(rng: random.Random, raw: bytes) -> bytes:
    lines = _lines(raw)
    i = rng.randrange(len(lines))
    lines.insert(i, lines[i])
    return b"".join(lines)


def _delete_line(rng: random.Random, raw: bytes) -> bytes:
    lines = _lines(raw)
    del lines[rng.randrange(len(lines))]
    return b"".join(lines)


def _replace_value(rng: random.Random, raw: bytes, new: bytes) -> bytes:
    spots = list(_VALUE.finditer(raw))
    if not spots:
        return raw + b"\nx: " + new + b"\n"
    spot = rng.choice(spots)
    return raw[: spot.start()] + b": " + new + raw[spot.end() :]


def _deep(rng: random.Random, raw: bytes) -> bytes:
    depth = rng.choice((50, 99, 101, 150, 999, 1001, 5000))
    if rng.random() < 0.5:
        value = b"[" * depth + b"]" * depth
    else:
        value = b"{a: " * depth + b"1" + b"}" * depth
    return _replace_value(rng, raw, value)


def _huge_number(rng: random.Random, raw: bytes) -> bytes:
    digits = rng.choice((20, 100, 101, 309, 400, 5000))
    new = rng.choice((b"1" + b"0" * digits, b"-1" + b"0" * digits, b"1.0e+400", b"9" * digits))
    spots = list(_NUMBER.finditer(raw))
    if not spots:
        return _replace_value(rng, raw, new)
    spot = rng.choice(spots)
    return raw[: spot.start()] + new + raw[spot.end() :]


def _wrong_type(rng: random.Random, raw: bytes) -> bytes:
    return _replace_value(rng, raw, rng.choice(_WRONG))


def _unicode(rng: random.Random, raw: bytes) -> bytes:
    text = raw.decode("utf-8", "replace")
    for _ in range(rng.randint(1, 3)):
        at = rng.randrange(len(text) + 1)
        odd = rng.choice(_ODD_TEXT) if rng.random() < 0.7 else chr(rng.randrange(0x20, 0x2FFFF))
        text = text[:at] + odd + text[at:]
    return text.encode("utf-8", "surrogatepass")


def _alias_bomb(rng: random.Random, raw: bytes) -> bytes:
    width, levels = rng.choice(((9, 9), (10, 5), (3, 12), (2, 3)))
    lines = [b"_l0: &l0 [" + b",".join([b'"lol"'] * width) + b"]"]
    for i in range(1, levels):
        lines.append(f"_l{i}: &l{i} [".encode() + b",".join([f"*l{i - 1}".encode()] * width) + b"]")
    return (
        raw + b"\n" + b"\n".join(lines) + f"\nbomb: {{cmd: run, args: *l{levels - 1}}}\n".encode()
    )


def _whole_file(rng: random.Random, raw: bytes) -> bytes | None:
    return rng.choice(
        (None, b"", b"{}\n", b"# only a comment\n\n", b"null\n", b"- a\n", b"\xff\xfe")
    )


MUTATIONS: tuple[Mutation, ...] = (
    _flip,
    _truncate,
    _duplicate_line,
    _delete_line,
    _deep,
    _huge_number,
    _wrong_type,
    _unicode,
    _alias_bomb,
    _whole_file,
)


@pytest.fixture
def soa(tmp_path: Path) -> Path:
    root = tmp_path / "soa"
    shutil.copytree(EXAMPLES, root)
    (root / "hello" / "deployments.json").write_text(json.dumps(DEPLOYMENTS))
    return root


def _system(soa: Path) -> SystemConfig:
    return SystemConfig(
        clusters={"local": ClusterConfig("local")},
        soa_dir=soa,
        state_dir=soa.parent / "state",
        allowed_host_paths=("/srv",),
    )


def _mutated(soa: Path, rng: random.Random) -> Iterator[tuple[Path, bytes | None]]:
    """Yield each (file, mutated bytes or None) after writing it; restore the file after."""
    files = sorted(p for p in soa.rglob("*") if p.is_file() or p.is_symlink())
    while True:
        target = rng.choice(files)
        original = target.read_bytes()
        if rng.random() < 0.02:
            target.unlink()
            target.symlink_to(target.name)  # a loop where a file should be
            new: bytes | None = None
        else:
            new = rng.choice(MUTATIONS)(rng, original)
            target.unlink()
            if new is not None:
                target.write_bytes(new)
        yield target, new
        target.unlink(missing_ok=True)
        target.write_bytes(original)


def _check_tree(soa: Path, system: SystemConfig, what: str) -> None:
    try:
        tree = load_tree(soa, system=system)
    except (ConfigError, NotFoundError):
        return
    except Exception as err:  # the point: name what escaped, and from what input
        pytest.fail(f"{what}: load_tree raised {type(err).__name__}: {err}"[:2000])
    for p in tree.problems:
        assert isinstance(p, ConfigProblem) and p.message, what
        assert "Traceback" not in p.message and "\n" not in p.message, (what, p)


def _check_cli(soa: Path, what: str) -> None:
    service = ["-s", "hello"] if len(what) % 2 else []
    as_json = ["--json"] if len(what) % 3 == 0 else []
    result = CliRunner().invoke(
        cli_main.cli,
        ["validate", "--soa-dir", str(soa), *service, *as_json],
        standalone_mode=False,
    )
    if result.exception is not None and not isinstance(result.exception, PaasportError):
        pytest.fail(
            f"{what}: validate raised {type(result.exception).__name__}: {result.exception}"
        )
    assert "Traceback" not in result.output, what
    assert result.return_value in (0, 1) or result.exception is not None, what
    if as_json and result.exception is None:
        json.loads(result.output)  # one JSON document, whatever the files held


@pytest.mark.parametrize("seed", range(ROUNDS))
def test_mutated_example_trees_never_raise(
    seed: int, soa: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("PAASPORT_CONFIG", str(soa.parent / "no-such-paasport.yaml"))
    monkeypatch.delenv("PAASPORT_SOA_DIR", raising=False)
    rng = random.Random(seed)
    system = _system(soa)
    mutations = _mutated(soa, rng)
    for i in range(PER_ROUND):
        target, new = next(mutations)
        what = f"seed {seed} #{i} {target.relative_to(soa)} <- {new[:120] if new else new!r}"
        _check_tree(soa, system, what)
        if i % CLI_EVERY == 0:
            _check_cli(soa, what)


@pytest.mark.parametrize("seed", range(2))
def test_mutated_system_configs_raise_only_config_errors(seed: int, tmp_path: Path) -> None:
    rng = random.Random(1000 + seed)
    path = tmp_path / "paasport.yaml"
    for i in range(300):
        mutation = rng.choice(MUTATIONS)
        new = mutation(rng, SYSTEM_YAML)
        if new is None:
            continue
        path.write_bytes(new)
        try:
            load_system_config(path, soa_dir=tmp_path, state_dir=tmp_path)
        except ConfigError as err:
            assert all(p.message for p in err.problems)
        except Exception as err:
            pytest.fail(f"seed {seed} #{i} {new[:120]!r}: {type(err).__name__}: {err}"[:2000])
