"""The API's pure parts as tables (status codes, error bodies, bearer parsing, ownership, the
failed-auth limit, tokens, firing alerts, SSE frames), then the real app served by uvicorn on
127.0.0.1 over a soa-configs tree of the test's own: error shapes, 401/403/422/404/429, and
that nothing is tagged when a request is refused. Endpoints that ask the engine are in
tests/integration/test_api.py."""

from __future__ import annotations

import json
import stat
import threading
import time
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import httpx
import pytest

from paasport.api.app import create_app
from paasport.api.auth import FailedAuthLimiter, bearer, may_change
from paasport.api.errors import (
    Forbidden,
    RateLimited,
    Unauthorized,
    paasport_error_body,
    status_for,
    validation_body,
)
from paasport.api.openapi import openapi_text
from paasport.api.server import ApiServer, bind, serve
from paasport.api.stream import sse_frame
from paasport.config.system import ClusterConfig, SystemConfig
from paasport.errors import (
    ApiUnavailable,
    ConfigError,
    ConflictError,
    EngineError,
    EngineUnavailable,
    GitError,
    NotFoundError,
    PaasportError,
    PermanentError,
    RegistryUnavailable,
    UsageError,
)
from paasport.monitoring.events import Event
from paasport.platform.tokens import TokenRecord, TokenStore, find_token, hash_token
from paasport.view.alerts import firing_alerts


@pytest.mark.parametrize(
    ("err", "status"),
    [
        (Unauthorized("no token"), 401),
        (Forbidden("not yours"), 403),
        (RateLimited("slow down", 30), 429),
        (UsageError("bad flag"), 400),
        (NotFoundError("no service x"), 404),
        (ConflictError("tag exists"), 409),
        (ConfigError("bad yaml"), 422),
        (GitError("no repo"), 502),
        (EngineUnavailable("docker is down"), 503),
        (RegistryUnavailable("zookeeper is down"), 503),
        (ApiUnavailable("cluster prod did not answer"), 503),
        (EngineError("refused"), 409),
        (PermanentError("cannot"), 409),
        (PaasportError("anything else"), 409),
    ],
)
def test_every_error_has_its_status(err: PaasportError, status: int) -> None:
    assert status_for(err) == status


@pytest.mark.parametrize(
    ("errors", "body"),
    [
        (
            [{"loc": ("body", "sha"), "msg": "String should have at least 4 characters"}],
            {
                "error": {
                    "message": "request body: sha: String should have at least 4 characters",
                    "field": "sha",
                }
            },
        ),
        (
            [
                {"loc": ("query", "limit"), "msg": "too big"},
                {"loc": ("query", "level"), "msg": "not a level"},
            ],
            {
                "error": {
                    "message": "query parameter: limit: too big; level: not a level",
                    "field": "limit",
                }
            },
        ),
        (
            [{"loc": ("body",), "msg": "Field required"}],
            {"error": {"message": "request body: Field required"}},
        ),
        ([], {"error": {"message": "the request is not valid"}}),
    ],
)
def test_validation_errors_are_one_message_naming_the_field(
    errors: list[dict[str, Any]], body: dict[str, Any]
) -> None:
    assert validation_body(errors) == body


def test_a_config_error_body_names_its_first_field_and_lists_every_problem() -> None:
    from paasport.errors import ConfigProblem

    err = ConfigError(
        [
            ConfigProblem(
                "soa/web/instances-x.yaml", 3, "main", "instances", "expected an integer"
            ),
            ConfigProblem("soa/web/instances-x.yaml", 5, "main", "cpus", "expected a number"),
        ]
    )
    body = paasport_error_body(err)
    assert body["error"]["field"] == "instances"
    assert body["error"]["message"].startswith("soa/web/instances-x.yaml:3: main: instances:")
    assert len(body["error"]["problems"]) == 2


@pytest.mark.parametrize(
    ("header", "token"),
    [
        (None, None),
        ("Bearer pp_abc", "pp_abc"),
        ("bearer   pp_abc  ", "pp_abc"),
        ("Basic dXNlcjpwYXNz", Unauthorized),
        ("Bearer", Unauthorized),
        ("Bearer   ", Unauthorized),
        ("pp_abc", Unauthorized),
    ],
)
def test_bearer(header: str | None, token: object) -> None:
    if token is Unauthorized:
        with pytest.raises(Unauthorized, match="Bearer <token>"):
            bearer(header)
    else:
        assert bearer(header) == token


