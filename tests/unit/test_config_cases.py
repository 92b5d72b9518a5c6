"""soa-configs case tables (tests/cases/config/*.yaml): a tree of files -> problems and values.

Each case starts from a small valid service ``svc`` (BASE below), overrides or deletes files
(null deletes; ``raw_files`` are written as latin-1 bytes, ``links`` as symlinks) and lists
every problem expected, in order, as the CLI prints it (paths relative to the soa dir,
``[warning]``/``[note]`` suffixes). ``instances`` checks merged field values. The system config's
``allowed_host_paths`` and ``allow_host_network`` can be set per case.
"""

from __future__ import annotations

from dataclasses import asdict
from pathlib import Path
from typing import Any

import pytest
import yaml

from paasport.config.system import ClusterConfig, SystemConfig
from paasport.config.tree import load_tree

CASES = Path(__file__).resolve().parents[1] / "cases" / "config"

BASE = {
    "svc/service.yaml": "description: a service\ngit_url: git@example.com:svc.git\n",
    "svc/deploy.yaml": "pipeline:\n  - step: itest\n  - step: local.canary\n  - step: local.main\n",
    "svc/smartstack.yaml": "main:\n  proxy_port: 19001\n",
    "svc/monitoring.yaml": "team: a-team\n",
    "svc/instances-local.yaml": "main:\n  cmd: run\n",
}


def _cases() -> list[Any]:
    out = []
    for path in sorted(CASES.glob("*.yaml")):
        for case in yaml.safe_load(path.read_text())["cases"]:
            out.append(pytest.param(case, id=f"{path.stem}:{case['name']}"))
    return out


def _write(root: Path, case: dict[str, Any]) -> None:
    files = {} if case.get("no_base") else dict(BASE)
    files.update(case.get("files") or {})
    for name, text in files.items():
        if text is None:
            continue
        target = root / name
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(text)
    for name, text in (case.get("raw_files") or {}).items():
        (root / name).write_bytes(text.encode("latin-1"))  # bytes that are not UTF-8
    for name, target in (case.get("links") or {}).items():
        (root / name).unlink(missing_ok=True)
        (root / name).symlink_to(target)


def _render(p: Any, root: Path) -> str:
    text = str(p).replace(f"{root}/", "")
    return text if p.severity == "error" else f"{text} [{p.severity}]"


@pytest.mark.parametrize("case", _cases())
def test_config_case(case: dict[str, Any], tmp_path: Path) -> None:
    root = tmp_path / "soa"
    root.mkdir()
    _write(root, case)
    clusters = case.get("clusters", ["local"])
    defaults = case.get("instance_defaults", {})
    system = SystemConfig(
        clusters={c: ClusterConfig(c) for c in clusters},
        soa_dir=root,
        state_dir=tmp_path,
        instance_defaults=defaults,
        allowed_host_paths=tuple(case.get("allowed_host_paths", ())),
        allow_host_network=case.get("allow_host_network", False),
    )
    tree = load_tree(root, case.get("services"), system=system)
    assert [_render(p, root) for p in tree.problems] == case.get("problems", [])
    for key, expected in (case.get("instances") or {}).items():
        _check_values(key, expected, tree.instances_for(*key.split(".")))
    for key, expected in (case.get("adhoc") or {}).items():
        _check_values(key, expected, tree.adhoc_for(*key.split(".")))
    for key, expected in (case.get("jobs") or {}).items():
        service, cluster, job = key.split(".")
        jobs = tree.jobs_for(service, cluster, job)
        if expected is None:
            assert jobs == (), f"{key} should have been left out"
            continue
        assert len(jobs) == 1, f"{key} not loaded"
        got = {
            "schedule": jobs[0].schedule, "time_zone": jobs[0].time_zone,
            "expected_runtime": jobs[0].expected_runtime,
            "order": [a.name for a in jobs[0].actions], "team": jobs[0].monitoring.team,
            "cmds": [a.config.cmd for a in jobs[0].actions],
        }  # fmt: skip
        for field, value in expected.items():
            assert got[field] == value, f"{key} {field}"
    if "rejected" in case:
        assert sorted(".".join(r) for r in tree.rejected_instances) == case["rejected"]
    if "incomplete" in case:
        assert sorted(tree.incomplete_services) == case["incomplete"]


def _check_values(key: str, expected: dict[str, Any] | None, found: tuple[Any, ...]) -> None:
    if expected is None:
        assert found == (), f"{key} should have been left out"
        return
    assert len(found) == 1, f"{key} not loaded"
    values = asdict(found[0])
    for field, value in expected.items():
        got = values
        for part in field.split("."):
            got = got[part]
        if isinstance(got, tuple):
            got = [asdict(v) if hasattr(v, "__dataclass_fields__") else v for v in got]
        assert got == value, f"{key} {field}"
