"""The read-only config verbs end to end (in process): exit codes, messages, --json, schemas."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import jsonschema
import pytest
import yaml

from paasport.cli import main as cli_main
from paasport.config.schema import KINDS, json_schema

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "soa-configs"


def run(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str, str]:
    with pytest.raises(SystemExit) as exc:
        cli_main.main(argv)
    out = capsys.readouterr()
    code = exc.value.code
    return (code if isinstance(code, int) else 1), out.out, out.err


@pytest.fixture
def soa(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    root = tmp_path / "soa"
    shutil.copytree(EXAMPLES, root)
    monkeypatch.setenv("PAASPORT_CONFIG", str(tmp_path / "no-such-paasport.yaml"))
    monkeypatch.delenv("PAASPORT_SOA_DIR", raising=False)
    return root


def test_examples_validate(soa: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["validate", "--soa-dir", str(soa)], capsys)
    assert code == 0
    assert "valid: 3 services, 5 instances, 0 warning(s)" in out
    assert 'cluster "prod" is not in the system config' in out


def test_broken_field_names_file_line_instance_field(
    soa: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    path = soa / "hello" / "instances-local.yaml"
    path.write_text(path.read_text().replace("instances: 2", "instances: two"))
    code, out, _ = run(["validate", "-s", "hello", "--soa-dir", str(soa)], capsys)
    assert code == 1
    assert f'{path}:13: main: instances: expected an integer >= 0, found "two"' in out
    assert "invalid: 1 error(s)" in out


def test_validate_json(soa: Path, capsys: pytest.CaptureFixture[str]) -> None:
    (soa / "echo" / "monitoring.yaml").write_text("team: infra\npage: maybe\n")
    code, out, _ = run(["validate", "--json", "--soa-dir", str(soa)], capsys)
    doc = json.loads(out)
    assert code == 1
    assert doc["valid"] is False
    assert doc["services"] == ["echo", "hello", "worker"]
    errors = [p for p in doc["problems"] if p["severity"] == "error"]
    assert [(p["line"], p["field"]) for p in errors] == [(2, "page")]
    assert errors[0]["text"].endswith('page: expected true or false, found "maybe"')


def test_usage_errors_exit_2(soa: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert run(["validate", "--no-such-flag"], capsys)[0] == 2
    code, _, err = run(["schema", "bogus"], capsys)
    assert code == 2
    assert "expected a file kind" in err
    assert run(["info", "--soa-dir", str(soa)], capsys)[0] == 2  # -s is required


def test_unknown_service_is_clean(soa: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, _, err = run(["validate", "-s", "nope", "--soa-dir", str(soa)], capsys)
    assert code == 1
    assert err.startswith("error: no service nope in")
    assert "Traceback" not in err


def test_list_and_info_json(soa: Path, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["list", "--soa-dir", str(soa)], capsys)
    assert (code, out.split()) == (0, ["echo", "hello", "worker"])
    code, out, _ = run(["list", "--json", "--soa-dir", str(soa)], capsys)
    hello = next(s for s in json.loads(out) if s["service"] == "hello")
    assert hello["instances"] == ["local.canary", "local.main", "prod.main"]
    code, out, _ = run(["info", "-s", "hello", "--json", "--soa-dir", str(soa)], capsys)
    info = json.loads(out)
    assert code == 0
    assert info["team"] == "web"
    assert info["git_url"] == str((soa / ".." / "repos" / "hello").resolve())
    assert info["namespaces"] == [{"namespace": "hello.main", "proxy_port": 19101, "mode": "http"}]
    canary = next(i for i in info["instances"] if i["instance"] == "canary")
    assert (canary["deploy_group"], canary["registrations"]) == ("local.canary", ["hello.main"])
    assert (canary["pool"], canary["placement"]) == (None, [])
    code, out, _ = run(["info", "-s", "hello", "--soa-dir", str(soa)], capsys)
    assert code == 0
    assert "hello.main" in out and "19101" in out and "local.canary" in out


def test_list_clusters(soa: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    config = tmp_path / "paasport.yaml"
    config.write_text("clusters:\n  local: {engine: docker}\n  edge: {engine: swarm}\n")
    code, out, _ = run(
        ["list-clusters", "--json", "--config", str(config), "--soa-dir", str(soa)], capsys
    )
    rows = {r["cluster"]: r for r in json.loads(out)}
    assert code == 0
    assert rows["edge"]["engine"] == "swarm"
    assert rows["local"]["local"] is True
    assert rows["prod"]["configured"] is False


def test_bad_system_config_is_a_clean_error(
    soa: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "paasport.yaml"
    config.write_text("clusters:\n  local: {engine: k8s}\nlocal_cluster: nowhere\n")
    code, _, err = run(["validate", "--config", str(config), "--soa-dir", str(soa)], capsys)
    assert code == 1
    assert f'{config}:2: clusters.local.engine: expected one of docker, swarm, found "k8s"' in err
    assert (
        f'{config}:3: local_cluster: expected one of the clusters (local), found "nowhere"' in err
    )


@pytest.mark.parametrize("kind", KINDS)
def test_schema_prints_a_valid_draft7_schema(kind: str, capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(["schema", kind], capsys)
    assert code == 0
    jsonschema.Draft7Validator.check_schema(json.loads(out))


KIND_OF = {
    "service.yaml": "service",
    "deploy.yaml": "deploy",
    "smartstack.yaml": "smartstack",
    "monitoring.yaml": "monitoring",
}


@pytest.mark.parametrize("path", sorted(EXAMPLES.glob("*/*.yaml")), ids=lambda p: p.name)
def test_examples_pass_their_schema(path: Path) -> None:
    kind = KIND_OF.get(path.name) or path.name.split("-", 1)[0].replace("kubernetes", "instances")
    jsonschema.validate(yaml.safe_load(path.read_text()), json_schema(kind))


@pytest.mark.parametrize(
    ("kind", "doc"),
    [
        ("instances", {"main": {"cpus": "x"}}),
        ("instances", {"main": {"typo": 1}}),
        ("instances", {"main": {"constraints": [["pool", "EQUALS", "x"]]}}),
        ("instances", {"main": {"extra_constraints": [["pool"]]}}),
        ("instances", {"main": {"pool": "a b"}}),
        ("smartstack", {"main": {"proxy_port": 80}}),
        ("monitoring", {"page": "yes"}),
        ("deploy", {"pipeline": [{"stepp": "x"}]}),
    ],
)
def test_schema_rejects_what_validate_rejects(kind: str, doc: object) -> None:
    with pytest.raises(jsonschema.ValidationError):
        jsonschema.validate(doc, json_schema(kind))


def test_validate_imports_nothing_heavy(soa: Path) -> None:
    """A fresh `validate -s` pays for every import (issue 10): no SDK, HTTP or table library."""
    code = (
        "import sys\n"
        "from paasport.cli import main\n"
        "try:\n"
        f"    main.main(['validate', '-s', 'hello', '--soa-dir', {str(soa)!r}])\n"
        "except SystemExit as e:\n"
        "    assert e.code == 0, e.code\n"
        "heavy = ('docker', 'rich', 'pydantic', 'httpx', 'kazoo', 'requests', 'jsonschema')\n"
        "print(sorted(m for m in sys.modules if m.split('.')[0] in heavy))\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=True
    )
    assert out.stdout.strip().splitlines()[-1] == "[]"