WEB = TokenRecord("web-1", "web", False, "0" * 64, 0.0)
ADMIN = TokenRecord("root", "ops", True, "1" * 64, 0.0)


@pytest.mark.parametrize(
    ("record", "team", "allowed"),
    [
        (WEB, "web", True),
        (WEB, "payments", False),
        (WEB, None, False),  # a service without a team: only admins
        (ADMIN, "payments", True),
        (ADMIN, None, True),
    ],
)
def test_ownership(record: TokenRecord, team: str | None, allowed: bool) -> None:
    if allowed:
        may_change(record, "svc", team)
    else:
        with pytest.raises(Forbidden, match="svc"):
            may_change(record, "svc", team)


def test_failed_authentications_are_limited_per_client_and_age_out() -> None:
    now = [1000.0]
    limiter = FailedAuthLimiter(limit=3, window=60.0, clock=lambda: now[0])
    for _ in range(3):
        limiter.check("10.0.0.1")
        limiter.failed("10.0.0.1")
    with pytest.raises(RateLimited) as caught:
        limiter.check("10.0.0.1")
    assert caught.value.retry_after == pytest.approx(60.0)
    limiter.check("10.0.0.2")  # another client is not affected
    now[0] += 60.0
    limiter.check("10.0.0.1")  # the oldest failures aged out


def test_tokens_are_kept_only_as_hashes_in_a_private_file(tmp_path: Path) -> None:
    store = TokenStore(tmp_path / "state")
    secret, record = store.create("web", now=1.0)
    _, admin = store.create("ops", admin=True, name="root", now=2.0)
    assert record.name == "web-1" and not record.admin and admin.admin
    text = store.path.read_text()
    assert secret not in text and hash_token(secret) in text
    assert stat.S_IMODE(store.path.stat().st_mode) == 0o600
    assert find_token(store.load(), secret) == record
    assert find_token(store.load(), secret + "x") is None
    with pytest.raises(ConflictError, match="root"):
        store.create("ops", name="root", now=3.0)
    with pytest.raises(UsageError, match="--team"):
        store.create("bad team", now=3.0)
    store.revoke("web-1")
    assert find_token(store.load(), secret) is None
    with pytest.raises(NotFoundError, match="root"):
        store.revoke("web-1")


def test_a_damaged_token_file_is_named(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    store.path.write_text("{not json")
    with pytest.raises(ConfigError, match=r"api-tokens\.json: not a paasport token file"):
        store.load()


def alert(t: float, reason: str, check: str = "healthy_tasks", team: str = "web") -> Event:
    return Event(
        time=t,
        level="error" if reason != "resolved" else "info",
        kind="alert",
        service="web",
        instance="main",
        cluster="c1",
        message=f"{check} {reason}",
        data={"check": check, "status": "CRIT", "severity": "ticket", "reason": reason,
              "team": team, "starts_at": 10.0},
    )  # fmt: skip


HEALTHY_NEW = ("healthy_tasks", "healthy_tasks new")
CRASH_NEW = ("crash_loop", "crash_loop new")


@pytest.mark.parametrize(
    ("events", "firing"),
    [
        ([alert(10, "new")], [HEALTHY_NEW]),
        ([alert(10, "new"), alert(20, "resolved")], []),
        ([alert(10, "new"), alert(20, "resolved"), alert(30, "new")], [HEALTHY_NEW]),
        ([alert(10, "new"), alert(40, "realert")], [("healthy_tasks", "healthy_tasks realert")]),
        ([alert(10, "new"), alert(11, "new", "crash_loop")], [CRASH_NEW, HEALTHY_NEW]),
    ],
)  # fmt: skip
def test_firing_alerts_are_the_unresolved_newest_per_check(
    events: list[Event], firing: list[tuple[str, str]]
) -> None:
    found = firing_alerts(events)
    assert sorted((a.check, a.message) for a in found) == firing
    assert all(a.team == "web" and a.cluster == "c1" for a in found)


def test_an_sse_frame_is_the_events_kind_and_its_json() -> None:
    frame = sse_frame(alert(10, "new"))
    head, data, blank = frame.split("\n", 2)
    assert head == "event: alert" and blank == "\n"
    assert json.loads(data.removeprefix("data: "))["message"] == "healthy_tasks new"


# ---- the app, served for real on 127.0.0.1 -----------------------------------------------------


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[httpx.Client, SystemConfig]]:
    soa = tmp_path / "soa" / "web"
    soa.mkdir(parents=True)
    (soa / "service.yaml").write_text("description: web\ngit_url: /nonexistent/web.git\n")
    (soa / "deploy.yaml").write_text("pipeline:\n  - step: c1.main\n")
    (soa / "instances-c1.yaml").write_text("main:\n  instances: 1\n")
    (soa / "monitoring.yaml").write_text("team: web\n")
    system = SystemConfig(
        clusters={"c1": ClusterConfig("c1")},
        local_cluster="c1",
        soa_dir=tmp_path / "soa",
        state_dir=tmp_path / "state",
    )
    server = serve(create_app(system), "127.0.0.1:0", threading.Event())
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            yield client, system
    finally:
        server.close()


