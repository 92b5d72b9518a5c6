"""``paasport status`` names the instances the store keeps because the configs' change would
remove every instance of a service at once (over a fake engine running them)."""

from __future__ import annotations

import json
import shutil
from collections.abc import Callable
from pathlib import Path

import pytest
from test_view_status import SHA, write_tree

from paasport.cli.main import main
from paasport.types import AppSpec

from fake_engine import FakeEngine


def _delete(svc: Path) -> None:
    (svc / "instances-local.yaml").unlink()


def _empty_on_purpose(svc: Path) -> None:
    (svc / "instances-local.yaml").write_text("# gone on purpose\n{}\n")


def _drop_canary(svc: Path) -> None:
    (svc / "instances-local.yaml").write_text("main:\n  instances: 1\n")


def _other_cluster_only(svc: Path) -> None:
    _delete(svc)
    (svc / "instances-elsewhere.yaml").write_text("main:\n  deploy_group: local.main\n")


def _remove_folder(svc: Path) -> None:
    shutil.rmtree(svc)


# (what happens to web's configs, the web entries status shows: (instance, a config error))
CASES: list[tuple[Callable[[Path], None], list[tuple[str, bool]]]] = [
    (_delete, [("canary", True), ("main", True)]),
    (_other_cluster_only, [("canary", True), ("main", True)]),
    (_empty_on_purpose, []),  # {} removes them on purpose: deployd stops them
    (_drop_canary, [("main", False)]),  # one instance left: the store accepts it
    (_remove_folder, []),  # the service is gone: deployd removes what runs
]


@pytest.mark.parametrize(("change", "shown"), CASES, ids=[c.__name__ for c, _ in CASES])
def test_status_shows_a_config_error_for_what_the_store_keeps(
    change: Callable[[Path], None],
    shown: list[tuple[str, bool]],
    tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
    capsys: pytest.CaptureFixture[str],
) -> None:
    config = write_tree(tmp_path)
    engine = FakeEngine(cluster="local")
    monkeypatch.setattr("paasport.engine.factory.engine_for", lambda cluster: engine)
    for instance in ("main", "canary"):
        engine.create_app_version(
            AppSpec("web", instance, "local", "img", SHA, "c" * 12, replicas=1), 1
        )
    change(tmp_path / "soa" / "web")
    engine.calls.clear()
    with pytest.raises(SystemExit):
        main(["status", "--config", str(config), "--json"])
    entries = [e for e in json.loads(capsys.readouterr().out) if e["service"] == "web"]
    assert sorted((e["instance"], e["state"] == "Config error") for e in entries) == shown
    assert engine.calls["list"] == 1  # one listing per status call
    for entry in entries:
        if entry["state"] == "Config error":
            assert entry["ok"] is False
            assert "would remove every instance of the service (canary, main)" in entry["why"]
            assert str(entry["why"]).endswith(
                "(what runs is left as it is until the file is fixed)"
            )


def test_status_text_and_exit_code_of_a_refused_removal(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    config = write_tree(tmp_path)
    engine = FakeEngine(cluster="local")
    monkeypatch.setattr("paasport.engine.factory.engine_for", lambda cluster: engine)
    engine.create_app_version(AppSpec("web", "main", "local", "img", SHA, "c" * 12, replicas=1), 1)
    svc = tmp_path / "soa" / "web"
    (svc / "instances-local.yaml").write_text("_template: {cpus: 1}\n")  # no instance, not empty
    (svc / "kubernetes-local.yaml").write_text("_template: {cpus: 1}\n")  # no instance, not empty
    with pytest.raises(SystemExit) as exited:
        main(["status", "--config", str(config), "-s", "web", "-i", "main"])
    assert exited.value.code == 1
    out = capsys.readouterr().out
    assert out.splitlines() == [
        "web.main (local)  Config error",
        f"  why: {svc / 'instances-local.yaml'}, {svc / 'kubernetes-local.yaml'}: this change "
        "would remove every instance of the service (main); write {} in the file to remove "
        "them on purpose, or remove the service folder (what runs is left as it is until the "
        "file is fixed)",
    ]
