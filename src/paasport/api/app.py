"""``create_app``: the FastAPI application of one cluster's API (docs/api.md).

Reads serve the read model's ``to_json`` (the CLI's ``--json``, byte for byte the same data);
mutations call ``platform.mutations`` like the CLI does (tags in git, never the engine). Every
error is one ``{"error": {"message", "field"?}}`` body (``api.errors``). Route handlers are
plain functions: FastAPI runs them in its thread pool, and every call they make has a deadline.
"""

import logging
import threading
from dataclasses import dataclass
from typing import Annotated, Any, Literal

from fastapi import Depends, FastAPI, Path, Query, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from pydantic import BaseModel, ConfigDict, Field
from starlette.exceptions import HTTPException as StarletteHTTPException

import paasport
from paasport.api.auth import Gate, may_change
from paasport.api.dashboard import install_dashboard
from paasport.api.errors import (
    RateLimited,
    error_body,
    paasport_error_body,
    status_for,
    validation_body,
)
from paasport.api.reads import Coalescer, SharedEngine, json_bytes, json_response
from paasport.api.stream import event_stream, log_stream, sse_response
from paasport.config.system import SystemConfig
from paasport.deploy.workflow import ServiceTarget
from paasport.errors import PaasportError, UsageError
from paasport.monitoring.events import KINDS, Level
from paasport.platform import mutations
from paasport.platform.tokens import TokenRecord, TokenStore
from paasport.view.alerts import load_alerts
from paasport.view.catalog import clusters_json, info_json, load_catalog_tree, services_json
from paasport.view.deployments import load_deployments
from paasport.view.diff import Marking, load_diff
from paasport.view.events import load_events, parse_since
from paasport.view.history import load_deploy_history
from paasport.view.hosts import load_hosts
from paasport.view.logs import load_logs
from paasport.view.mesh import load_mesh
from paasport.view.runs import run_json
from paasport.view.status import load_status

log = logging.getLogger("paasport.api")

NAME = r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$"  # services, instances, deploy groups
Service = Annotated[str, Path(pattern=NAME, description="service name")]
Instance = Annotated[str, Path(pattern=NAME, description="instance name")]
Group = Annotated[str, Path(pattern=NAME, description="deploy group, e.g. prod.everything")]
Json = Any


class MarkBody(BaseModel):
    """``mark-for-deployment``: the commit the deploy group runs from now on."""

    model_config = ConfigDict(extra="forbid")
    sha: str = Field(min_length=4, max_length=64, pattern=r"^[0-9a-fA-F]+$")
    image_version: str | None = Field(default=None, max_length=128)
    force: bool = False  # a sha some group was rolled back from (else 409)
    auto_rollback: bool = False  # the auto-rollback guard watches this deploy


class RollbackBody(BaseModel):
    """``rollback``: back to ``sha`` (default: the sha the group ran before the current)."""

    model_config = ConfigDict(extra="forbid")
    sha: str | None = Field(default=None, min_length=4, max_length=64, pattern=r"^[0-9a-fA-F]+$")
    force: bool = False


class RunBody(BaseModel):
    """``paasport run``: a one-off task of an adhoc instance, or like a long-running one."""

    model_config = ConfigDict(extra="forbid", populate_by_name=True)
    instance: str | None = Field(default=None, pattern=NAME)  # an adhoc instance
    like: str | None = Field(default=None, alias="from", pattern=NAME)
    cmd: str | None = Field(default=None, max_length=8000)
    by: str | None = Field(default=None, max_length=200)  # who typed it, for the event log


class OverrideBody(BaseModel):
    """``autoscale-override``: the range in force until ``until`` (epoch seconds)."""

    model_config = ConfigDict(extra="forbid")
    instance: str = Field(pattern=NAME)
    min: int = Field(ge=0)
    max: int = Field(ge=0)
    until: float
    by: str | None = Field(default=None, max_length=200)