def token(system: SystemConfig, team: str) -> dict[str, str]:
    secret, _ = TokenStore(system.state_dir).create(team, now=1.0)
    return {"Authorization": f"Bearer {secret}"}


def test_reads_without_the_engine_answer(served: tuple[httpx.Client, SystemConfig]) -> None:
    client, _ = served
    assert client.get("/v1/version").json()["cluster"] == "c1"
    [svc] = client.get("/v1/services").json()
    assert svc["service"] == "web" and svc["instances"] == ["c1.main"]
    assert client.get("/v1/services/web").json()["team"] == "web"
    assert client.get("/v1/alerts").json() == []
    assert client.get("/openapi.json").json()["info"]["title"] == "paasport API"


@pytest.mark.parametrize(
    ("method", "path", "body", "status", "message"),
    [
        ("GET", "/v1/services/nope", None, 404, "no service nope"),
        ("GET", "/v1/nothing-here", None, 404, "no such endpoint: GET /v1/nothing-here"),
        ("GET", "/v1/services/bad%20name/status", None, 422, "path: service"),
        ("GET", "/v1/events?kind=bogus", None, 400, "kind 'bogus'"),
        ("GET", "/v1/events?since=yesterday-ish", None, 400, "--since 'yesterday-ish'"),
        ("GET", "/v1/events?limit=0", None, 422, "query parameter: limit"),
        ("DELETE", "/v1/services/web", None, 405, "DELETE is not allowed"),
        ("POST", "/v1/services/web/main/restart", None, 401, "this needs a token"),
    ],
)
def test_errors_are_one_body_with_the_right_status(
    served: tuple[httpx.Client, SystemConfig],
    method: str,
    path: str,
    body: object,
    status: int,
    message: str,
) -> None:
    client, _ = served
    r = client.request(method, path, json=body)
    assert r.status_code == status, r.text
    assert set(r.json()) == {"error"}
    assert message in r.json()["error"]["message"]
    assert "Traceback" not in r.text


@pytest.mark.parametrize(
    ("path", "body", "status", "message"),
    [
        ("/v1/services/web/deployments/c1.main", {"sha": "zz"}, 422, "request body: sha"),
        ("/v1/services/web/deployments/c1.main", {"sha": "abcd", "extra": 1}, 422, "extra"),
        ("/v1/services/web/deployments/c1.main", None, 422, "request body"),
        ("/v1/services/web/main/explode", None, 422, "path: action"),
        ("/v1/services/nope/main/restart", None, 404, "no service nope"),
    ],
)
def test_bad_mutations_are_refused_with_the_field(
    served: tuple[httpx.Client, SystemConfig],
    path: str,
    body: object,
    status: int,
    message: str,
) -> None:
    client, system = served
    r = client.post(path, json=body, headers=token(system, "web"))
    assert r.status_code == status, r.text
    assert message in r.json()["error"]["message"]


def test_another_teams_token_is_forbidden_and_a_bad_one_unauthorized(
    served: tuple[httpx.Client, SystemConfig],
) -> None:
    client, system = served
    r = client.post("/v1/services/web/main/restart", headers=token(system, "payments"))
    assert r.status_code == 403
    assert r.json()["error"]["message"] == (
        "web belongs to team web; token payments-1 is team payments's"
    )
    r = client.post("/v1/services/web/main/restart", headers={"Authorization": "Bearer pp_no"})
    assert (r.status_code, r.json()["error"]["message"]) == (401, "unknown or revoked token")


