"""``paasport status`` names instances left out for a config error instead of omitting them."""

from __future__ import annotations

from pathlib import Path

from paasport.cli.status import config_errors
from paasport.config.system import ClusterConfig, SystemConfig


def system_for(soa: Path) -> SystemConfig:
    return SystemConfig(
        clusters={"c1": ClusterConfig("c1")}, local_cluster="c1", soa_dir=soa, state_dir=soa
    )


def write_service(soa: Path, instances_c1: str, instances_c2: str = "") -> Path:
    svc = soa / "web"
    svc.mkdir(parents=True)
    (svc / "service.yaml").write_text("description: x\n")
    (svc / "deploy.yaml").write_text("pipeline:\n  - step: c1.main\n  - step: c2.main\n")
    (svc / "instances-c1.yaml").write_text(instances_c1)
    if instances_c2:
        (svc / "instances-c2.yaml").write_text(instances_c2)
    return svc


def test_rejected_instances_of_this_cluster_are_listed_with_their_error(tmp_path: Path) -> None:
    svc = write_service(
        tmp_path,
        "main:\n  instances: 2\nbad:\n  deploy_group: c1.main\n  instances: two\n",
        "other:\n  deploy_group: c2.main\n  instances: nope\n",
    )
    entries = config_errors(system_for(tmp_path), None, None)
    assert [(e["service"], e["instance"], e["state"], e["ok"]) for e in entries] == [
        ("web", "bad", "Config error", False)
    ]
    assert str(entries[0]["why"]).startswith(f"{svc / 'instances-c1.yaml'}:5: bad: instances:")
    assert config_errors(system_for(tmp_path), "web", "main") == []


def test_a_valid_tree_has_no_entries(tmp_path: Path) -> None:
    write_service(tmp_path, "main:\n  instances: 2\n")
    assert config_errors(system_for(tmp_path), "web", None) == []