class RunNowBody(BaseModel):
    """``job-run-now``: who asks (for the event log)."""

    model_config = ConfigDict(extra="forbid")
    by: str | None = Field(default=None, max_length=200)


RunId = Annotated[str, Path(pattern=r"^[a-z0-9]{6,20}$", description="run id")]


def create_app(
    system: SystemConfig,
    *,
    stop: threading.Event | None = None,
) -> FastAPI:
    """The API and dashboard of ``system``'s local cluster. ``stop`` ends open event streams
    (server shutdown)."""
    app = FastAPI(
        title="paasport API",
        version=paasport.__version__,
        description="One cluster's paasport: the read model as JSON, the deploy verbs, "
        "events as Server-Sent Events. Errors are {'error': {'message', 'field'?}}.",
    )
    gate = Gate(TokenStore(system.state_dir))
    engine = SharedEngine(system)
    shared = Coalescer()
    app.state.close = engine.close  # ApiServer.close calls it

    def status_json(
        service: str | None, cluster: str | None, instance: str | None, events: bool
    ) -> Response:
        def compute() -> bytes:
            view = load_status(
                system, service, cluster, instance, with_events=events, engine=engine.get()
            )
            return json_bytes(view.to_json())

        return json_response(shared.run(("status", service, cluster, instance, events), compute))

    stopping = stop or threading.Event()
    write_lock = threading.Lock()  # one mutation at a time: tags of one repo, in order
    _install_error_handlers(app)

    def client_of(request: Request) -> str:
        return request.client.host if request.client else "unknown"

    def reader(request: Request) -> TokenRecord | None:
        if not system.api.require_token_for_reads:
            return None
        return gate.identify(request.headers.get("authorization"), client_of(request))

    def writer(request: Request) -> TokenRecord:
        return gate.identify(request.headers.get("authorization"), client_of(request))

    Reader = Annotated[TokenRecord | None, Depends(reader)]
    Writer = Annotated[TokenRecord, Depends(writer)]

    # ---- reads -------------------------------------------------------------------------

    @app.get("/v1/version", tags=["reads"])
    def version(_: Reader) -> Json:
        return {"version": paasport.__version__, "cluster": system.local_cluster, "api": "v1"}

    @app.get("/v1/clusters", tags=["reads"])
    def clusters(_: Reader) -> Json:
        """``paasport list-clusters --json``."""
        return clusters_json(system, load_catalog_tree(system))

    @app.get("/v1/services", tags=["reads"])
    def services(_: Reader) -> Json:
        """``paasport list --json``."""
        body = shared.run(
            ("services",), lambda: json_bytes(services_json(load_catalog_tree(system)))
        )
        return json_response(body)

    @app.get("/v1/services/{service}", tags=["reads"])
    def info(service: Service, _: Reader) -> Json:
        """``paasport info -s SERVICE --json``."""
        return info_json(load_catalog_tree(system, service), service)

    @app.get("/v1/status", tags=["reads"])
    def status_all(
        _: Reader, cluster: str | None = None, events: bool = False, instance: str | None = None
    ) -> Json:
        """``paasport status --json`` of every service on this cluster."""
        return status_json(None, cluster, instance, events)

    @app.get("/v1/services/{service}/status", tags=["reads"])
    def status_service(
        service: Service, _: Reader, cluster: str | None = None, events: bool = False
    ) -> Json:
        """``paasport status -s SERVICE --json`` (this cluster's instances)."""
        return status_json(service, cluster, None, events)

    @app.get("/v1/services/{service}/mesh", tags=["reads"])
    def mesh(service: Service, _: Reader) -> Json:
        """``paasport mesh-status -s SERVICE --json``."""
        return load_mesh(system, service).to_json()

    @app.get("/v1/services/{service}/deployments", tags=["reads"])
    def deployments(service: Service, _: Reader) -> Json:
        """Per deploy group: sha, image, tag and when (``get-latest-deployment --json``)."""
        return load_deployments(system, service).to_json()

    @app.get("/v1/services/{service}/history", tags=["reads"])
    def history(
        service: Service,
        _: Reader,
        deploy_group: str | None = None,
        limit: Annotated[int | None, Query(ge=1, le=10_000)] = None,
    ) -> Json:
        """``paasport deploy-history -s SERVICE --json``."""
        return load_deploy_history(system, service, deploy_group, limit).to_json()

    @app.get("/v1/services/{service}/{instance}/status", tags=["reads"])
    def status_instance(
        service: Service,
        instance: Instance,
        _: Reader,
        cluster: str | None = None,
        events: bool = False,
    ) -> Json:
        """``paasport status -s SERVICE -i INSTANCE --json``: one entry."""
        return status_json(service, cluster, instance, events)

    @app.get("/v1/events", tags=["reads"])
    def events(
        _: Reader,
        where: Annotated[EventQuery, Depends(event_query)],
        limit: Annotated[int, Query(ge=1, le=10_000)] = 100,
    ) -> Json:
        """``paasport events --json`` (the newest ``limit``, oldest first)."""
        return load_events(system, **where.filters(), limit=limit).to_json()

    @app.get("/v1/events/stream", tags=["reads"], response_class=Response)
    def events_stream(
        request: Request, _: Reader, where: Annotated[EventQuery, Depends(event_query)]
    ) -> Response:
        """Server-Sent Events: the matching events since ``since`` (default: none), then each
        new one as it is recorded; a comment every 15 s keeps proxies from closing it."""
        return event_stream(system, request, stopping, **where.filters())

    @app.get("/v1/services/{service}/logs", tags=["reads"])
    def logs(
        service: Service,
        _: Reader,
        instance: str | None = None,
        tail: Annotated[int, Query(ge=1, le=10_000)] = 100,
    ) -> Json:
        """``paasport logs -s SERVICE --tail N --json``: the newest ``tail`` lines, merged."""
        load_catalog_tree(system, service)  # an unknown service is a 404, not "no lines"
        return load_logs(system, service, instance, tail=tail, engine=engine.get()).to_json()

    @app.get("/v1/services/{service}/logs/stream", tags=["reads"], response_class=Response)
    def logs_stream(
        request: Request,
        service: Service,
        _: Reader,
        instance: str | None = None,
        tail: Annotated[int, Query(ge=0, le=10_000)] = 0,
    ) -> Response:
        """Server-Sent Events (``event: log``, data: the ``logs --json`` object): the newest
        ``tail`` lines, then each new line of every task, tasks started later included."""
        load_catalog_tree(system, service)
        return log_stream(
            engine.get(), request, stopping, service=service, instance=instance, tail=tail
        )

    @app.get("/v1/diff", tags=["reads"])
    def diff(
        _: Reader,
        service: Annotated[str | None, Query(pattern=NAME)] = None,
        deploy_group: Annotated[str | None, Query(pattern=NAME)] = None,
        sha: Annotated[str | None, Query(pattern=r"^[0-9a-fA-F]{40}$")] = None,
        image_version: Annotated[str | None, Query(max_length=128)] = None,
    ) -> Json:
        """``paasport diff --json`` of this cluster: what deployd would do now; with
        ``deploy_group`` and ``sha``, what marking that group at that sha would do
        (``mark-for-deployment --dry-run``)."""
        if (deploy_group is None) != (sha is None):
            raise UsageError("deploy_group and sha go together (a dry-run mark)")
        marking = Marking(deploy_group, sha, image_version) if deploy_group and sha else None
        return load_diff(system, service, marking=marking, engine=engine.get()).to_json()

    @app.get("/v1/alerts", tags=["reads"])
    def alerts(_: Reader, service: str | None = None, team: str | None = None) -> Json:
        """The alerts firing now, with the owning team."""
        return load_alerts(system, service=service, team=team).to_json()

    @app.get("/v1/hosts", tags=["reads"])
    def hosts(_: Reader) -> Json:
        """``paasport hosts --json``: the engine's nodes, their state, capacity, reservations."""
        return load_hosts(system, engine.get()).to_json()

    @app.get("/metrics", tags=["reads"], response_class=Response)
    def metrics() -> Response:
        """Prometheus metrics of this paasport process."""
        from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

        from paasport.monitoring import metrics as paasport_metrics

        return Response(generate_latest(paasport_metrics.registry), media_type=CONTENT_TYPE_LATEST)

    # ---- mutations (tags in git, like the CLI) -----------------------------------------

    def actor_for(record: TokenRecord) -> mutations.Actor:
        return mutations.Actor(record.name, record.team, record.name, record.admin)

    def owned_target(service: str, record: TokenRecord) -> ServiceTarget:
        tree, target = mutations.service_target(system, service)
        monitoring = tree.monitoring.get(service)
        may_change(record, service, monitoring.team if monitoring else None)
        return target

    @app.post("/v1/services/{service}/deployments/{deploy_group}", tags=["mutations"])
    def mark(service: Service, deploy_group: Group, body: MarkBody, who: Writer) -> Json:
        """``mark-for-deployment``: ``deploy_group`` runs ``sha`` from now on."""
        with write_lock:
            target = owned_target(service, who)
            outcome = mutations.mark_for_deployment(
                system, target, deploy_group, body.sha, actor_for(who),
                image_version=body.image_version, force=body.force,
                auto_rollback=body.auto_rollback,
            )  # fmt: skip
        return _outcome(outcome)

    @app.post("/v1/services/{service}/deployments/{deploy_group}/rollback", tags=["mutations"])
    def rollback(
        service: Service, deploy_group: Group, who: Writer, body: RollbackBody | None = None
    ) -> Json:
        """Back to ``sha``, or to the sha the group ran before the current one."""
        body = body or RollbackBody()
        with write_lock:
            target = owned_target(service, who)
            outcome = mutations.rollback(
                system, target, deploy_group, body.sha, actor_for(who), force=body.force
            )
        return _outcome(outcome)

    @app.post("/v1/services/{service}/{instance}/{action}", tags=["mutations"])
    def control(
        service: Service,
        instance: Instance,
        action: Literal["start", "stop", "restart"],
        who: Writer,
    ) -> Json:
        """start, stop or restart one instance of this cluster (a control tag)."""
        with write_lock:
            target = owned_target(service, who)
            outcome = mutations.set_desired_state(
                system, target, system.local_cluster, instance, action, actor_for(who)
            )
        return _outcome(outcome)

    # ---- one-off runs (``paasport run`` through the API) --------------------------------

    def the_run(service: str, run_id: str) -> Any:
        from paasport.platform import runs

        found = runs.find_run(engine.get(), service, run_id)
        if found is None:
            from paasport.errors import NotFoundError

            raise NotFoundError(f"{service}: no run {run_id} on cluster {system.local_cluster}")
        return found

    @app.post("/v1/services/{service}/runs", tags=["mutations"], status_code=201)
    def start_run(service: Service, body: RunBody, who: Writer) -> Json:
        """``paasport run``: start a one-off task with the app's current image and config."""
        from paasport.config.tree import load_tree
        from paasport.platform import runs

        owned_target(service, who)
        tree = load_tree(system.soa_dir, [service], system=system)
        plan = runs.plan_run(system, tree, service, system.local_cluster, adhoc=body.instance,
                             like=body.like, cmd=body.cmd)  # fmt: skip
        by = f"{body.by or '?'} (token {who.name}, team {who.team or '-'})"
        run = runs.start_run(system, engine.get(), plan.spec, by)
        return {**run_json(run), "image": plan.spec.image, "source": plan.source}

    @app.get("/v1/services/{service}/runs", tags=["reads"])
    def list_runs(service: Service, _: Reader) -> Json:
        """The service's one-off tasks on this cluster, running or exited (not yet removed)."""
        load_catalog_tree(system, service)
        return [run_json(r) for r in engine.get().list_one_offs(service)]

    @app.get("/v1/services/{service}/runs/{run_id}", tags=["reads"])
    def get_run(service: Service, run_id: RunId, _: Reader) -> Json:
        return run_json(the_run(service, run_id))

    @app.get("/v1/services/{service}/runs/{run_id}/log", tags=["reads"], response_class=Response)
    def run_log(service: Service, run_id: RunId, _: Reader) -> Response:
        """The output kept of a finished run (or job action), as text."""
        from paasport.platform import runs

        return Response(runs.read_log(system.state_dir, service, run_id), media_type="text/plain")

    @app.get("/v1/services/{service}/runs/{run_id}/output/stream", tags=["reads"],
             response_class=Response)  # fmt: skip
    def run_output(
        request: Request, service: Service, run_id: RunId, _: Reader,
        skip: Annotated[int, Query(ge=0)] = 0,
    ) -> Response:  # fmt: skip
        """Server-Sent Events: each output line (``event: line``, past the first ``skip``),
        then ``event: exit`` with the run as it ended."""
        from paasport.platform import runs

        run = the_run(service, run_id)

        def follow(done: threading.Event) -> Any:
            for n, item in enumerate(runs.output_then_exit(engine.get(), run, done)):
                if not isinstance(item, str):
                    yield item if item.done else runs.recorded_end(system, item)
                elif n >= skip:
                    yield item

        return sse_response(request, stopping, follow, run_frame, "paasport run")

    @app.delete("/v1/services/{service}/runs/{run_id}", tags=["mutations"])
    def finish_run(service: Service, run_id: RunId, who: Writer) -> Json:
        """Keep its output, record how it ended, remove it (a running one is stopped)."""
        from paasport.platform import runs

        owned_target(service, who)
        run = the_run(service, run_id)
        path = runs.finish_run(system, engine.get(), run)
        return {**run_json(run), "log": str(path) if path else None}

    @app.post("/v1/services/{service}/autoscale-overrides", tags=["mutations"], status_code=201)
    def autoscale_override(service: Service, body: OverrideBody, who: Writer) -> Json:
        """``paasport autoscale-override``: min/max of an autoscaled instance until ``until``."""
        from paasport.platform.autoscaler import set_override

        owned_target(service, who)
        by = f"{body.by or '?'} (token {who.name}, team {who.team or '-'})"
        found = set_override(system, service, body.instance, body.min, body.max, body.until, by)
        return {
            "service": service,
            "instance": body.instance,
            "cluster": system.local_cluster,
            "min": found.min_instances,
            "max": found.max_instances,
            "until": found.until,
        }

    # ---- scheduled jobs -----------------------------------------------------------------

    @app.get("/v1/jobs", tags=["reads"])
    def all_jobs(_: Reader) -> Json:
        """``paasport jobs --json``: every job of this cluster, its last and next run."""
        from paasport.view.jobs import load_jobs

        return [v.to_json() for v in load_jobs(system, load_catalog_tree(system, None))]

    @app.get("/v1/services/{service}/jobs", tags=["reads"])
    def service_jobs(service: Service, _: Reader) -> Json:
        from paasport.view.jobs import load_jobs

        tree = load_catalog_tree(system, service)
        return [v.to_json() for v in load_jobs(system, tree, service)]

    @app.get("/v1/services/{service}/jobs/{job}/runs", tags=["reads"])
    def job_runs(service: Service, job: Instance, _: Reader) -> Json:
        """``paasport job-runs --json``: the job and its runs, with each action's attempts."""
        from paasport.platform.jobs import find_job
        from paasport.view.jobs import load_jobs

        tree = load_catalog_tree(system, service)
        find_job(tree.jobs, service, job, system.local_cluster)
        return load_jobs(system, tree, service, job)[0].to_json(with_runs=True)

    @app.post("/v1/services/{service}/jobs/{job}/runs", tags=["mutations"], status_code=201)
    def job_run_now(service: Service, job: Instance, who: Writer,
                    body: RunNowBody | None = None) -> Json:  # fmt: skip
        """``paasport job-run-now``: a run now, whatever the schedule; deployd starts it."""
        from paasport.platform.jobs import start_now

        owned_target(service, who)
        by = f"{(body.by if body else None) or '?'} (token {who.name}, team {who.team or '-'})"
        run_id = start_now(system, service, job, by)
        return {"run_id": run_id, "service": service, "job": job,
                "cluster": system.local_cluster}  # fmt: skip

    install_dashboard(app, system, engine)
    return app


