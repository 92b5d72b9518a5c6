"""``paasport diff``: what deployd would do if it applied soa-configs and deployments as they are
now, against what runs (like ``nomad job plan``); ``--against REF`` compares two revisions of a
soa-configs git repo instead.

Renders ``view.diff.load_diff`` for this host's cluster and the others' ``/v1/diff`` (through
their API, in parallel); ``mark-for-deployment --dry-run`` renders the same plans for one mark.
Exit 0 when nothing would change, 1 when something would (``git diff --exit-code``), 2 when a
cluster could not be asked.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import click

from paasport.cli.options import (
    cluster_option,
    config_option,
    json_option,
    print_json,
    service_option,
    settings_from,
    soa_dir_option,
    state_dir_option,
    token_option,
)
from paasport.config.system import SystemConfig
from paasport.view.remote import ClusterAnswer

NO_CHANGE = 0
CHANGES = 1
UNKNOWN = 2  # a cluster did not answer: the plan is incomplete


def plan_lines(plan: Mapping[str, Any], *, verbose: bool = False) -> list[str]:
    """One instance's plan as a person reads it (``InstancePlan.to_json``). Pure."""
    change = plan.get("change")
    head = f"{plan['service']}.{plan['instance']} ({plan['cluster']}): {plan['summary']}"
    if change in ("none", "not deployed") and not verbose:
        return []
    lines = [head]
    for c in plan.get("changes") or ():
        old = _shown(c, "old")
        new = _shown(c, "new")
        lines.append(f"    {c['path']}: {old} -> {new}")
    if change in ("bounce", "bouncing"):
        margin = plan.get("bounce_margin_factor")
        how = (
            f"{plan.get('bounce_method')} bounce (margin {margin:g})" if margin is not None else ""
        )
        tasks = f"{plan.get('tasks_start', 0)} task(s) start, {plan.get('tasks_stop', 0)} stop"
        est = plan.get("estimate_seconds")
        took = (
            f"about {est:g} s (median of its last {plan.get('estimate_from_bounces')} bounces)"
            if est is not None
            else "no past bounce to estimate from"
        )
        lines.append(f"    {how}: {tasks}; {took}")
    room = plan.get("room")
    if isinstance(room, Mapping) and room.get("needed"):
        verdict = "room" if room.get("ok") else "NO ROOM"
        hosts = f" ({_hosts(room)})" if room.get("hosts") else ""
        lines.append(
            f"    {verdict}: {room['needed']} new task(s) at once, {room['fits']} fit{hosts}"
        )
    return lines


def _shown(change: Mapping[str, Any], side: str) -> str:
    import json

    return json.dumps(change[side], sort_keys=True) if side in change else "(unset)"


def _hosts(room: Mapping[str, Any]) -> str:
    return ", ".join(
        f"{h['host']}: {h['cpus_free']:g} cpu / {h['mem_mb_free']:g} MB free"
        + ("" if h.get("schedulable", True) else " (takes no task)")
        for h in room.get("hosts") or ()
    )


def render(docs: Sequence[Mapping[str, Any]], *, verbose: bool = False) -> tuple[int, int, int]:
    """Print each cluster's plans; (instances, changing, bouncing) over them all."""
    total = changing = bouncing = 0
    for doc in docs:
        for problem in doc.get("problems") or ():
            click.secho(f"{doc.get('cluster', '')}: {problem}".lstrip(": "), fg="yellow", err=True)
        for plan in doc.get("instances") or ():
            total += 1
            changing += plan.get("change") not in ("none", "not deployed")
            bouncing += plan.get("change") == "bounce"
            for i, line in enumerate(plan_lines(plan, verbose=verbose)):
                click.echo(click.style(line, bold=True) if i == 0 else line)
    return total, changing, bouncing


def across(
    system: SystemConfig,
    service: str | None,
    cluster: str | None,
    local: Any,
    params: Mapping[str, str],
    token: str | None,
) -> tuple[list[dict[str, Any]], list[ClusterAnswer]]:
    """Each cluster's diff document (this host's from ``local()``), and the clusters that did
    not answer."""
    from paasport.view.remote import read_across, token_from_env
    from paasport.view.status import clusters_to_read, every_askable_cluster

    if service is None and cluster is None:
        plan = every_askable_cluster(system)
    else:
        plan = clusters_to_read(system, service, cluster)
    if plan.clusters == (system.local_cluster,):
        return [local()], []
    answers = read_across(
        system, plan.clusters, local, "/v1/diff", params, token=token_from_env(token)
    )
    docs = [dict(a.data) for a in answers if a.answered and isinstance(a.data, Mapping)]
    return docs, [a for a in answers if not a.answered]


@click.command("diff")
@service_option()
@cluster_option
@click.option(
    "--against", "against", default=None, metavar="REF",
    help="compare soa-configs at this git revision with the working tree instead",
)  # fmt: skip
@click.option("-v", "--verbose", is_flag=True, help="list the instances that stay as they are")
@soa_dir_option
@config_option
@state_dir_option
@json_option
@token_option
@click.pass_context
def diff(
    ctx: click.Context,
    /,
    service: str | None,
    cluster: str | None,
    against: str | None,
    verbose: bool,
    as_json: bool,
    token: str | None,
    **_options: Any,
) -> None:
    """What deployd would do if it applied soa-configs and deployments as they are now: for
    every instance of every cluster, whether it bounces and why (the merged config's fields
    that change), the sha it moves to, tasks that start and stop, how long it took before, and
    whether the hosts have room. Exit 0: nothing would change; 1: something would."""
    from paasport.view.diff import load_diff, load_revision_diff

    system = settings_from(ctx)
    if against is not None:
        view = load_revision_diff(system, against, service, cluster)
        doc = view.to_json()
        if as_json:
            print_json(doc)
        else:
            click.echo(f"soa-configs at {against} ({view.sha[:12]}) -> the working tree")
            click.echo(summary_line(*render([doc], verbose=verbose)))
        ctx.exit(CHANGES if view.acting else NO_CHANGE)
    params = {"service": service} if service else {}
    docs, silent = across(
        system, service, cluster, lambda: load_diff(system, service).to_json(), params, token
    )
    if as_json:
        print_json(docs[0] if len(docs) == 1 and not silent else
                   [*docs, *({"cluster": a.cluster, "error": a.error, "unreachable": True}
                             for a in silent)])  # fmt: skip
    else:
        click.echo(summary_line(*render(docs, verbose=verbose)))
    for answer in silent:
        click.secho(answer.error, fg="red", err=True)
    if silent:
        ctx.exit(UNKNOWN)
    ctx.exit(CHANGES if any(d.get("changes") for d in docs) else NO_CHANGE)


def summary_line(total: int, changing: int, bouncing: int) -> str:
    """The last line of a plan. Pure."""
    if not changing:
        return f"nothing would change ({total} instance(s) up to date or not deployed)"
    return f"{changing} of {total} instance(s) would change, {bouncing} would bounce"
