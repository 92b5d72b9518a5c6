"""The deploy verbs: mark-for-deployment, start/stop/restart, rollback, generate-deployments,
get-latest-deployment, deploy-history, cook-image, push-to-registry.

Registered lazily in ``cli.main.COMMANDS``; each loads the service from soa-configs through
``paasport.config`` and hands the work to ``paasport.deploy.workflow`` / ``deploy.images``.
"""

from __future__ import annotations

import getpass
import os
import re
import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import click

from paasport.cli.options import (
    config_option,
    deploy_group_option,
    json_option,
    print_json,
    service_option,
    settings_from,
    soa_dir_option,
    state_dir_option,
    token_option,
)
from paasport.config.system import ClusterConfig, SystemConfig, effective_registry
from paasport.config.tree import SoaTree, load_tree
from paasport.deploy import tags, workflow
from paasport.deploy.git import GitRepo, git_user_name
from paasport.errors import PaasportError, UsageError
from paasport.platform import mutations

commit_option = click.option(
    "--commit", "-c", "commit", required=True, help="commit: sha, short sha, branch or tag"
)
git_url_option = click.option(
    "--git-url", "git_url", default=None, help="service repo (default: service.yaml git_url)"
)


def _service_name(service: str | None) -> str:
    if not service:
        raise UsageError("missing --service/-s")
    return service.removeprefix("services-")  # PaaSTA accepts the image repo name too


def _target(
    ctx: click.Context, service: str, git_url: str | None = None, *, write: bool = True
) -> tuple[SystemConfig, SoaTree, workflow.ServiceTarget]:
    system = settings_from(ctx)
    tree, target = mutations.service_target(
        system, service, write=write, git_url=git_url, base_dir=Path.cwd()
    )
    return system, tree, target


def _registry(system: SystemConfig, tree: SoaTree, service: str) -> str | None:
    return effective_registry(tree.services[service], system)


def _who() -> str:
    """Who is tagging: git's ``user.name``, else $USER, else the login name."""
    name = git_user_name() or os.environ.get("USER")
    if name:
        return name
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return "paasport"


def _actor() -> mutations.Actor:
    return mutations.Actor(_who())


def _warn(outcome: mutations.Outcome) -> workflow.TagResult:
    if outcome.warning:
        click.echo(f"warning: {outcome.warning}", err=True)
    return outcome.result


def _report(result: workflow.TagResult, as_json: bool, supersedes: tuple[str, ...] = ()) -> None:
    generated = result.generated
    if as_json:
        print_json(
            {
                "tag": result.tag,
                "git_sha": result.sha,
                "deployments_json": str(generated.path) if generated and generated.path else None,
                "deployments_json_changed": bool(generated and generated.changed),
                **({"supersedes": list(supersedes)} if supersedes else {}),
            }
        )
        return
    click.echo(f"created tag {result.tag} on {result.sha}")
    if supersedes:
        click.echo(
            f"supersedes the bounce under way of {', '.join(supersedes)}: deployd moves it to "
            f"{result.sha[:8]} in the same bounce (no second bounce)"
        )
    if generated is not None and generated.path is not None:
        status = "updated" if generated.changed else "unchanged"
        click.echo(f"{generated.path}: {status}")


def _report_remote(cluster: ClusterConfig, answer: dict[str, Any], as_json: bool) -> None:
    """What a cluster's API answered to a mutation, like ``_report`` prints a local one."""
    if answer.get("warning"):
        click.echo(f"warning: cluster {cluster.name}: {answer['warning']}", err=True)
    if as_json:
        print_json({**answer, "cluster": cluster.name})
        return
    click.echo(
        f"created tag {answer['tag']} on {answer['git_sha']} "
        f"(through cluster {cluster.name}'s API at {cluster.api_url})"
    )
    if answer.get("deployments_json"):
        status = "updated" if answer.get("deployments_json_changed") else "unchanged"
        click.echo(f"{cluster.name}: {answer['deployments_json']}: {status}")


def _sha_for_api(target: workflow.ServiceTarget, deploy_group: str, commit: str) -> str:
    """COMMIT as the API takes it: a (short) sha as given, which the cluster resolves; a
    branch or tag resolved here, in the service's repo."""
    target.require_group(deploy_group)
    if re.fullmatch(r"[0-9a-fA-F]{4,40}", commit):
        return commit
    with GitRepo(target.require_git_url()) as repo:
        return repo.resolve_commit(commit)


