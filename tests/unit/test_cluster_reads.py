"""Reading several clusters: which clusters status asks, and how an API's answer maps onto
paasport's errors and status entries (the HTTP round trips: tests/integration/test_api.py)."""

from __future__ import annotations

import threading
from collections.abc import Callable, Iterator

import pytest

from paasport.config.system import ClusterConfig, SystemConfig
from paasport.deploy.workflow import ServiceTarget
from paasport.errors import ApiUnavailable, NotFoundError, PermanentError, UsageError
from paasport.platform.mutations import api_cluster_of, api_cluster_of_group, through_api
from paasport.view.remote import (
    ClusterAnswer,
    answer_error,
    ask_clusters,
    merge_follows,
    sse_messages,
)
from paasport.view.status import ClusterPlan, answer_entries, plan_clusters, status_path

SYSTEM = SystemConfig(
    clusters={
        "local": ClusterConfig("local"),
        "prod": ClusterConfig("prod", api_url="http://10.0.0.5:5054"),
        "dev": ClusterConfig("dev", api_url="http://10.0.0.6:5054"),
        "dark": ClusterConfig("dark"),  # no api_url: only read on its own hosts
    },
    local_cluster="local",
)


@pytest.mark.parametrize(
    ("service_clusters", "cluster", "expected"),
    [
        pytest.param((), None, ClusterPlan(("local",)), id="nothing named: the local cluster"),
        pytest.param(("local",), None, ClusterPlan(("local",)), id="only local"),
        pytest.param(
            ("prod", "local", "dev"), None, ClusterPlan(("local", "dev", "prod")),
            id="local first, then the others sorted",
        ),
        pytest.param(("prod",), None, ClusterPlan(("prod",)), id="only a remote one"),
        pytest.param(
            ("local", "dark"), None, ClusterPlan(("local",), ("dark",)),
            id="a cluster without api_url is skipped, not failed",
        ),
        pytest.param(
            ("dark",), None, ClusterPlan(("local",), ("dark",)),
            id="nothing askable: the local cluster still answers",
        ),
        pytest.param(
            ("local", "elsewhere"), None, ClusterPlan(("local",)),
            id="a cluster paasport.yaml does not name is not asked",
        ),
        pytest.param(("local", "prod"), "prod", ClusterPlan(("prod",)), id="-c a remote cluster"),
        pytest.param((), "local", ClusterPlan(("local",)), id="-c the local cluster"),
    ],
)  # fmt: skip
def test_plan_clusters(
    service_clusters: tuple[str, ...], cluster: str | None, expected: ClusterPlan
) -> None:
    assert plan_clusters(SYSTEM, service_clusters, cluster) == expected


@pytest.mark.parametrize(
    ("cluster", "message"),
    [
        ("nope", "-c nope: no such cluster in paasport.yaml (clusters: dark, dev, local, prod)"),
        ("dark", "cluster 'dark' has no api_url in paasport.yaml (clusters.dark.api_url)"),
    ],
)
def test_plan_clusters_refuses_a_cluster_it_cannot_read(cluster: str, message: str) -> None:
    with pytest.raises(UsageError) as err:
        plan_clusters(SYSTEM, (), cluster)
    assert message in str(err.value)


@pytest.mark.parametrize(
    ("status", "body", "kind", "text"),
    [
        (404, {"error": {"message": "no service 'x'"}}, NotFoundError,
         "answered 404: no service 'x'"),
        (422, {"error": {"message": "expected an integer", "field": "instances"}}, UsageError,
         "answered 422: expected an integer (instances)"),
        (400, {"detail": "bad"}, UsageError, "answered 400: bad"),
        (503, {"error": {"message": "the engine did not answer"}}, ApiUnavailable,
         "answered 503: the engine did not answer"),
        (401, None, PermanentError, "answered 401: unauthorized"),
        (500, None, PermanentError, "answered 500: no message"),
    ],
)  # fmt: skip
def test_answer_error(status: int, body: object, kind: type, text: str) -> None:
    raw = "unauthorized" if status == 401 else ""
    err = answer_error("cluster prod: API at http://p", status, body, raw)
    assert type(err) is kind
    assert str(err) == f"cluster prod: API at http://p {text}"


def test_a_cluster_that_does_not_answer_is_one_entry_and_the_others_still_print() -> None:
    def read(cluster: str) -> object:
        if cluster == "prod":
            raise ApiUnavailable("cluster prod: API at http://p did not answer in 2 s")
        if cluster == "dev":
            raise NotFoundError("no service 'web' in /soa")
        return [{"service": "web", "instance": "main", "cluster": cluster, "ok": True}]

    answers = ask_clusters(["local", "prod", "dev"], read, deadline=5)
    assert answers == (
        ClusterAnswer(
            "local", [{"service": "web", "instance": "main", "cluster": "local", "ok": True}]
        ),
        ClusterAnswer("prod", None, "cluster prod: API at http://p did not answer in 2 s"),
        ClusterAnswer("dev", None, "cluster dev: no service 'web' in /soa"),
    )
    entries = [e for a in answers for e in answer_entries(a, "web", None)]
    assert [(e["cluster"], e.get("state", "-"), e["ok"]) for e in entries] == [
        ("local", "-", True),
        ("prod", "Unreachable", False),
        ("dev", "Unreachable", False),
    ]
    assert entries[1]["why"] == "cluster prod: API at http://p did not answer in 2 s"
    assert entries[1]["expected"] is None