def run_frame(item: Any) -> str:
    import json

    if isinstance(item, str):
        return f"event: line\ndata: {json.dumps({'line': item})}\n\n"
    return f"event: exit\ndata: {json.dumps(run_json(item), sort_keys=True)}\n\n"


@dataclass(frozen=True)
class EventQuery:
    """The filters of ``/v1/events`` and its stream (``paasport events``' flags)."""

    service: str | None
    instance: str | None
    level: Level | None
    since: float | None
    kinds: tuple[str, ...] | None

    def filters(self) -> dict[str, Any]:
        return {
            "service": self.service,
            "instance": self.instance,
            "level": self.level,
            "since": self.since,
            "kinds": self.kinds,
        }


def event_query(
    service: str | None = None,
    instance: str | None = None,
    level: Level | None = None,
    since: Annotated[str | None, Query(description="10m, 2h, an ISO time, epoch")] = None,
    kind: Annotated[list[str] | None, Query(description=f"one of {', '.join(KINDS)}")] = None,
) -> EventQuery:
    return EventQuery(service, instance, level, _since(since), _kinds(kind))


def _since(value: str | None) -> float | None:
    import time

    return parse_since(value, time.time()) if value else None


def _kinds(kinds: list[str] | None) -> tuple[str, ...] | None:
    if not kinds:
        return None
    from paasport.errors import UsageError

    for k in kinds:
        if k not in KINDS:
            raise UsageError(f"kind {k!r}: expected one of {', '.join(KINDS)}")
    return tuple(kinds)


