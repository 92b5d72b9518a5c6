"""The deploy verbs: mark-for-deployment, start/stop/restart, rollback, generate-deployments,
get-latest-deployment, deploy-history, cook-image, push-to-registry.

Registered lazily in ``cli.main.COMMANDS``; each loads the service from soa-configs through
``paasport.config`` and hands the work to ``paasport.deploy.workflow`` / ``deploy.images``.
"""

from __future__ import annotations

import getpass
import os
import time
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
)
from paasport.config.system import SystemConfig, effective_registry
from paasport.config.tree import SoaTree, load_tree
from paasport.deploy import tags, workflow
from paasport.deploy.git import GitRepo, check_git_url, git_user_name, resolve_git_url
from paasport.errors import ConfigError, PaasportError, UsageError

# The event kind that says who made a tag and why (tags are lightweight: git does not say).
MARK_EVENT = "mark"

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


def _load(ctx: click.Context, service: str) -> tuple[SystemConfig, SoaTree]:
    system = settings_from(ctx)
    return system, load_tree(system.soa_dir, [service], system=system)


def _require_valid(tree: SoaTree, service: str) -> None:
    """Writing verbs regenerate deployments.json from the instance list: it must be complete."""
    if tree.errors:  # load_tree(services=[service]) reports only that service's problems
        raise ConfigError(tree.errors)
    if service in tree.incomplete_services:
        raise ConfigError(f"{service}: its configuration is incomplete; run paasport validate")


def _target(
    ctx: click.Context, service: str, git_url: str | None = None, *, write: bool = True
) -> tuple[SystemConfig, SoaTree, workflow.ServiceTarget]:
    system, tree = _load(ctx, service)
    if write:
        _require_valid(tree, service)
    target = workflow.target_from_tree(tree, service, write=write)
    if git_url:
        why = check_git_url(git_url)  # before a relative path is made absolute
        if why is not None:
            raise UsageError(f"--git-url: {why}")
        target = workflow.ServiceTarget(
            service=target.service,
            git_url=resolve_git_url(git_url, Path.cwd()),
            deploy_groups=target.deploy_groups,
            control_branches=target.control_branches,
            soa_dir=target.soa_dir,
            git_url_source="--git-url",
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


def _record_mark(
    ctx: click.Context,
    service: str,
    result: workflow.TagResult,
    *,
    action: str,
    who: str,
    deploy_group: str | None,
    cluster: str | None = None,
    instance: str | None = None,
) -> None:
    """Who made the tag and why, in the event log (deploy-history reads it back). The tag is
    already made: an event log that cannot be written is a warning, not a failure."""
    from paasport.monitoring.events import Event, EventLog, events_path

    parsed = tags.parse_deploy_tag(tags.TAG_PREFIX + result.tag, result.sha)
    where = f"{cluster}.{instance}" if cluster and instance else deploy_group
    message = f"{who}: {action} {service} {where} at {result.sha[:12]} (tag {result.tag})"
    data: dict[str, object] = {
        "user": who,
        "action": action,
        "git_sha": result.sha,
        "deploy_group": deploy_group,
        "tag": result.tag,
        "image_version": parsed.image_version if parsed else None,
    }
    if result.rollback_tag:
        data["rollback_tag"] = result.rollback_tag
    event = Event(
        time=time.time(),
        level="info",
        kind=MARK_EVENT,
        service=service,
        instance=instance,
        cluster=cluster,
        message=message,
        data=data,
    )
    try:
        system = settings_from(ctx)
        with EventLog(events_path(system.state_dir)) as log:
            log.record(event)
    except PaasportError as err:
        click.echo(f"warning: tag made, but who made it is not recorded: {err}", err=True)


def _report(result: workflow.TagResult, as_json: bool) -> None:
    generated = result.generated
    if as_json:
        print_json(
            {
                "tag": result.tag,
                "git_sha": result.sha,
                "deployments_json": str(generated.path) if generated and generated.path else None,
                "deployments_json_changed": bool(generated and generated.changed),
            }
        )
        return
    click.echo(f"created tag {result.tag} on {result.sha}")
    if generated is not None and generated.path is not None:
        status = "updated" if generated.changed else "unchanged"
        click.echo(f"{generated.path}: {status}")


@click.command("mark-for-deployment")
@service_option(required=True)
@deploy_group_option
@commit_option
@git_url_option
@click.option("--image-version", default=None, help="distinct version of the same commit")
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
    as_json: bool,
    **_options: Any,
) -> None:
    """Mark COMMIT as what DEPLOY_GROUP runs (tag paasta-<group>-<time>-deploy)."""
    if not deploy_group:
        raise UsageError("missing --deploy-group/-l")
    service = _service_name(service)
    _, _, target = _target(ctx, service, git_url)
    who = _who()
    with GitRepo(target.require_git_url()) as repo:
        result = workflow.mark_for_deployment(
            target,
            repo,
            deploy_group,
            commit,
            now=time.time(),
            image_version=image_version,
            who=who,
        )
    _record_mark(ctx, service, result, action="deploy", who=who, deploy_group=deploy_group)
    _report(result, as_json)


