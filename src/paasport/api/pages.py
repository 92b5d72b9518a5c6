"""The dashboard's HTML, pure: the read model's JSON (status entries, history, events, alerts,
hosts) in, one page (or its ``<main>`` fragment) out. Everything shown is escaped here.

``api.dashboard`` gathers the data and serves these; ``api/static/dashboard.js`` swaps the
fragment in when the event stream says something changed, and sends the action buttons'
requests to the API with the token set in the page.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from html import escape
from typing import Any
from urllib.parse import quote

Entry = Mapping[str, Any]  # one status --json entry
KINDS_TIMELINE = (
    "mark", "deploy", "bounce", "app_version", "alert", "crash", "unhealthy", "canary",
)  # fmt: skip


def e(value: object) -> str:
    """Escaped text of ``value`` ("" for None)."""
    return "" if value is None else escape(str(value), quote=True)


def when(epoch: float | None) -> str:
    if epoch is None:
        return ""
    return datetime.fromtimestamp(epoch, UTC).strftime("%Y-%m-%d %H:%M:%S UTC")


def row(*cells: str, attrs: str = "") -> str:
    """One table row of already-escaped cells."""
    return f"<tr{attrs}>" + "".join(f"<td>{c}</td>" for c in cells) + "</tr>"


def or_dash(value: object) -> str:
    return "-" if value is None or value == "" else e(value)


def short(sha: object) -> str:
    return str(sha)[:8] if sha else "-"


# ---- what needs attention and which actions make sense ----------------------------------------


def alert_keys(alerts: Iterable[Mapping[str, Any]]) -> set[tuple[str, str, str]]:
    """(service, instance, cluster) of every firing alert."""
    return {(str(a["service"]), str(a["instance"]), str(a["cluster"])) for a in alerts}


def attention_reasons(entry: Entry, alerting: set[tuple[str, str, str]]) -> list[str]:
    """Why ``entry`` is on the "needs attention" list ([]: it is not)."""
    reasons = []
    if entry.get("state") == "Config error":
        reasons.append("config error")
    elif not entry.get("ok"):
        reasons.append(str(entry.get("state") or "not healthy").lower())
    bounce = entry.get("bounce")
    if isinstance(bounce, Mapping) and bounce.get("in_progress"):
        reasons.append("bouncing")
    key = (str(entry.get("service")), str(entry.get("instance")), str(entry.get("cluster")))
    if key in alerting:
        reasons.append("alerting")
    return reasons


@dataclass(frozen=True)
class Action:
    label: str  # restart | stop | start | rollback
    url: str  # the API endpoint the button posts to
    enabled: bool
    confirm: str  # the question the button asks first
    why_disabled: str = ""


def instance_actions(entry: Entry, local_cluster: str) -> list[Action]:
    """start/stop/restart of an instance of this cluster (the API changes only its own)."""
    if entry.get("cluster") != local_cluster or not entry.get("instance"):
        return []
    service, instance = str(entry["service"]), str(entry["instance"])
    base = f"/v1/services/{quote(service)}/{quote(instance)}"
    desired = entry.get("desired_state")
    where = f"{service}.{instance} on {local_cluster}"
    return [
        Action("restart", f"{base}/restart", desired == "start",
               f"Restart {where}? Its tasks are replaced by a bounce.",
               "" if desired == "start" else "not started"),
        Action("stop", f"{base}/stop", desired == "start",
               f"Stop {where}? Every task of it stops.",
               "" if desired == "start" else "already stopped"),
        Action("start", f"{base}/start", desired == "stop",
               f"Start {where}?", "" if desired == "stop" else "already started"),
    ]  # fmt: skip


def rollback_action(service: str, group: str, history: Sequence[Mapping[str, Any]]) -> Action:
    """Rollback of ``group``: enabled only when the group ran an earlier, different sha."""
    deploys = [h for h in history if h.get("kind") == "deploy" and h.get("deploy_group") == group]
    current = deploys[0]["git_sha"] if deploys else None
    earlier = next((h["git_sha"] for h in deploys if h["git_sha"] != current), None)
    url = f"/v1/services/{quote(service)}/deployments/{quote(group)}/rollback"
    question = f"Roll {service} {group} back from {short(current)} to {short(earlier)}?"
    return Action("rollback", url, earlier is not None, question,
                  "" if earlier else "no earlier sha to go back to")  # fmt: skip


# ---- pieces -------------------------------------------------------------------------------------


def badge(state: object, ok: object) -> str:
    tone = "ok" if ok else ("warn" if state in ("Bouncing", "Starting", "Waiting") else "bad")
    return f'<span class="badge {tone}">{e(state)}</span>'


def action_buttons(actions: Sequence[Action]) -> str:
    if not actions:
        return ""
    buttons = "".join(
        f'<button type="button" data-action="{e(a.label)}" data-url="{e(a.url)}"'
        f' data-confirm="{e(a.confirm)}"{"" if a.enabled else " disabled"}'
        f' title="{e(a.why_disabled or a.label)}">{e(a.label)}</button>'
        for a in actions
    )
    return f'<div class="actions">{buttons}</div>'


def bounce_line(bounce: object) -> str:
    if not isinstance(bounce, Mapping) or not bounce.get("in_progress"):
        return ""
    new, total = int(bounce.get("new_healthy") or 0), int(bounce.get("new_total") or 0)
    waiting = f", waiting on {e(bounce.get('waiting_on'))}" if bounce.get("waiting_on") else ""
    return (
        f'<p class="bounce">{e(bounce.get("method"))} bounce: new {new}/{total} healthy, '
        f"{e(bounce.get('old_remaining'))} old left{waiting} "
        f'<progress max="{max(total, 1)}" value="{new}"></progress></p>'
    )


def tasks_table(tasks: Sequence[Mapping[str, Any]]) -> str:
    if not tasks:
        return '<p class="muted">no tasks</p>'
    rows = []
    for t in tasks:
        proxy = ", ".join(f"{e(k)}: {e(v)}" for k, v in (t.get("proxy") or {}).items()) or "-"
        where = f"{t.get('host') or '?'}:{t.get('port')}" if t.get("port") else t.get("host")
        age = t.get("age_seconds")
        health = t.get("health")
        tone = "ok" if health == "healthy" else ("bad" if health == "unhealthy" else "muted")
        task = f"<code>{e(str(t.get('id', ''))[:12])}</code>" + " <em>new</em>" * bool(t.get("new"))
        state = e(t.get("state"))
        if t.get("status_message"):
            state += f" - {e(t.get('status_message'))}"
        rows.append(
            row(
                task,
                e(where) + " (host down)" * bool(t.get("host_down")),
                state,
                f'<span class="{tone}">{e(health)}</span>',
                proxy,
                "" if age is None else f"{float(age):.0f}s",
                e(t.get("restarts")),
                attrs=f' class="task" data-task-id="{e(t.get("id"))}"',
            )
        )
    head = "<tr><th>task</th><th>host</th><th>state</th><th>health</th><th>proxy</th>"
    head += "<th>age</th><th>restarts</th></tr>"
    return f'<div class="scroll"><table class="tasks">{head}{"".join(rows)}</table></div>'


def instance_card(entry: Entry, local_cluster: str) -> str:
    instance, cluster = entry.get("instance") or "", entry.get("cluster") or ""
    versions = "".join(
        f"<li>git {short(v.get('git_sha'))} config {e(str(v.get('config_hash'))[:8])}"
        f"{' (new)' * bool(v.get('new'))}: {e(v.get('tasks'))} task(s)</li>"
        for v in entry.get("app_versions") or ()
    )
    numbers = ""
    if entry.get("expected") is not None:
        numbers = (
            f'<span class="numbers">{e(entry.get("healthy"))}/{e(entry.get("expected"))} healthy,'
            f" {e(entry.get('running'))} running · desired {e(entry.get('desired_state'))}"
            f" · git {short(entry.get('git_sha'))}</span>"
        )
    why = f'<p class="why">{e(entry.get("why"))}</p>' if entry.get("why") else ""
    traffic = entry.get("traffic")
    if traffic:
        tone = "bad" if str(traffic).endswith(": worse") else "ok"
        why += f'<p class="traffic {tone}">traffic: {e(traffic)}</p>'
    return (
        f'<section class="instance" id="i-{e(cluster)}-{e(instance)}"'
        f' data-instance="{e(instance)}" data-cluster="{e(cluster)}"'
        f' data-state="{e(entry.get("state"))}">'
        f"<h3>{e(instance) or '(service)'} <small>on {e(cluster)}</small> "
        f"{badge(entry.get('state'), entry.get('ok'))}</h3>{numbers}{why}"
        f"{bounce_line(entry.get('bounce'))}"
        f"{f'<ul class=versions>{versions}</ul>' if versions else ''}"
        f"{tasks_table(entry.get('tasks') or ())}"
        f"{action_buttons(instance_actions(entry, local_cluster))}</section>"
    )


def event_list(events: Sequence[Mapping[str, Any]], css: str) -> str:
    if not events:
        return '<p class="muted">nothing yet</p>'
    items = "".join(
        f'<li class="{e(ev.get("level"))}"><time>{when(ev.get("time"))}</time>'
        f' <span class="kind">{e(ev.get("kind"))}</span>'
        f"{' ' + e(ev.get('instance')) if ev.get('instance') else ''} {e(ev.get('message'))}</li>"
        for ev in events
    )
    return f'<ol class="{css}">{items}</ol>'


# ---- pages --------------------------------------------------------------------------------------


def layout(
    title: str,
    body: str,
    *,
    cluster: str,
    stream: str,
    kinds: Sequence[str],
    after: str = "",
) -> str:
    """The whole page around ``body`` (the ``<main>`` the script refreshes); ``after``
    follows it and is left alone by refreshes (the log tail, which streams)."""
    return f"""<!doctype html>
