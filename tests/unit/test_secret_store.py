"""Secrets (config.secrets): SECRET(name) references, the encrypted store in the state dir, the
versions a tree load puts in an instance's config (and so its hash), and what is refused."""

from __future__ import annotations

import stat
from pathlib import Path

import pytest

from paasport.bounce.desired import config_hash
from paasport.config.secrets import SecretStore, index_path, read_index, secret_ref, secret_refs
from paasport.config.system import ClusterConfig, SystemConfig
from paasport.config.tree import load_tree
from paasport.errors import ConfigError, NotFoundError, UsageError
from paasport.types import DeploymentState

VALUE = b"hunter2-but-longer"


@pytest.mark.parametrize(
    ("value", "name"),
    [
        ("SECRET(db)", "db"),
        ("SECRET(db.pass_word-2)", "db.pass_word-2"),
        ("SECRET()", None),
        ("SECRET(-x)", None),
        ("secret(db)", None),
        (" SECRET(db)", None),
        ("SECRET(db) ", None),
        ("plain", None),
        (3, None),
    ],
)
def test_secret_ref(value: object, name: str | None) -> None:
    assert secret_ref(value) == name


def test_refs_of_an_env() -> None:
    assert secret_refs({"A": "SECRET(a)", "B": "b", "C": "SECRET(a)"}) == {"A": "a", "C": "a"}


def test_put_update_remove_and_the_files(tmp_path: Path) -> None:
    store = SecretStore(tmp_path, "c1")
    first, existed = store.put("web", "db", VALUE, now=10.0)
    assert not existed and first.changed == 10.0 and len(first.version) == 12
    second, existed = store.put("web", "db", b"another", now=20.0)
    assert existed and second.version != first.version
    assert [e.to_json() for e in store.entries("web")] == [
        {"name": "db", "version": second.version, "changed": 20.0}
    ]
    assert store.resolve_env("web", {"A": "SECRET(db)", "B": "x"}) == {"A": "another", "B": "x"}
    for path in (store.key_path, index_path(tmp_path, "c1", "web")):
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
        assert VALUE not in path.read_bytes() and b"another" not in path.read_bytes()
    assert stat.S_IMODE((tmp_path / "secrets").stat().st_mode) == 0o700
    key = store.key_path.read_bytes()
    store.put("api", "x", b"y", now=1.0)
    assert store.key_path.read_bytes() == key  # one key per cluster, made once
    store.remove("web", "db")
    assert store.entries("web") == []
    with pytest.raises(NotFoundError, match=r"web: no secret 'db' on cluster c1 \(secrets: none\)"):
        store.remove("web", "db")


@pytest.mark.parametrize(
    ("name", "value", "error"),
    [
        ("bad name", b"v", UsageError),
        ("ok", b"", UsageError),
        ("ok", b"x" * (64 * 1024 + 1), UsageError),
    ],
)
def test_refused_values(tmp_path: Path, name: str, value: bytes, error: type[Exception]) -> None:
    with pytest.raises(error):
        SecretStore(tmp_path, "c1").put("web", name, value, now=1.0)


def test_resolving_a_missing_secret_names_the_key_and_a_bad_key_is_named(tmp_path: Path) -> None:
    store = SecretStore(tmp_path, "c1")
    store.put("web", "db", VALUE, now=1.0)
    with pytest.raises(NotFoundError, match=r"web: env B: no secret 'other' on cluster c1"):
        store.resolve_env("web", {"B": "SECRET(other)"})
    store.key_path.write_bytes(b"not a fernet key\n")
    with pytest.raises(ConfigError, match="not a usable secret key") as err:
        store.resolve_env("web", {"A": "SECRET(db)"})
    assert VALUE.decode() not in str(err.value)


def _tree(tmp_path: Path) -> tuple[Path, SystemConfig]:
    soa = tmp_path / "soa"
    svc = soa / "web"
    svc.mkdir(parents=True)
    (svc / "service.yaml").write_text("description: x\n")
    (svc / "deploy.yaml").write_text("pipeline:\n  - step: c1.main\n")
    (svc / "instances-c1.yaml").write_text(
        "main:\n  deploy_group: c1.main\n  cmd: run\n  env:\n    DB: SECRET(db)\n    A: b\n"
    )
    system = SystemConfig(clusters={"c1": ClusterConfig("c1")}, local_cluster="c1",
                          soa_dir=soa, state_dir=tmp_path / "state")  # fmt: skip
    return soa, system


def test_a_tree_load_names_a_missing_secret_and_hashes_the_versions(tmp_path: Path) -> None:
    soa, system = _tree(tmp_path)
    tree = load_tree(soa, ["web"], system=system)
    assert [str(p).replace(str(soa), "SOA") for p in tree.errors] == [
        "SOA/web/instances-c1.yaml:5: main: env.DB: 'db': no such secret of web on cluster c1 "
        "(paasport secret add -s web -n db)"
    ]
    assert not tree.instances_for("web", "c1", "main")  # left out until it exists
    store = SecretStore(system.state_dir, "c1")
    entry, _ = store.put("web", "db", VALUE, now=1.0)
    [config] = load_tree(soa, ["web"], system=system).instances_for("web", "c1", "main")
    assert config.secret_versions == (("db", entry.version),)
    assert config.env["DB"] == "SECRET(db)"  # the config never holds the value
    deployment = DeploymentState("services-web:paasta-" + "a" * 40, "a" * 40)
    before = config_hash(config, deployment)
    store.put("web", "db", b"rotated", now=2.0)
    [rotated] = load_tree(soa, ["web"], system=system).instances_for("web", "c1", "main")
    assert config_hash(rotated, deployment) != before  # a new version bounces
    assert read_index(system.state_dir, "c2", "web") == {}  # another cluster: none here


@pytest.mark.parametrize(
    ("ok", "detail", "elapsed", "said"),
    [
        (True, "HTTP 200", 0.0, True),
        (False, "HTTP 404", 1.0, None),  # within the grace period: not yet
        (False, "HTTP 404", 5.0, False),  # past it: failed
        (False, "task is exited (exit code 1)", 0.5, False),  # an exited task fails at once
    ],
)
def test_local_run_verdict(ok: bool, detail: str, elapsed: float, said: bool | None) -> None:
    from paasport.engine.health import ProbeResult
    from paasport.platform.local_run import verdict
    from paasport.types import HealthCheck

    assert verdict(ProbeResult(ok, detail), elapsed, HealthCheck(grace_period_seconds=5)) == said
