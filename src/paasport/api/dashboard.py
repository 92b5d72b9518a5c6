"""The web dashboard: server-rendered pages of the API process (``/``, ``/services/{service}``,
``/alerts``, ``/hosts``) and their static script and style sheet.

Each page gathers the same read model the JSON endpoints serve and hands it to ``api.pages``;
``?fragment=1`` answers only the ``<main>`` the script swaps in when the event stream says
something changed. Readable without JavaScript; actions need it (and a token).
"""

import logging
from collections.abc import Callable, Mapping, Sequence
from importlib import resources
from typing import Annotated, Any

from fastapi import FastAPI, Path, Query
from fastapi.responses import HTMLResponse, Response

from paasport.api import pages
from paasport.api.reads import SharedEngine
from paasport.config.system import SystemConfig
from paasport.config.tree import SoaTree
from paasport.errors import NotFoundError, PaasportError
from paasport.monitoring.events import KINDS
from paasport.view.alerts import load_alerts
from paasport.view.catalog import load_catalog_tree
from paasport.view.events import load_events
from paasport.view.history import load_deploy_history
from paasport.view.hosts import load_hosts
from paasport.view.logs import load_logs
from paasport.view.remote import token_from_env
from paasport.view.status import (
    answer_entries,
    clusters_to_read,
    every_askable_cluster,
    status_of_clusters,
)

log = logging.getLogger("paasport.api")

STATIC = {"dashboard.js": "text/javascript", "dashboard.css": "text/css"}
Fragment = Annotated[bool, Query(description="only the page's <main> (the script's refresh)")]


def _static(name: str) -> bytes:
    return resources.files("paasport.api").joinpath("static", name).read_bytes()


def _or_error(read: Callable[[], Any]) -> Any:
    """``read()``, or the one line saying why it could not be read (shown on the page)."""
    try:
        return read()
    except PaasportError as err:
        return str(err)


def install_dashboard(app: FastAPI, system: SystemConfig, engine: SharedEngine) -> None:
    """Add the dashboard's routes to ``app``."""
    cluster = system.local_cluster
    files = {name: _static(name) for name in STATIC}

    def page(
        title: str, body: str, fragment: bool, stream: str, after: Callable[[], str] | None = None
    ) -> HTMLResponse:
        html = body if fragment else pages.layout(
            title, body, cluster=cluster, stream=stream, kinds=KINDS,
            after=after() if after else "",
        )  # fmt: skip
        return HTMLResponse(html, headers={"Cache-Control": "no-store"})

    def every_cluster_entries(service: str | None) -> list[Mapping[str, Any]]:
        plan = (
            every_askable_cluster(system)
            if service is None
            else clusters_to_read(system, service, None)
        )
        names = list(plan.clusters)
        answers = status_of_clusters(
            system, names, service, None, with_events=False, token=token_from_env(),
            engine=engine.get(),
        )  # fmt: skip
        return [x for a in answers for x in answer_entries(a, service, None)]

    @app.get("/static/{name}", include_in_schema=False)
    def static(name: str) -> Response:
        if name not in files:
            return Response("not found", status_code=404, media_type="text/plain")
        return Response(
            files[name], media_type=STATIC[name], headers={"Cache-Control": "max-age=300"}
        )

    @app.get("/", response_class=HTMLResponse, tags=["dashboard"])
    def overview(fragment: Fragment = False, q: str = "") -> HTMLResponse:
        """Services at a glance, what needs attention first."""
        tree = load_catalog_tree(system)
        teams = {s: (m.team if (m := tree.monitoring.get(s)) else None) for s in tree.services}
        alerts = load_alerts(system).to_json()
        body = pages.overview_body(every_cluster_entries(None), teams, alerts, q)
        return page("services", body, fragment, "/v1/events/stream")

    @app.get("/services/{service}", response_class=HTMLResponse, tags=["dashboard"])
    def service_page(
        service: Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}$")],
        fragment: Fragment = False,
    ) -> HTMLResponse:
        """One service on every cluster: instances, deploys, events, alerts, logs."""
        try:
            tree = load_catalog_tree(system, service)
        except NotFoundError as err:
            missing = f'<h1>No such service</h1><p class="why">{pages.e(err)}</p>'
            answer = page(service, missing, fragment, "")
            answer.status_code = 404
            return answer
        svc = tree.services[service]
        monitoring = tree.monitoring.get(service)
        history = _or_error(lambda: load_deploy_history(system, service, None, 200).to_json())
        groups = _deploy_groups(tree, service)
        events = load_events(system, service=service, limit=200).to_json()
        timeline = [ev for ev in events if ev["kind"] in pages.KINDS_TIMELINE]

        def logs() -> str:  # only for the whole page: a refresh leaves the streaming tail be
            tail = _or_error(
                lambda: load_logs(system, service, None, tail=40, engine=engine.get()).to_json()
            )
            return pages.log_section(service, tail)

        body = pages.service_body(
            service,
            team=monitoring.team if monitoring else None,
            description=getattr(svc, "description", None),
            local_cluster=cluster,
            entries=every_cluster_entries(service),
            history=history,
            deploy_groups=groups,
            timeline=list(reversed(timeline))[:30],
            events=list(reversed(events))[:20],
            alerts=load_alerts(system, service=service).to_json(),
        )
        return page(service, body, fragment, f"/v1/events/stream?service={service}", logs)

    @app.get("/alerts", response_class=HTMLResponse, tags=["dashboard"])
    def alerts_page(fragment: Fragment = False) -> HTMLResponse:
        """Every alert firing now."""
        body = pages.alerts_body(load_alerts(system).to_json())
        return page("alerts", body, fragment, "/v1/events/stream?kind=alert")

    @app.get("/hosts", response_class=HTMLResponse, tags=["dashboard"])
    def hosts_page(fragment: Fragment = False) -> HTMLResponse:
        """The cluster's hosts with their state and reservations."""
        body = pages.hosts_body(_or_error(lambda: load_hosts(system, engine.get()).to_json()))
        return page("hosts", body, fragment, "/v1/events/stream?kind=host")


def _deploy_groups(tree: SoaTree, service: str) -> Sequence[str]:
    from paasport.deploy import workflow

    try:
        return workflow.target_from_tree(tree, service, write=False).deploy_groups
    except PaasportError:
        return ()