<html lang="en"><head><meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{e(title)} · paasport</title>
<link rel="stylesheet" href="/static/dashboard.css"></head>
<body data-stream="{e(stream)}" data-kinds="{e(",".join(kinds))}">
<header><a class="brand" href="/">paasport</a><span class="cluster">cluster {e(cluster)}</span>
<nav><a href="/">services</a><a href="/alerts">alerts</a><a href="/hosts">hosts</a></nav>
<form id="token-form" hidden><input type="password" id="token" autocomplete="off"
 placeholder="API token for actions" aria-label="API token"><button>set</button></form>
<span id="live-state" class="muted" title="updates from the event stream">static</span>
</header>
<div id="toast" role="status" hidden></div>
<main id="live">{body}</main>
{after}
<script src="/static/dashboard.js" defer></script>
</body></html>
"""


def overview_body(
    entries: Sequence[Entry],
    teams: Mapping[str, str | None],
    alerts: Sequence[Mapping[str, Any]],
    query: str = "",
) -> str:
    """Services at a glance: what needs attention first, then every service (``query``
    filters by service or team name)."""
    q = query.strip().lower()
    alerting = alert_keys(alerts)

    def matches(service: str) -> bool:
        return not q or q in service.lower() or q in (teams.get(service) or "").lower()

    attention = []
    for entry in entries:
        reasons = attention_reasons(entry, alerting)
        service = str(entry.get("service"))
        if reasons and matches(service):
            name = f"{service}.{entry.get('instance') or ''}"
            why = f" - {e(entry.get('why'))}" if entry.get("why") else ""
            attention.append(
                f'<li data-search="{e((service + " " + (teams.get(service) or "")).lower())}">'
                f'<a href="/services/{quote(service)}">{e(name)}</a> on {e(entry.get("cluster"))}'
                f" {badge(entry.get('state'), entry.get('ok'))} {e(', '.join(reasons))}{why}</li>"
            )
    by_service: dict[str, list[Entry]] = {s: [] for s in teams}
    for entry in entries:
        by_service.setdefault(str(entry.get("service")), []).append(entry)
    rows = []
    for service in sorted(by_service):
        if not matches(service):
            continue
        chips = (
            " ".join(
                f'<span class="chip {"ok" if x.get("ok") else "bad"}">'
                f"{e(x.get('instance') or '?')}@{e(x.get('cluster'))}"
                f" {or_dash(x.get('healthy'))}/{or_dash(x.get('expected'))}"
                f" {e(x.get('state'))}</span>"
                for x in by_service[service]
            )
            or '<span class="muted">no instances</span>'
        )
        team = teams.get(service)
        rows.append(
            f'<tr data-search="{e((service + " " + (team or "")).lower())}">'
            f'<td><a href="/services/{quote(service)}">{e(service)}</a></td>'
            f"<td>{e(team or '-')}</td><td>{chips}</td></tr>"
        )
    search = (
        '<form class="search" method="get" action="/"><input id="q" name="q" type="search"'
        f' value="{e(query)}" placeholder="service or team" aria-label="search">'
        "<button>search</button></form>"
    )
    needs = "".join(attention) or '<li class="muted">nothing: every instance is healthy</li>'
    return (
        f"<h1>Services</h1>{search}<h2>Needs attention</h2>"
        f'<ul class="attention">{needs}</ul>'
        '<h2>All services</h2><div class="scroll"><table class="services">'
        "<tr><th>service</th><th>team</th><th>instances</th></tr>"
        f"{''.join(rows)}</table></div>"
    )


def service_body(
    service: str,
    *,
    team: str | None,
    description: str | None,
    local_cluster: str,
    entries: Sequence[Entry],
    history: Sequence[Mapping[str, Any]] | str,
    deploy_groups: Sequence[str],
    timeline: Sequence[Mapping[str, Any]],
    events: Sequence[Mapping[str, Any]],
    alerts: Sequence[Mapping[str, Any]],
) -> str:
    """One service: every instance on every cluster, deploy groups with rollback, the deploy
    timeline, recent events and firing alerts. ``history`` as a str: why it could not be read.
    The log tail is ``log_section``, outside the part the script refreshes."""
    cards = "".join(instance_card(x, local_cluster) for x in entries) or (
        '<p class="muted">no instances on any cluster</p>'
    )
    if isinstance(history, str):
        groups = f'<p class="why">{e(history)}</p>'
    else:
        rows = []
        for group in deploy_groups:
            deploys = [
                h for h in history if h.get("kind") == "deploy" and h.get("deploy_group") == group
            ]
            now = deploys[0] if deploys else None
            marked = (
                f"git {short(now['git_sha'])} since {e(now['time'])}" if now else "never marked"
            )
            rows.append(
                f'<tr data-group="{e(group)}"><td>{e(group)}</td><td>{marked}</td>'
                f"<td>{action_buttons([rollback_action(service, group, history)])}</td></tr>"
            )  # fmt: skip
        groups = f'<div class="scroll"><table class="groups">{"".join(rows)}</table></div>'
    firing = "".join(
        f'<li class="bad">{e(a.get("check"))} {e(a.get("status"))} on {e(a.get("instance"))}'
        f" ({e(a.get('cluster'))}): {e(a.get('message'))}</li>"
        for a in alerts
    )
    owner = f"team {e(team)}" if team else "no team in monitoring.yaml"
    return (
        f'<h1 data-service="{e(service)}">{e(service)}</h1>'
        f'<p class="muted">{owner}{" · " + e(description) if description else ""}</p>'
        f"{f'<h2>Alerts</h2><ul class=alerts>{firing}</ul>' if firing else ''}"
        f"<h2>Instances</h2>{cards}<h2>Deploy groups</h2>{groups}"
        f"<h2>Deploy timeline</h2>{event_list(timeline, 'timeline')}"
        f"<h2>Recent events</h2>{event_list(events, 'events')}"
    )


def log_section(service: str, logs: Sequence[Mapping[str, Any]] | str) -> str:
    """The log tail of this host's cluster: the newest lines, then (with the script) each new
    line from the log stream. ``logs`` as a str: why they could not be read."""
    if isinstance(logs, str):
        text = logs
    else:
        text = "\n".join(f"{x.get('task')} | {x.get('message')}" for x in logs) or "no log lines"
    stream = f"/v1/services/{quote(service)}/logs/stream"
    return (
        f'<section class="logs"><h2>Logs</h2><pre id="logs" data-stream="{stream}">{e(text)}'
        "</pre></section>"
    )


def alerts_body(alerts: Sequence[Mapping[str, Any]]) -> str:
    rows = "".join(
        row(
            e(a.get("check")),
            f'<a href="/services/{quote(str(a.get("service")))}">{e(a.get("service"))}</a>'
            f".{e(a.get('instance'))}",
            e(a.get("cluster")),
            e(a.get("status")),
            e(a.get("severity")),
            or_dash(a.get("team")),
            when(a.get("starts_at")),
            e(a.get("message")),
            attrs=f' class="{"bad" if a.get("status") == "CRIT" else "warn"}"',
        )
        for a in alerts
    )
    if not rows:
        return '<h1>Alerts</h1><p class="muted">no alert is firing</p>'
    head = "<tr><th>check</th><th>instance</th><th>cluster</th><th>status</th><th>severity</th>"
    head += "<th>team</th><th>since</th><th>message</th></tr>"
    return f'<h1>Alerts</h1><div class="scroll"><table class="alerts">{head}{rows}</table></div>'


def hosts_body(hosts: Mapping[str, Any] | str) -> str:
    if isinstance(hosts, str):
        return f'<h1>Hosts</h1><p class="why">{e(hosts)}</p>'

    def num(value: object, unit: str = "") -> str:
        return "-" if value is None else f"{float(str(value)):g}{unit}"

    rows = "".join(
        row(
            e(h.get("node")),
            e(h.get("address")),
            e(h.get("state")),
            or_dash(h.get("role")),
            f"{num(h.get('cpus_reserved'))} / {num(h.get('cpus'))}",
            f"{num(h.get('mem_reserved_mb'), ' MB')} / {num(h.get('mem_mb'), ' MB')}",
            or_dash(h.get("tasks")),
            attrs=' class="bad"' if h.get("down") else "",
        )
        for h in hosts.get("hosts") or ()
    )
    head = "<tr><th>node</th><th>address</th><th>state</th><th>role</th><th>cpus reserved</th>"
    head += "<th>memory reserved</th><th>tasks</th></tr>"
    return (
        f"<h1>Hosts <small>{e(hosts.get('cluster'))}</small></h1>"
        f'<div class="scroll"><table class="hosts">{head}{rows}</table></div>'
    )