@click.command("mark-for-deployment")
@service_option(required=True)
@deploy_group_option
@commit_option
@git_url_option
@click.option("--image-version", default=None, help="distinct version of the same commit")
@click.option(
    "--force", "-f", is_flag=True, help="deploy a sha some group was rolled back from all the same"
)
@click.option(
    "--dry-run", is_flag=True, help="print what the mark would do on every cluster; tag nothing"
)
@click.option(
    "--confirm-over", type=click.IntRange(min=0), default=10, show_default=True, metavar="N",
    help="ask before a mark that bounces more than N instances",
)  # fmt: skip
@click.option("--yes", "-y", is_flag=True, help="do not ask (--confirm-over)")
@click.option(
    "--auto-rollback", is_flag=True,
    help="roll the group back by itself if this version crash-loops, fails its health checks "
    "or answers more errors than the old one (for auto_certify_delay, 600 s)",
)  # fmt: skip
@token_option
@soa_dir_option
@config_option
@state_dir_option
@json_option
@click.pass_context
def mark_for_deployment(
    ctx: click.Context,
    /,
    service: str,
    deploy_group: str | None,
    commit: str,
    git_url: str | None,
    image_version: str | None,
    force: bool,
    dry_run: bool,
    confirm_over: int,
    yes: bool,
    auto_rollback: bool,
    token: str | None,
    as_json: bool,
    **_options: Any,
) -> None:
    """Mark COMMIT as what DEPLOY_GROUP runs (tag paasta-<group>-<time>-deploy). A group that
    runs only on clusters of other hosts is marked through one of their APIs (needs --token);
    --git-url tags the repo from here all the same. --dry-run prints the plan (paasport diff of
    the group's instances with the mark applied) and tags nothing."""
    if not deploy_group:
        raise UsageError("missing --deploy-group/-l")
    service = _service_name(service)
    system, _, target = _target(ctx, service, git_url)
    if dry_run:
        _dry_run(system, target, deploy_group, commit, image_version, token, as_json)
        return
    _confirm_big_bounce(system, target, deploy_group, commit, confirm_over, yes)
    remote = None if git_url else mutations.api_cluster_of_group(system, target, deploy_group)
    if remote is not None:
        body: dict[str, Any] = {
            "sha": _sha_for_api(target, deploy_group, commit),
            "image_version": image_version,
            "force": force,
            "auto_rollback": auto_rollback,
        }
        path = f"/v1/services/{service}/deployments/{deploy_group}"
        _report_remote(remote, mutations.through_api(remote, path, body, token), as_json)
        return
    outcome = mutations.mark_for_deployment(
        system, target, deploy_group, commit, _actor(), image_version=image_version, force=force,
        auto_rollback=auto_rollback,
    )  # fmt: skip
    result = _warn(outcome)
    _report(result, as_json, outcome.supersedes)


def _dry_run(
    system: SystemConfig,
    target: workflow.ServiceTarget,
    deploy_group: str,
    commit: str,
    image_version: str | None,
    token: str | None,
    as_json: bool,
) -> None:
    """The plan of the group's instances on every cluster with the mark applied."""
    from paasport.cli.diff import across, render, summary_line
    from paasport.view.diff import Marking, load_diff

    target.require_group(deploy_group)
    with GitRepo(target.require_git_url()) as repo:
        sha = repo.resolve_commit(commit)
    service = target.service
    members = set(mutations.marked_instances(target, deploy_group))
    marking = Marking(deploy_group, sha, image_version)
    params = {"service": service, "deploy_group": deploy_group, "sha": sha}
    if image_version:
        params["image_version"] = image_version
    docs, silent = across(
        system, service, None,
        lambda: load_diff(system, service, marking=marking).to_json(), params, token,
    )  # fmt: skip
    for doc in docs:  # only the group's instances: the others' pending changes are diff's
        doc["instances"] = [
            p for p in doc.get("instances") or () if f"{p['cluster']}.{p['instance']}" in members
        ]
    if as_json:
        print_json({
            "dry_run": True, "service": service, "deploy_group": deploy_group, "git_sha": sha,
            "clusters": docs,
            "unreachable": [{"cluster": a.cluster, "error": a.error} for a in silent],
        })  # fmt: skip
    else:
        click.echo(f"dry run: marking {deploy_group} of {service} at {sha[:12]} would do:")
        click.echo(summary_line(*render(docs)))
        click.echo("nothing was tagged")
    for answer in silent:
        click.secho(answer.error, fg="red", err=True)


