"""``view.status.load_status`` over a fake engine: one tree load and one deployments.json read
per ``paasport status`` call, and the --json entries it builds."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from paasport.cli.main import main
from paasport.config import tree as tree_module
from paasport.deploy import deployments as deployments_module
from paasport.types import AppSpec

from fake_engine import FakeEngine

SHA = "a" * 40


def write_tree(tmp_path: Path) -> Path:
    soa = tmp_path / "soa"
    for name in ("web", "api"):
        svc = soa / name
        svc.mkdir(parents=True)
        (svc / "service.yaml").write_text("description: x\n")
        (svc / "deploy.yaml").write_text(
            "pipeline:\n  - step: local.main\n  - step: local.canary\n"
        )
        (svc / "instances-local.yaml").write_text(
            "main:\n  instances: 1\ncanary:\n  instances: 1\n"
        )
        deployments = {
            "v2": {
                "deployments": {"local.main": {"docker_image": f"img-{name}", "git_sha": SHA}},
                "controls": {},
            }
        }
        (svc / "deployments.json").write_text(json.dumps(deployments))
    config = tmp_path / "paasport.yaml"
    config.write_text(f"soa_dir: {soa}\nstate_dir: {tmp_path / 'state'}\n")
    return config


def counting(calls: Counter[str], name: str, fn: Callable[..., Any]) -> Callable[..., Any]:
    def wrapped(*args: Any, **kwargs: Any) -> Any:
        calls[name] += 1
        return fn(*args, **kwargs)

    return wrapped


@pytest.mark.parametrize("argv", [[], ["-s", "web"], ["--json"], ["-v"]])
def test_one_status_call_loads_the_tree_once_and_each_deployments_file_once(
    argv: list[str],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = write_tree(tmp_path)
    engine = FakeEngine(cluster="local")
    calls: Counter[str] = Counter()
    monkeypatch.setattr("paasport.engine.factory.engine_for", lambda cluster: engine)
    monkeypatch.setattr(tree_module, "load_tree", counting(calls, "tree", tree_module.load_tree))
    read = counting(calls, "deployments", deployments_module.read_deployments)
    monkeypatch.setattr(deployments_module, "read_deployments", read)
    with pytest.raises(SystemExit) as exited:
        main(["status", "--config", str(config), *argv])
    assert exited.value.code == 1  # nothing runs: not healthy
    services = 1 if "-s" in argv else 2
    assert calls == {"tree": 1, "deployments": services}
    assert "main" in capsys.readouterr().out


def test_json_entries_of_an_instance_and_a_config_error(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_tree(tmp_path)
    bad = tmp_path / "soa" / "api" / "instances-local.yaml"
    bad.write_text("main:\n  instances: 1\ncanary:\n  instances: two\n")
    engine = FakeEngine(cluster="local")
    monkeypatch.setattr("paasport.engine.factory.engine_for", lambda cluster: engine)
    spec = AppSpec("web", "main", "local", "img-web", SHA, "c" * 12, replicas=1)
    engine.create_app_version(spec, 1)
    with pytest.raises(SystemExit):
        main(["status", "--config", str(config), "--json"])
    entries = {(e["service"], e["instance"]): e for e in json.loads(capsys.readouterr().out)}
    assert entries[("api", "canary")]["state"] == "Config error"
    error_keys = set(entries[("api", "canary")])
    assert error_keys == (set(entries[("web", "main")]) | {"problems"}) - {"deploy_group"}
    web = entries[("web", "main")]
    assert (web["expected"], web["git_sha"], web["deploy_group"]) == (1, SHA, "local.main")
    assert [av["tasks"] for av in web["app_versions"]] == [1]
    assert web["tasks"][0]["proxy"] == {}  # not in discovery


def test_wait_for_deployment_loads_the_tree_once_and_rereads_deployments_each_round(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    config = write_tree(tmp_path)
    engine = FakeEngine(cluster="local")
    calls: Counter[str] = Counter()
    monkeypatch.setattr("paasport.engine.factory.engine_for", lambda cluster: engine)
    monkeypatch.setattr(tree_module, "load_tree", counting(calls, "tree", tree_module.load_tree))
    read = counting(calls, "deployments", deployments_module.read_deployments)
    monkeypatch.setattr(deployments_module, "read_deployments", read)
    argv = ["-s", "web", "-l", "local.main", "-c", SHA, "--timeout", "2.5"]
    with pytest.raises(SystemExit) as exited:
        main(["wait-for-deployment", "--config", str(config), *argv])
    assert exited.value.code == 1  # nothing runs: timed out
    assert calls["tree"] == 1
    assert calls["deployments"] >= 3  # one read per round (about one round a second)
    assert engine.calls["list"] == calls["deployments"]