def _control_command(name: str, state: tags.ControlState, doc: str) -> click.Command:
    @click.command(name, help=doc)
    @service_option(required=True)
    @click.option("--cluster", "-c", "cluster", required=True, help="cluster name")
    @click.option("--instance", "-i", "instance", required=True, help="instance name")
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
        as_json: bool,
        **_options: Any,
    ) -> None:
        service = _service_name(service)
        _, _, target = _target(ctx, service)
        who = _who()
        with GitRepo(target.require_git_url()) as repo:
            result = workflow.set_desired_state(
                target, repo, cluster, instance, state, now=time.time(), who=who
            )
        _record_mark(
            ctx,
            service,
            result,
            action=name,
            who=who,
            deploy_group=target.control_branches.get(f"{cluster}.{instance}"),
            cluster=cluster,
            instance=instance,
        )
        _report(result, as_json)

    return command


start = _control_command(
    "start", "start", "Start an instance (tag paasta-<cluster>.<instance>-<time>-start)."
)
stop = _control_command(
    "stop", "stop", "Stop an instance (tag paasta-<cluster>.<instance>-<time>-stop)."
)
restart = _control_command(
    "restart", "start", "Restart an instance: a new start tag, which forces a bounce."
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
            _require_valid(tree, name)
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
    from paasport.deploy.images import image_name

    image = image_name(service, latest.sha, _registry(system, tree, service), latest.image_version)
    if as_json:
        print_json(
            {
                "service": service,
                "deploy_group": deploy_group,
                "git_sha": latest.sha,
                "image_version": latest.image_version,
                "docker_image": image,
                "tag": latest.ref.removeprefix(tags.TAG_PREFIX),
                "time": tags.parse_timestamp(latest.timestamp).isoformat(),
            }
        )
    elif sha_only:
        click.echo(latest.sha)
    else:
        click.echo(f"{deploy_group}: {latest.sha} ({image}), marked {latest.timestamp}")


@click.command("deploy-history")
@service_option(required=True)
@deploy_group_option
@click.option(
    "--limit", "-n", type=click.IntRange(min=1), default=None, help="show at most N entries"
)
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
    as_json: bool,
    **_options: Any,
) -> None:
    """Deploys and starts/stops of a service (or one deploy group), newest first."""
    from paasport.view.history import load_deploy_history

    service = _service_name(service)
    view = load_deploy_history(settings_from(ctx), service, deploy_group, limit)
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
    as_json: bool,
    **_options: Any,
) -> None:
    """Without --commit: list what DEPLOY_GROUP ran before. With it: re-mark the group there."""
    if not deploy_group:
        raise UsageError("missing --deploy-group/-l")
    service = _service_name(service)
    _, _, target = _target(ctx, service, write=commit is not None)
    target.require_group(deploy_group)
    with GitRepo(target.require_git_url()) as repo:
        if commit is None:
            before = workflow.deployed_commits(repo.tag_refs(), deploy_group)
        else:
            who = _who()
            result = workflow.rollback(
                target, repo, deploy_group, commit, now=time.time(), force=force, who=who
            )
            _record_mark(
                ctx, service, result, action="rollback", who=who, deploy_group=deploy_group
            )
            _report(result, as_json)
            if not as_json:
                click.echo("remember to revert the change in git too")
            return
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