def test_failed_authentications_are_rate_limited(served: tuple[httpx.Client, SystemConfig]) -> None:
    client, _ = served
    codes = [
        client.post("/v1/services/web/main/restart", headers={"Authorization": "Bearer x"})
        for _ in range(11)
    ]
    assert [c.status_code for c in codes] == [401] * 10 + [429]
    assert int(codes[-1].headers["retry-after"]) >= 1


def test_reads_need_a_token_when_the_config_says_so(tmp_path: Path) -> None:
    (tmp_path / "soa").mkdir()
    system = SystemConfig(
        clusters={"c1": ClusterConfig("c1")},
        local_cluster="c1",
        soa_dir=tmp_path / "soa",
        state_dir=tmp_path / "state",
    )
    from dataclasses import replace

    system = replace(system, api=replace(system.api, require_token_for_reads=True))
    server = serve(create_app(system), "127.0.0.1:0", threading.Event())
    try:
        with httpx.Client(base_url=server.url, timeout=10) as client:
            assert client.get("/v1/services").status_code == 401
            assert client.get("/v1/services", headers=token(system, "web")).json() == []
    finally:
        server.close()


def test_a_taken_port_is_one_clear_error() -> None:
    sock = bind("127.0.0.1:0")
    try:
        port = sock.getsockname()[1]
        with pytest.raises(PermanentError, match=f"cannot serve the API on 127.0.0.1:{port}"):
            bind(f"127.0.0.1:{port}")
    finally:
        sock.close()


def test_the_openapi_copy_in_docs_is_current() -> None:
    docs = Path(__file__).parents[2] / "docs" / "openapi.json"
    assert docs.read_text() == openapi_text(), (
        "regenerate: .venv/bin/python -m paasport.api.openapi > docs/openapi.json"
    )


def test_an_api_server_closes_within_its_deadline(tmp_path: Path) -> None:
    system = SystemConfig(
        clusters={"c1": ClusterConfig("c1")},
        local_cluster="c1",
        soa_dir=tmp_path,
        state_dir=tmp_path,
    )
    server: ApiServer = serve(create_app(system), "127.0.0.1:0", threading.Event())
    url = server.url
    server.close()
    with pytest.raises(httpx.ConnectError):
        httpx.get(url + "/v1/version", timeout=2)


def test_concurrent_reads_of_one_key_share_one_computation() -> None:
    from paasport.api.reads import Coalescer

    shared, entered, release = Coalescer(), threading.Event(), threading.Event()
    results: list[object] = []

    def slow() -> str:
        entered.set()
        assert release.wait(10)
        return "answer"

    leader = threading.Thread(target=lambda: results.append(shared.run("k", slow)))
    leader.start()
    assert entered.wait(10)
    joiners = [
        threading.Thread(target=lambda: results.append(shared.run("k", lambda: "not run")))
        for _ in range(5)
    ]
    for t in joiners:
        t.start()
    deadline = time.monotonic() + 10
    while shared.joined < 5 and time.monotonic() < deadline:
        time.sleep(0.01)
    other = shared.run("other key", lambda: "own")  # another key is not held up
    release.set()
    for t in [leader, *joiners]:
        t.join(10)
    assert other == "own" and results == ["answer"] * 6
    assert shared.computed == 2
    assert shared.run("k", lambda: "fresh") == "fresh"  # a finished computation is not reused


def test_a_failed_shared_computation_fails_its_joiners_too() -> None:
    from paasport.api.reads import Coalescer

    shared = Coalescer()

    def broken() -> str:
        raise EngineUnavailable("docker is down")

    with pytest.raises(EngineUnavailable):
        shared.run("k", broken)
    assert shared.run("k", lambda: "back") == "back"


def test_concurrent_token_creates_lose_none(tmp_path: Path) -> None:
    store = TokenStore(tmp_path)
    with ThreadPoolExecutor(8) as pool:
        made = list(pool.map(lambda i: store.create("web", name=f"t{i}", now=1.0)[1], range(16)))
    assert sorted(r.name for r in store.load()) == sorted(r.name for r in made)