@pytest.mark.parametrize(
    ("service", "instance", "path"),
    [
        (None, None, "/v1/status"),
        ("web", None, "/v1/services/web/status"),
        ("web", "main", "/v1/services/web/main/status"),
    ],
)
def test_status_path(service: str | None, instance: str | None, path: str) -> None:
    assert status_path(service, instance) == path


def ev(t: float, cluster: str, message: str = "m") -> dict[str, object]:
    return {"time": t, "level": "info", "kind": "bounce", "service": "web", "instance": "main",
            "cluster": cluster, "message": message, "data": {}}  # fmt: skip


@pytest.mark.parametrize(
    ("answers", "limit", "expected"),
    [
        pytest.param(
            [ClusterAnswer("a", [ev(1, "a"), ev(5, "a")]), ClusterAnswer("b", [ev(3, "b")])],
            None, [(1, "a"), (3, "b"), (5, "a")], id="merged by time",
        ),
        pytest.param(
            [ClusterAnswer("a", [ev(1, "a"), ev(5, "a")]), ClusterAnswer("b", [ev(3, "b")])],
            2, [(3, "b"), (5, "a")], id="the newest limit",
        ),
        pytest.param(
            [ClusterAnswer("a", [ev(1, "a")]), ClusterAnswer("b", None, "cluster b: down")],
            None, [(1, "a")], id="a silent cluster adds nothing",
        ),
        pytest.param(
            [ClusterAnswer("a", [ev(1, "a"), {"time": "x"}, {"kind": "bounce"}, "junk"])],
            None, [(1, "a")], id="what is not an event is left out",
        ),
    ],
)  # fmt: skip
def test_merged_events(
    answers: list[ClusterAnswer], limit: int | None, expected: list[tuple[float, str]]
) -> None:
    from paasport.view.events import merged_events

    assert [(e.time, e.cluster) for e in merged_events(answers, limit)] == expected


@pytest.mark.parametrize(
    ("kind", "target", "group", "concerns"),
    [
        ("deploy", "prod.main", "prod.main", True),
        ("deploy", "everything", "everything", True),  # a group the cluster's instances use
        ("deploy", "dev.main", "dev.main", False),
        ("start", "prod.main", None, True),
        ("stop", "dev.main", None, False),
        ("stop", "production.main", None, False),  # a prefix of another cluster's name
    ],
)
def test_history_of_one_cluster(kind: str, target: str, group: str | None, concerns: bool) -> None:
    from paasport.deploy.workflow import HistoryEntry
    from paasport.view.history import concerns_cluster

    entry = HistoryEntry("20260101T000000", kind, target, group, "a" * 40, None, None, "t")
    assert concerns_cluster(entry, "prod", {"prod.main", "everything"}) is concerns


def test_reading_plan_loads_nothing_without_other_apis(tmp_path: object) -> None:
    from paasport.view.status import reading_plan

    alone = SystemConfig(clusters={"local": ClusterConfig("local")}, local_cluster="local")
    assert reading_plan(alone, "web", None) == ClusterPlan(("local",))  # no soa-configs needed
    assert reading_plan(alone, "web", "local") == ClusterPlan(("local",))
    assert reading_plan(SYSTEM, None, "prod") == ClusterPlan(("prod",))
    with pytest.raises(UsageError, match="-c nope"):
        reading_plan(alone, "web", "nope")


def st(**kw: object) -> dict[str, object]:
    base: dict[str, object] = {"state": "Running", "git_sha": "abcdef12" + "0" * 32,
                               "desired_state": "start", "healthy": 2, "expected": 2, "why": "",
                               "app_versions": [{"new": True, "tasks": 2}]}  # fmt: skip
    base.update(kw)
    return base


@pytest.mark.parametrize(
    ("entry", "done", "why"),
    [
        (st(), True, "done"),
        (st(desired_state="stop", healthy=0), True, "stopped"),
        (st(git_sha="99" * 20), False, "deployments.json says 99999999, not abcdef12"),
        (st(git_sha=None), False, "not marked for deployment yet"),
        (st(healthy=1, why=""), False, "1 of 2 tasks healthy"),
        (st(healthy=1, why="check failed"), False, "check failed"),
        (st(app_versions=[{"new": True, "tasks": 2}, {"new": False, "tasks": 1}]), False, "2 of 2"),
        (st(state="Unreachable", why="cluster b: API did not answer"), False, "did not answer"),
    ],
)
def test_a_remote_instance_is_done(entry: dict[str, object], done: bool, why: str) -> None:
    from paasport.cli.wait import entry_done

    got_done, got_why = entry_done(entry, "abcdef12")
    assert got_done is done and why in got_why