def _confirm_big_bounce(
    system: SystemConfig,
    target: workflow.ServiceTarget,
    deploy_group: str,
    commit: str,
    confirm_over: int,
    yes: bool,
) -> None:
    """PaaSTA's "big bounce": a mark that bounces more than ``confirm_over`` instances asks
    first (and is refused without a terminal, unless --yes). Every instance of the group
    bounces unless the group runs that commit already."""
    from paasport.deploy.deployments import read_deployments

    members = mutations.marked_instances(target, deploy_group)
    if yes or len(members) <= confirm_over:
        return
    try:
        current = read_deployments(system.soa_dir, target.service)
    except PaasportError:
        current = None
    entry = current.deployments.get(deploy_group) if current else None
    running = str(entry.get("git_sha", "")) if entry else ""
    if running and running.startswith(commit.lower()):
        return
    shown = ", ".join(members[:5]) + (f" and {len(members) - 5} more" if len(members) > 5 else "")
    question = (
        f"marking {deploy_group} at {commit} bounces {len(members)} instances ({shown}), more "
        f"than --confirm-over {confirm_over}"
    )
    if not sys.stdin.isatty():
        raise UsageError(f"{question}: pass --yes to do it (--dry-run shows the plan)")
    click.confirm(f"{question}. Go on?", abort=True, err=True)


def _control_command(name: mutations.ControlAction, doc: str) -> click.Command:
    @click.command(name, help=doc)
    @service_option(required=True)
    @click.option("--cluster", "-c", "cluster", required=True, help="cluster name")
    @click.option("--instance", "-i", "instance", required=True, help="instance name")
    @token_option
    @soa_dir_option
    @config_option
    @state_dir_option
    @json_option
    @click.pass_context
    def command(
        ctx: click.Context,
        /,
        service: str,
        cluster: str,
        instance: str,
        token: str | None,
        as_json: bool,
        **_options: Any,
    ) -> None:
        service = _service_name(service)
        system, _, target = _target(ctx, service)
        remote = mutations.api_cluster_of(system, cluster)
        if remote is not None:  # another host's cluster: its API makes the tag
            path = f"/v1/services/{service}/{instance}/{name}"
            _report_remote(remote, mutations.through_api(remote, path, {}, token), as_json)
            return
        outcome = mutations.set_desired_state(system, target, cluster, instance, name, _actor())
        result = _warn(outcome)
        _report(result, as_json)

    return command


start = _control_command(
    "start", "Start an instance (tag paasta-<cluster>.<instance>-<time>-start)."
)
stop = _control_command("stop", "Stop an instance (tag paasta-<cluster>.<instance>-<time>-stop).")
restart = _control_command(
    "restart", "Restart an instance: a new start tag, which forces a bounce."
)


@click.command("generate-deployments")
@service_option()
@click.option("--all", "all_services", is_flag=True, help="every service in soa-configs")
@soa_dir_option
@config_option
@json_option
@click.pass_context
def generate_deployments(
    ctx: click.Context, /, service: str | None, all_services: bool, as_json: bool, **_options: Any
) -> int:
    """Write <service>/deployments.json from the repo's tags (git ls-remote, no clone)."""
    if bool(service) == all_services:
        raise UsageError("give either --service/-s or --all")
    system = settings_from(ctx)
    names = [_service_name(service)] if service else None
    tree = load_tree(system.soa_dir, names, system=system)
    results: list[dict[str, Any]] = []
    failed = 0
    for name in names or sorted(tree.services):
        try:
            mutations.require_valid(tree, name)
            target = workflow.target_from_tree(tree, name)
            if target.git_url:
                with GitRepo(target.require_git_url()) as repo:
                    outcome = workflow.generate(target, repo)
            else:
                outcome = workflow.generate(target, None)
        except PaasportError as err:
            if names:
                raise
            failed += 1
            results.append({"service": name, "error": str(err)})
            if not as_json:
                click.echo(f"{name}: error: {err}", err=True)
            continue
        results.append({"service": name, "path": str(outcome.path), "changed": outcome.changed})
        if not as_json:
            click.echo(f"{outcome.path}: {'updated' if outcome.changed else 'unchanged'}")
    if as_json:
        print_json(results if names is None else results[0])
    return 1 if failed else 0


