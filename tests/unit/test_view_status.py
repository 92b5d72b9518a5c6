"""``view.status.load_status`` over a fake engine: one tree load and one deployments.json read
per ``paasport status`` call, and the --json entries it builds."""

from __future__ import annotations

import json
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest

from paasport.cli.main import main
from paasport.config import tree as tree_module
from paasport.deploy import deployments as deployments_module
from paasport.engine.base import NodeCapacity
from paasport.types import AppSpec, Task
from paasport.view.diagnosis import LostHost, PendingTask
from paasport.view.observe import down_nodes, lost_and_pending

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


def _t(tid: str, state: str, node: str = "", host: str = "", **kw: object) -> Task:
    return Task(tid, "web", "main", "lab", str(kw.pop("config_hash", "new")), "a" * 40,
                state, host=host or "10.0.0.1", node=node, name=tid, **kw)  # type: ignore[arg-type]  # fmt: skip


DOWN = down_nodes(
    (
        NodeCapacity("lab1", 2, 1024, 0, 0, address="10.251.4.11"),
        NodeCapacity("lab2", 2, 1024, 0, 0, address="10.251.4.12", state="down"),
        NodeCapacity("lab3", 2, 1024, 0, 0, address="10.251.4.13", state="disconnected"),
    )
)


@pytest.mark.parametrize(
    ("tasks", "lost", "pending", "explained"),
    [
        ([_t("a", "running", "lab1")], [], [], set()),
        (
            [_t("a", "dead", "lab2"), _t("b", "running", "lab2", config_hash="old"),
             _t("c", "running", "lab1")],
            [LostHost("lab2", 2)], [], {"a", "b"},
        ),
        (  # no node name: matched by address
            [_t("a", "dead", host="10.251.4.13")], [LostHost("lab3", 1)], [], {"a"},
        ),
        (
            [_t("a", "starting", status_message="no node with 0.5 cpus free"),
             _t("b", "dead", status_message="constraint pool=batch matches no node"),
             _t("c", "dead", exit_code=3, status_message="task: non-zero exit (3)"),
             _t("d", "starting", status_message="waiting", config_hash="old")],
            [],
            [PendingTask("a", "no node with 0.5 cpus free"),
             PendingTask("b", "constraint pool=batch matches no node")],
            {"a", "b"},
        ),
    ],
    ids=["all well", "a down node by name", "a down node by address", "pending, not crashes"],
)  # fmt: skip
def test_lost_hosts_and_pending_tasks(
    tasks: list[Task], lost: list[LostHost], pending: list[PendingTask], explained: set[str]
) -> None:
    assert lost_and_pending(tasks, "new", DOWN) == (tuple(lost), tuple(pending), explained)
    assert DOWN == {"lab2": "lab2", "10.251.4.12": "lab2", "lab3": "lab3", "10.251.4.13": "lab3"}


class _LabEngine(FakeEngine):
    lab2_state: str = "down"

    def node_capacity(self) -> Sequence[NodeCapacity]:
        return [
            NodeCapacity("lab1", 2, 1024, 1.5, 0, address="10.251.4.11"),
            NodeCapacity("lab2", 2, 1024, 0, 0, address="10.251.4.12", state=self.lab2_state),
        ]


def test_status_names_a_lost_host_and_pending_reasons_and_shows_each_tasks_host(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_tree(tmp_path)
    (tmp_path / "soa" / "web" / "instances-local.yaml").write_text(
        "main:\n  instances: 3\n  cpus: 0.5\ncanary:\n  instances: 1\n"
    )
    engine = _LabEngine(cluster="local")
    monkeypatch.setattr("paasport.engine.factory.engine_for", lambda cluster: engine)

    def status(*argv: str) -> str:
        with pytest.raises(SystemExit):
            main(["status", "--config", str(config), "-s", "web", "-i", "main", *argv])
        return capsys.readouterr().out

    (entry,) = json.loads(status("--json"))
    new = str(entry["config_hash"])

    def task(tid: str, state: str, node: str, host: str, port: int | None, msg: str) -> Task:
        return Task(tid, "web", "main", "local", new, SHA, state, host=host, port=port,  # type: ignore[arg-type]
                    node=node, name=tid, status_message=msg, started_at=1.0)  # fmt: skip

    engine.tasks = {
        "t1": task("t1", "running", "lab1", "10.251.4.11", 31000, ""),
        "t2": task("t2", "dead", "lab2", "10.251.4.12", None, "host lab2 is down"),
        "t3": task("t3", "starting", "", "", None, "no node with 0.5 cpus free"),
    }
    (entry,) = json.loads(status("--json"))
    assert (entry["state"], entry["why"]) == ("Host down", "1 task on lab2, which is down")
    shown = {t["id"]: (t["node"], t["host_down"], t["status_message"]) for t in entry["tasks"]}
    assert shown == {
        "t1": ("lab1", False, ""),
        "t2": ("lab2", True, "host lab2 is down"),
        "t3": ("", False, "no node with 0.5 cpus free"),
    }
    text = status("-v")
    assert "lab1 10.251.4.11:31000" in text
    assert "lab2 (down) 10.251.4.12" in text
    assert "starting: no node with 0.5 cpus free" in text

    # the lost task replaced; one still cannot be placed: the engine's reason, not a crash
    del engine.tasks["t2"]
    engine.lab2_state = "ready"
    (entry,) = json.loads(status("--json"))
    assert (entry["state"], entry["why"]) == (
        "Waiting",
        "1 task pending: no node with 0.5 cpus free",
    )