TARGET = ServiceTarget(
    service="web",
    git_url="/srv/git/web",
    deploy_groups=("local.main", "prod.main", "everywhere", "dark.main"),
    control_branches={
        "local.main": "local.main",
        "prod.main": "prod.main",
        "prod.canary": "everywhere",
        "dev.main": "everywhere",
        "local.batch": "everywhere",
        "dark.main": "dark.main",
        "dev.batch": "remote-pair",
        "prod.batch": "remote-pair",
    },
)


@pytest.mark.parametrize(
    ("cluster", "through"),
    [
        pytest.param("local", None, id="this host's cluster: tagged here"),
        pytest.param("prod", "prod", id="another cluster with an API: through it"),
        pytest.param("dark", None, id="no api_url: tagged here"),
        pytest.param("nowhere", None, id="unknown to the config: tagged here (workflow says)"),
    ],
)
def test_which_api_changes_an_instance(cluster: str, through: str | None) -> None:
    found = api_cluster_of(SYSTEM, cluster)
    assert (found.name if found else None) == through


@pytest.mark.parametrize(
    ("group", "through"),
    [
        pytest.param("local.main", None, id="runs here: tagged here"),
        pytest.param("prod.main", "prod", id="runs only on prod: prod's API"),
        pytest.param("everywhere", None, id="has an instance here too: tagged here"),
        pytest.param("remote-pair", "dev", id="two remote clusters: the first by name"),
        pytest.param("dark.main", None, id="only on a cluster without API: tagged here"),
        pytest.param("unused", None, id="no instance: tagged here (the group check says)"),
    ],
)
def test_which_api_marks_a_deploy_group(group: str, through: str | None) -> None:
    found = api_cluster_of_group(SYSTEM, TARGET, group)
    assert (found.name if found else None) == through


def test_a_remote_change_without_a_token_says_how_to_get_one() -> None:
    with pytest.raises(UsageError, match=r"cluster prod is changed through its API at "
                       r"http://10\.0\.0\.5:5054, which needs a token: pass --token or set "
                       r"PAASPORT_API_TOKEN"):  # fmt: skip
        through_api(SYSTEM.clusters["prod"], "/v1/services/web/main/restart", {}, None)


@pytest.mark.parametrize(
    ("lines", "messages"),
    [
        pytest.param([], [], id="nothing"),
        pytest.param([": paasport events", ""], [], id="a comment only"),
        pytest.param(["event: mark", 'data: {"a":1}', ""], [("mark", '{"a":1}')], id="one message"),
        pytest.param(["data: x", ""], [("message", "x")], id="no event name: message"),
        pytest.param(["data:x", "data: y", ""], [("message", "x\ny")], id="two data lines"),
        pytest.param(["event: log", "", "data: z", ""], [("message", "z")], id="no data: none"),
        pytest.param(
            ["event: a\r", "data: 1\r", "\r", ": keepalive", "", "event: b", "data: 2", ""],
            [("a", "1"), ("b", "2")],
            id="CRLF and a keepalive between",
        ),
        pytest.param(["event: a", "data: 1"], [], id="cut before its blank line: not given"),
    ],
)
def test_sse_messages(lines: list[str], messages: list[tuple[str, str]]) -> None:
    assert list(sse_messages(lines)) == messages


def test_merged_follows_give_every_sources_items_and_outlive_a_failed_one() -> None:
    def counting(n: int) -> Callable[[threading.Event], Iterator[int]]:
        def follow(stop: threading.Event) -> Iterator[int]:
            yield from range(n)

        return follow

    def broken(stop: threading.Event) -> Iterator[int]:
        yield 100
        raise ApiUnavailable("cluster b: API at http://b did not answer", delay=1.0)

    failures: list[tuple[str, str]] = []
    stop = threading.Event()
    got = list(
        merge_follows(
            {"a": counting(3), "b": broken, "c": counting(2)},
            stop,
            failed=lambda name, err: failures.append((name, str(err))),
        )
    )
    assert sorted(got) == [("a", 0), ("a", 1), ("a", 2), ("b", 100), ("c", 0), ("c", 1)]
    assert [x for name, x in got if name == "a"] == [0, 1, 2]  # each source in its order
    assert failures == [("b", "cluster b: API at http://b did not answer")]
    assert stop.is_set()  # every source ended: the merge ends and tells them


def test_a_merge_stops_its_endless_sources() -> None:
    def endless(stop: threading.Event) -> Iterator[int]:
        n = 0
        while not stop.wait(0.01):
            n += 1
            yield n

    stop = threading.Event()
    merged = merge_follows({"x": endless}, stop, failed=lambda *_: None)
    assert [next(merged)[1] for _ in range(3)] == [1, 2, 3]
    merged.close()
    assert stop.is_set()