@click.command("get-latest-deployment")
@service_option(required=True)
@deploy_group_option
@click.option("--sha-only", is_flag=True, help="print only the git sha")
@soa_dir_option
@config_option
@json_option
@click.pass_context
def get_latest_deployment(
    ctx: click.Context,
    /,
    service: str,
    deploy_group: str | None,
    sha_only: bool,
    as_json: bool,
    **_options: Any,
) -> None:
    """Print what DEPLOY_GROUP runs, from the newest deploy tag."""
    if not deploy_group:
        raise UsageError("missing --deploy-group/-l")
    service = _service_name(service)
    system, tree, target = _target(ctx, service, write=False)
    target.require_group(deploy_group)
    with GitRepo(target.require_git_url()) as repo:
        latest = workflow.deployed(target, repo, deploy_group)
    from paasport.view.deployments import latest_json

    found = latest_json(service, deploy_group, latest, _registry(system, tree, service))
    if as_json:
        print_json(found)
    elif sha_only:
        click.echo(latest.sha)
    else:
        image = found["docker_image"]
        click.echo(f"{deploy_group}: {latest.sha} ({image}), marked {latest.timestamp}")


@click.command("deploy-history")
@service_option(required=True)
@deploy_group_option
@click.option(
    "--limit", "-n", type=click.IntRange(min=1), default=None, help="show at most N entries"
)
@click.option(
    "--cluster", "-c", "cluster", default=None,
    help="only what concerns this cluster (its instances' deploy groups, its starts/stops)",
)  # fmt: skip
@soa_dir_option
@config_option
@state_dir_option
@json_option
@click.pass_context
def deploy_history(
    ctx: click.Context,
    /,
    service: str,
    deploy_group: str | None,
    limit: int | None,
    cluster: str | None,
    as_json: bool,
    **_options: Any,
) -> None:
    """Deploys and starts/stops of a service (or one deploy group), newest first. The tags
    are the service's git repo's, the same for every cluster: -c keeps one cluster's."""
    from paasport.view.history import load_deploy_history

    service = _service_name(service)
    view = load_deploy_history(settings_from(ctx), service, deploy_group, limit, cluster=cluster)
    entries = view.entries
    if as_json:
        print_json(view.to_json())
        return
    if not entries:
        click.echo(f"{service}: no deploy or control tags yet")
        return
    rows = [
        (
            tags.parse_timestamp(e.timestamp).strftime("%Y-%m-%d %H:%M:%S"),
            e.kind,
            e.target,
            e.sha[:12] + (f" +{e.image_version}" if e.image_version else ""),
            (e.tagger or "-").split(" <", 1)[0],
        )
        for e in entries
    ]
    header = ("time (UTC)", "kind", "group / instance", "git sha", "by")
    widths = [max(len(r[i]) for r in [header, *rows]) for i in range(len(header) - 1)]
    for row in [header, *rows]:
        cells = [cell.ljust(width) for cell, width in zip(row, widths, strict=False)]
        click.echo("  ".join([*cells, row[-1]]).rstrip())


