"""Property and small table tests: arbitrary YAML never crashes validation; system config; lines."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from paasport.config.merge import deep_merge, deploy_groups_of, dns_label_problem
from paasport.config.source import parse_yaml
from paasport.config.spec import parse_duration
from paasport.config.system import default_config_text, load_system_config
from paasport.config.tree import load_tree
from paasport.errors import ConfigError, ConfigProblem

EXAMPLES = Path(__file__).resolve().parents[2] / "examples" / "soa-configs"

scalars = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(-(10**6), 10**6),
    st.floats(allow_nan=True, allow_infinity=True),
    st.text(max_size=12),
    st.sampled_from(["cpus", "main", "19001", "svc.main", "5m", "-1", "http", "{cluster}"]),
)
keys = st.one_of(
    st.text(max_size=10),
    st.sampled_from(
        [
            "main",
            "_tmpl",
            "cpus",
            "mem",
            "cmd",
            "args",
            "env",
            "registrations",
            "proxy_port",
            "monitoring",
            "pipeline",
            "step",
            "parallel",
            "deploy_group",
            "extra_volumes",
            "team",
        ]
    ),
)
documents = st.recursive(
    scalars,
    lambda children: st.one_of(
        st.lists(children, max_size=4), st.dictionaries(keys, children, max_size=5)
    ),
    max_leaves=20,
)
FILES = [
    "service.yaml",
    "deploy.yaml",
    "smartstack.yaml",
    "monitoring.yaml",
    "instances-local.yaml",
    "marathon-x.yaml",
]


@settings(
    max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(doc=documents, name=st.sampled_from(FILES), wrap=st.booleans())
def test_arbitrary_yaml_documents_give_clean_problems(
    doc: object, name: str, wrap: bool, tmp_path_factory: pytest.TempPathFactory
) -> None:
    root = tmp_path_factory.mktemp("soa")
    shutil.copytree(EXAMPLES / "hello", root / "hello")
    if wrap and name.startswith(("instances", "marathon", "smartstack")):
        doc = {"main": doc}
    (root / "hello" / name).write_text(yaml.safe_dump(doc))
    tree = load_tree(root)
    assert all(isinstance(p, ConfigProblem) and p.message for p in tree.problems)
    for p in tree.errors:
        assert "Traceback" not in str(p)


@settings(max_examples=150, deadline=None)
@given(text=st.text(max_size=80))
def test_arbitrary_text_parses_or_reports_a_line(text: str) -> None:
    doc = parse_yaml(text, "f.yaml")
    for p in doc.problems:
        assert p.file == "f.yaml" and p.message


def test_lines_follow_merge_keys_and_lists() -> None:
    doc = parse_yaml(
        "_t: &t\n  cpus: 1\n  env:\n    A: b\nmain:\n  <<: *t\n  args:\n    - x\n    - y\n", "f"
    )
    assert doc.data == {
        "_t": {"cpus": 1, "env": {"A": "b"}},
        "main": {"cpus": 1, "env": {"A": "b"}, "args": ["x", "y"]},
    }
    assert doc.line_of(("main", "cpus")) == 2  # written in the template
    assert doc.line_of(("main", "env", "A")) == 4
    assert doc.line_of(("main", "args", 1)) == 9
    assert doc.line_of(("main", "nothing", "here")) == 5  # longest existing prefix


def test_yaml_keys_stay_text_and_dates_stay_text() -> None:
    doc = parse_yaml("on: 2020-01-01\n123: 0x10\nno: 1_000\n", "f")
    assert doc.data == {"on": "2020-01-01", "123": 16, "no": 1000}


def test_recursive_alias_is_a_problem() -> None:
    doc = parse_yaml("a: &a [*a]\n", "f")
    assert [p.message for p in doc.problems] == ["a recursive alias is not supported"]


@pytest.mark.parametrize(
    ("text", "seconds"),
    [
        ("30s", 30.0),
        ("5m", 300.0),
        ("1h", 3600.0),
        ("1h30m", 5400.0),
        ("2d", 172800.0),
        ("1W", 604800.0),
        ("1.5m", 90.0),
        ("5", None),
        ("m", None),
        ("5 m", None),
        ("-5m", None),
    ],
)
def test_parse_duration(text: str, seconds: float | None) -> None:
    assert parse_duration(text) == seconds


def test_deep_merge_dicts_merge_lists_replace() -> None:
    assert deep_merge({"a": {"x": 1, "y": 2}, "l": [1, 2]}, {"a": {"y": 3}, "l": [3]}) == {
        "a": {"x": 1, "y": 3},
        "l": [3],
    }


def test_deploy_groups_skip_build_steps_and_flatten_parallel() -> None:
    pipeline = [
        {"step": "itest"},
        {"step": "security-check"},
        {"step": "push-to-registry"},
        {"step": "command-lint"},
        {"step": "dev.everything"},
        {"parallel": [{"step": "prod.canary"}, {"step": "itest-and-push-to-registry"}]},
        {"step": "prod.main"},
    ]
    assert deploy_groups_of(pipeline) == ("dev.everything", "prod.canary", "prod.main")


@pytest.mark.parametrize(
    ("name", "ok"), [("main", True), ("a_b", True), ("x" * 63, True), ("a_" * 31 + "b", False)]
)
def test_dns_label(name: str, ok: bool) -> None:
    assert (dns_label_problem(name) is None) == ok


def test_system_config_defaults_when_missing(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PAASPORT_SOA_DIR", raising=False)
    monkeypatch.delenv("PAASPORT_STATE_DIR", raising=False)
    system = load_system_config(tmp_path / "none.yaml")
    assert list(system.clusters) == ["local"]
    assert system.local.engine == "docker"
    assert system.soa_dir == Path("/etc/paasport/soa-configs")
    assert system.source_file == ""


def test_system_config_precedence(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    config = tmp_path / "paasport.yaml"
    config.write_text(
        "clusters: {local: {engine: docker}, east: {engine: swarm, docker_host: tcp://h:2375}}\n"
        "soa_dir: soa\nstate_dir: /srv/state\ndocker_registry: 127.0.0.1:5000\n"
        "instance_defaults: {mem: 256, gpus: 1}\n"
        "discovery: {registry: zookeeper, proxy_bind: [127.0.0.1, 172.17.0.1]}\n"
        "monitoring: {alertmanager_url: 'http://127.0.0.1:9093', check_interval_seconds: 2}\n"
    )
    monkeypatch.delenv("PAASPORT_SOA_DIR", raising=False)
    monkeypatch.delenv("PAASPORT_STATE_DIR", raising=False)
    monkeypatch.setenv("PAASPORT_CONFIG", str(config))
    system = load_system_config()
    assert system.soa_dir == tmp_path / "soa"
    assert system.state_dir == Path("/srv/state")
    assert system.clusters["east"].docker_host == "tcp://h:2375"
    assert system.discovery.proxy_bind == ("127.0.0.1", "172.17.0.1")
    assert system.discovery.registry == "zookeeper"
    assert system.monitoring.check_interval_seconds == 2.0
    assert system.instance_defaults == {"mem": 256.0}
    assert [p.field for p in system.problems] == ["instance_defaults.gpus"]
    monkeypatch.setenv("PAASPORT_SOA_DIR", "/from/env")
    assert load_system_config().soa_dir == Path("/from/env")
    assert load_system_config(soa_dir=Path("/arg")).soa_dir == Path("/arg")


def test_default_config_written_by_up_loads_back(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.delenv("PAASPORT_SOA_DIR", raising=False)
    monkeypatch.delenv("PAASPORT_STATE_DIR", raising=False)
    config = tmp_path / "etc" / "paasport.yaml"
    config.parent.mkdir()
    soa, state = tmp_path / "soa: configs", tmp_path / "state"
    config.write_text(default_config_text(soa, state))
    system = load_system_config(config)
    assert (system.soa_dir, system.state_dir) == (soa, state)
    assert {n: c.engine for n, c in system.clusters.items()} == {"local": "docker"}
    assert system.problems == ()
    assert (system.allowed_host_paths, system.allow_host_network) == ((), False)


def test_host_access_settings_load_and_are_checked(tmp_path: Path) -> None:
    config = tmp_path / "paasport.yaml"
    config.write_text("allowed_host_paths: [/srv/data, /var/log]\nallow_host_network: true\n")
    system = load_system_config(config)
    assert system.allowed_host_paths == ("/srv/data", "/var/log")
    assert system.allow_host_network is True
    config.write_text("allowed_host_paths: [srv]\nallow_host_network: yes please\n")
    with pytest.raises(ConfigError) as exc:
        load_system_config(config)
    assert [str(p) for p in exc.value.problems] == [
        f'{config}:1: allowed_host_paths[0]: expected an absolute path, found "srv"',
        f'{config}:2: allow_host_network: expected true or false, found "yes please"',
    ]


def test_system_config_errors_name_file_and_line(tmp_path: Path) -> None:
    config = tmp_path / "paasport.yaml"
    config.write_text(
        "clusters:\n  local: {engine: docker}\ndiscovery: {zookeeper_path: nowhere}\nbogus: 1\n"
    )
    with pytest.raises(ConfigError) as exc:
        load_system_config(config)
    assert [str(p) for p in exc.value.problems] == [
        f"{config}:3: discovery.zookeeper_path: "
        'expected an absolute ZooKeeper path, found "nowhere"',
        f"{config}:4: bogus: unknown field",
    ]
