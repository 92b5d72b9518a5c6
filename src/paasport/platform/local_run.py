"""``paasport local-run``: one task of an instance on the local Docker engine, as its cluster
would run it: the same merged config (``bounce.desired.desired_app``: image, command, env with
the PAASTA_* variables, resources, volumes, port, health check) and, on this host's cluster, its
secrets. The image is the one its deploy group runs, or ``--sha``'s, ``--image``, or a build of
the working tree (``deploy.images.build_working_tree``, uncommitted files included).

The container carries only the ``paasport.local_run`` label: no deployd, agent or status ever
takes it for a cluster task. ``verdict`` is the health check's word on it, pure.
"""

from __future__ import annotations

import dataclasses
import secrets as random
from dataclasses import dataclass
from pathlib import Path

from paasport.bounce.desired import desired_app
from paasport.config.secrets import SecretStore, secret_refs
from paasport.config.system import SystemConfig, effective_registry
from paasport.config.tree import load_tree
from paasport.deploy.deployments import read_deployments
from paasport.deploy.tags import docker_image_ref
from paasport.engine.docker import DockerEngine
from paasport.engine.health import ProbeResult, probe
from paasport.errors import NotFoundError, UsageError
from paasport.types import AppSpec, DeploymentState, HealthCheck, Task


@dataclass(frozen=True)
class LocalRun:
    spec: AppSpec  # its env as configured (SECRET(name) unresolved)
    check: HealthCheck
    source: str  # where the image comes from, for people


def plan_local_run(
    system: SystemConfig,
    service: str,
    cluster: str,
    instance: str,
    *,
    image: str | None = None,
    sha: str | None = None,
    built: tuple[str, Path] | None = None,
    cmd: str | None = None,
) -> LocalRun:
    """What local-run starts. ``built``: (image, folder) of a --build."""
    tree = load_tree(system.soa_dir, [service], system=system)
    if service not in tree.services:
        raise NotFoundError(f"no service {service!r} in {system.soa_dir}")
    found = tree.instances_for(service=service, cluster=cluster, instance=instance)
    if not found:
        names = sorted(c.instance for c in tree.instances_for(service=service, cluster=cluster))
        problems = [str(p) for p in tree.errors if instance in str(p)]
        why = f": {problems[0]}" if problems else f" (instances: {', '.join(names) or 'none'})"
        raise NotFoundError(f"{service}: no instance {instance!r} on cluster {cluster}{why}")
    config = found[0]
    if cmd is not None:
        config = dataclasses.replace(config, cmd=cmd, args=None)
    registry = effective_registry(tree.services[service], system)
    if built is not None:
        deployment = DeploymentState(built[0], "0" * 40)
        registry = None
        source = f"built from the working tree of {built[1]} (uncommitted files included)"
    elif image is not None:
        deployment = DeploymentState(image, sha or "0" * 40)
        registry = None
        source = f"--image {image}"
    elif sha is not None:
        deployment = DeploymentState(docker_image_ref(service, sha), sha)
        source = f"git {sha[:12]} (--sha)"
    else:
        known = read_deployments(system.soa_dir, service)
        state = known.state_for(cluster, instance, config.deploy_group) if known else None
        if state is None:
            raise UsageError(
                f"{service}: deploy group {config.deploy_group} was never marked for "
                "deployment: give --build, --image or --sha"
            )
        deployment = dataclasses.replace(state, desired_state="start")
        source = f"what {config.deploy_group} runs: git {state.git_sha[:12]}"
    spec = dataclasses.replace(desired_app(config, deployment, registry), replicas=1)
    return LocalRun(spec, config.healthcheck, source)


def start(
    system: SystemConfig, engine: DockerEngine, run: LocalRun, host_port: int | None
) -> tuple[str, str, int | None]:
    """Start the task: (container id, its name, its port on 127.0.0.1). Secrets are resolved
    here, for this host's cluster only (another cluster's are kept on its hosts)."""
    spec = run.spec
    if secret_refs(spec.env):
        if spec.cluster != system.local_cluster:
            raise UsageError(
                f"{spec.service}.{spec.instance} uses secrets of cluster {spec.cluster}, which "
                f"are kept on its hosts: local-run it there, or as cluster {system.local_cluster}"
            )
        env = SecretStore(system.state_dir, spec.cluster).resolve_env(spec.service, spec.env)
        spec = dataclasses.replace(spec, env=env)
    name = f"paasport-local-run-{spec.service}-{spec.instance}-{random.token_hex(3)}"
    cid, port = engine.start_standalone(spec, host_port, name)
    return cid, name, port


def check_once(engine: DockerEngine, cid: str, port: int | None, run: LocalRun) -> ProbeResult:
    """One health check of the local-run task (a task that exited fails it)."""
    state, code = engine.standalone_state(cid)
    task = Task(
        cid, run.spec.service, run.spec.instance, run.spec.cluster, run.spec.config_hash,
        run.spec.git_sha, "running" if state == "running" else "exited", port=port,
        exit_code=code,
    )  # fmt: skip
    return probe(task, run.check, engine.exec_in_task)


def verdict(result: ProbeResult, elapsed: float, check: HealthCheck) -> bool | None:
    """True: healthy; False: failed (past the grace period, or the task exited); None: not
    yet (a failure within the grace period). Pure."""
    if result.ok:
        return True
    if result.detail.startswith("task is exited") or elapsed >= check.grace_period_seconds:
        return False
    return None