@click.command("rollback")
@service_option(required=True)
@deploy_group_option
@click.option("--commit", "-c", "-k", "commit", default=None, help="commit to roll back to")
@click.option("--force", "-f", is_flag=True, help="allow a commit never deployed to the group")
@token_option
@soa_dir_option
@config_option
@state_dir_option
@json_option
@click.pass_context
def rollback(
    ctx: click.Context,
    /,
    service: str,
    deploy_group: str | None,
    commit: str | None,
    force: bool,
    token: str | None,
    as_json: bool,
    **_options: Any,
) -> None:
    """Without --commit: list what DEPLOY_GROUP ran before. With it: re-mark the group there
    (through a cluster's API, like mark-for-deployment, when the group runs only elsewhere)."""
    if not deploy_group:
        raise UsageError("missing --deploy-group/-l")
    service = _service_name(service)
    system, _, target = _target(ctx, service, write=commit is not None)
    remote = mutations.api_cluster_of_group(system, target, deploy_group)
    if commit is not None and remote is not None:
        sha = _sha_for_api(target, deploy_group, commit)
        path = f"/v1/services/{service}/deployments/{deploy_group}/rollback"
        answer = mutations.through_api(remote, path, {"sha": sha, "force": force}, token)
        _report_remote(remote, answer, as_json)
        if not as_json:
            click.echo("remember to revert the change in git too")
        return
    if commit is not None:
        outcome = mutations.rollback(system, target, deploy_group, commit, _actor(), force=force)
        _report(_warn(outcome), as_json)
        if not as_json:
            click.echo("remember to revert the change in git too")
        return
    before = mutations.deployed_before(target, deploy_group)
    if as_json:
        print_json(
            [
                {
                    "git_sha": t.sha,
                    "image_version": t.image_version,
                    "last_deployed": tags.parse_timestamp(t.timestamp).isoformat(),
                    "current": i == 0,
                }
                for i, t in enumerate(before)
            ]
        )
        return
    if not before:
        click.echo(f"{service}: {deploy_group} was never marked for deployment")
        return
    click.echo(f"commits deployed to {deploy_group}, newest first:")
    for i, t in enumerate(before):
        when = tags.parse_timestamp(t.timestamp).strftime("%Y-%m-%d %H:%M:%S")
        current = "  (current)" if i == 0 else ""
        click.echo(f"  {t.sha}  last deployed {when} UTC{current}")
    click.echo(f"roll back with: paasport rollback -s {service} -l {deploy_group} -c SHA")


def _image_command(name: str) -> Callable[[Callable[..., None]], click.Command]:
    """cook-image and push-to-registry take the same flags: -s, -c, --git-url, --soa-dir,
    --config, --json (the function receives the click context first)."""

    def decorate(f: Callable[..., None]) -> click.Command:
        for option in (
            click.pass_context,
            json_option,
            config_option,
            soa_dir_option,
            git_url_option,
            commit_option,
            service_option(required=True),
        ):
            f = option(f)
        return click.command(name)(f)

    return decorate


@contextmanager
def _image_commit(
    ctx: click.Context, service: str, commit: str, git_url: str | None
) -> Iterator[tuple[str, GitRepo, str, str | None, str | None]]:
    """The service's name, its open repo, COMMIT resolved there, its images' registry, and the
    local cluster's Docker engine (its ``docker_host``: the engine that runs the images)."""
    service = _service_name(service)
    system, tree, target = _target(ctx, service, git_url, write=False)
    with GitRepo(target.require_git_url()) as repo:
        yield (
            service,
            repo,
            repo.resolve_commit(commit),
            _registry(system, tree, service),
            system.local.docker_host,
        )


def _progress(line: str) -> None:
    click.echo(line, err=True)


@_image_command("cook-image")
def cook_image(
    ctx: click.Context,
    /,
    service: str,
    commit: str,
    git_url: str | None,
    as_json: bool,
    **_options: Any,
) -> None:
    """Build the image from the repo's Dockerfile at COMMIT (context: git archive)."""
    from paasport.deploy.images import cook_image as cook

    with _image_commit(ctx, service, commit, git_url) as (service, repo, sha, registry, host):
        name = cook(repo, service, sha, registry, progress=_progress, base_url=host)
    if as_json:
        print_json({"image": name, "git_sha": sha})
    else:
        click.echo(f"built {name}")


@_image_command("push-to-registry")
def push_to_registry(
    ctx: click.Context,
    /,
    service: str,
    commit: str,
    git_url: str | None,
    as_json: bool,
    **_options: Any,
) -> None:
    """Push the cooked image of COMMIT; a no-op when the registry already has it."""
    from paasport.deploy.images import push_image

    with _image_commit(ctx, service, commit, git_url) as (service, _, sha, registry, host):
        result = push_image(service, sha, registry, progress=_progress, base_url=host)
    if as_json:
        print_json({"image": result.image, "pushed": result.pushed, "digest": result.digest})
    elif result.pushed:
        click.echo(f"pushed {result.image} ({result.digest})")
    else:
        click.echo(f"{result.image} already in the registry ({result.digest})")