def _outcome(outcome: mutations.Outcome) -> Json:
    """What ``mark-for-deployment --json`` prints, plus the event-log warning if any."""
    result, generated = outcome.result, outcome.result.generated
    body: dict[str, Any] = {
        "tag": result.tag,
        "git_sha": result.sha,
        "deployments_json": str(generated.path) if generated and generated.path else None,
        "deployments_json_changed": bool(generated and generated.changed),
    }
    if result.rollback_tag:
        body["rollback_tag"] = result.rollback_tag
    if outcome.supersedes:
        body["supersedes"] = list(outcome.supersedes)
    if outcome.warning:
        body["warning"] = outcome.warning
    return body


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(PaasportError)
    def paasport_error(request: Request, err: PaasportError) -> JSONResponse:
        status = status_for(err)
        headers = None
        if isinstance(err, RateLimited):
            headers = {"Retry-After": f"{err.retry_after:.0f}"}
        if status >= 500:
            log.warning("%s %s: %s", request.method, request.url.path, err)
        return JSONResponse(paasport_error_body(err), status_code=status, headers=headers)

    @app.exception_handler(RequestValidationError)
    def invalid_request(request: Request, err: RequestValidationError) -> JSONResponse:
        return JSONResponse(validation_body(err.errors()), status_code=422)

    @app.exception_handler(StarletteHTTPException)
    def http_error(request: Request, err: StarletteHTTPException) -> JSONResponse:
        message = str(err.detail)
        if err.status_code == 404 and message == "Not Found":
            message = f"no such endpoint: {request.method} {request.url.path} (see /docs)"
        elif err.status_code == 405:
            message = f"{request.method} is not allowed on {request.url.path}"
        return JSONResponse(error_body(message), status_code=err.status_code)

    @app.exception_handler(Exception)
    def unexpected(request: Request, err: Exception) -> JSONResponse:
        log.exception("%s %s failed", request.method, request.url.path)
        return JSONResponse(
            error_body(f"internal error ({type(err).__name__}); the API's log has the details"),
            status_code=500,
        )
