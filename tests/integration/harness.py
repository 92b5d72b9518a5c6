"""One-host deployd harness shared by the reconciler integration tests and the benches.

tests/integration/test_reconciler.py, bench/bounce.py, bench/reconcile_noop.py and
bench/discovery_world.py import it (benches by bare name, like conftest's build_busybox_image): git
repos with commits, soa-configs files, the SystemConfig of a throwaway cluster, deployd in a
thread, and removal of every container carrying the cluster label.
"""

from __future__ import annotations

import http.client
import json
import subprocess
import threading
from collections.abc import Sequence
from pathlib import Path

from paasport.config.system import ClusterConfig, SystemConfig
from paasport.config.tree import load_tree
from paasport.deploy.git import GitRepo
from paasport.deploy.workflow import mark_for_deployment, target_from_tree
from paasport.engine.docker import DockerEngine
from paasport.engine.health import STARTUP_INTERVAL_SECONDS, HealthMonitor
from paasport.monitoring.events import EventLog
from paasport.reconcile.deployd import Deployd, DeploydSettings, DesiredStore
from paasport.reconcile.drain import Drainer, NoopDrainer
from paasport.reconcile.reconciler import ReconcilerSettings


def answers(port: int | None, timeout: float = 0.5, host: str = "127.0.0.1") -> bool:
    """Whether ``host``:``port`` (a task's Task.host/Task.port) answers ``GET /status`` with 200."""
    if port is None:
        return False
    try:
        conn = http.client.HTTPConnection(host, port, timeout=timeout)
        conn.request("GET", "/status")
        ok = conn.getresponse().status == 200
        conn.close()
        return ok
    except (OSError, http.client.HTTPException):
        return False


def git(repo: Path, *args: str) -> str:
    """``git -C repo ARGS`` with a fixed identity; its stdout, stripped."""
    return subprocess.run(
        [
            "git",
            "-C",
            str(repo),
            "-c",
            "user.name=bench",
            "-c",
            "user.email=bench@localhost",
            *args,
        ],
        check=True,
        capture_output=True,
        text=True,
        timeout=120,
    ).stdout.strip()


def new_repo(repo: Path) -> Path:
    """An empty git repo on branch main at ``repo``."""
    repo.mkdir(parents=True)
    git(repo, "init", "-q", "-b", "main")
    return repo


def commit(repo: Path, name: str) -> str:
    """Commit a file ``name`` (its own name as content); the new commit's sha."""
    (repo / name).write_text(name)
    git(repo, "add", name)
    git(repo, "commit", "-qm", name)
    return git(repo, "rev-parse", "HEAD")


def commit_version(repo: Path, n: int) -> str:
    """Commit ``version`` = n; the new commit's sha."""
    (repo / "version").write_text(f"{n}\n")
    git(repo, "add", "version")
    git(repo, "commit", "-q", "-m", f"version {n}")
    return git(repo, "rev-parse", "HEAD")


def tag_image(image: str, service: str, sha: str) -> str:
    """Tag ``image`` as the build of ``service`` at ``sha`` (what deployments.json names)."""
    name = f"services-{service}:paasta-{sha}"
    subprocess.run(["docker", "tag", image, name], check=True, timeout=120)
    return name


def mark(system: SystemConfig, repo: Path, deploy_group: str, sha: str, now: float) -> None:
    """mark-for-deployment of the one service with a git_url in ``system.soa_dir``."""
    tree = load_tree(system.soa_dir, system=system)
    (name,) = [n for n, svc in tree.services.items() if svc.git_url]
    target = target_from_tree(tree, name)
    with GitRepo(str(repo)) as git_repo:
        mark_for_deployment(target, git_repo, deploy_group, sha, now=now)


def cluster_containers(cluster: str) -> list[str]:
    """Ids of every container (running or not) labelled with ``cluster``."""
    return subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=paasport.cluster={cluster}"],
        capture_output=True,
        text=True,
        check=False,
        timeout=120,
    ).stdout.split()


def running_containers(cluster: str) -> list[str]:
    """Ids of the running containers labelled with ``cluster``."""
    return subprocess.run(
        ["docker", "ps", "-q", "--filter", f"label=paasport.cluster={cluster}",
         "--filter", "status=running"],
        capture_output=True, text=True, check=False, timeout=120,
    ).stdout.split()  # fmt: skip


def write_to_task_log(container: str, text: str) -> None:
    """Make a task print ``text`` on its stdout (busybox sh writes to PID 1's stdout), so it
    shows in ``docker logs``: a log line on demand for a service that logs nothing."""
    subprocess.run(
        ["docker", "exec", container, "sh", "-c", f"echo {text} > /proc/1/fd/1"],
        capture_output=True, check=True, timeout=30,
    )  # fmt: skip


def remove_cluster(cluster: str) -> None:
    """Remove every container labelled with ``cluster`` (only ours: clusters are unique), its
    one-off tasks included."""
    ids = cluster_containers(cluster)
    ids += subprocess.run(
        ["docker", "ps", "-aq", "--filter", f"label=paasport.run.cluster={cluster}"],
        capture_output=True, text=True, check=False, timeout=120,
    ).stdout.split()  # fmt: skip
    if ids:
        subprocess.run(["docker", "rm", "-f", *ids], capture_output=True, check=False, timeout=120)


def cluster_system(cluster: str, soa_dir: Path, state_dir: Path) -> SystemConfig:
    """The SystemConfig of a host running only ``cluster`` on the local Docker engine."""
    return SystemConfig(
        clusters={cluster: ClusterConfig(cluster)},
        local_cluster=cluster,
        soa_dir=soa_dir,
        state_dir=state_dir,
    )


def cluster_config_text(cluster: str) -> str:
    """The paasport.yaml of ``cluster_system`` (for verbs run as a subprocess)."""
    return f"local_cluster: {cluster}\nclusters:\n  {cluster}:\n    engine: docker\n"


def write_service(
    soa_dir: Path, service: str, service_yaml: str, deploy_groups: Sequence[str]
) -> Path:
    """``soa_dir/service`` with service.yaml and a deploy.yaml of ``deploy_groups``."""
    svc = soa_dir / service
    svc.mkdir(parents=True, exist_ok=True)
    (svc / "service.yaml").write_text(service_yaml)
    steps = "".join(f"  - step: {group}\n" for group in deploy_groups)
    (svc / "deploy.yaml").write_text(f"pipeline:\n{steps}")
    return svc


def replace_file(path: Path, text: str) -> None:
    """Write through a rename, so deployd's file watch never reads half a file."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.write_text(text)
    tmp.rename(path)


def deployments_json(
    cluster: str, image: str, service: str = "web", state: str = "start", instance: str = "main"
) -> str:
    """deployments.json running ``image`` (git sha a*40) for ``cluster.instance``."""
    group = f"{cluster}.{instance}"
    doc = {
        "v2": {
            "deployments": {group: {"docker_image": image, "git_sha": "a" * 40}},
            "controls": {f"{service}:{group}": {"desired_state": state}},
        }
    }
    return json.dumps(doc)


def fast_settings(stop_grace_seconds: float, recheck_seconds: float) -> DeploydSettings:
    """deployd timings short enough for tests: two workers, sub-second sweeps and rechecks."""
    return DeploydSettings(
        workers=2,
        sweep_seconds=0.2,
        health_seconds=0.1,
        full_pass_seconds=5.0,
        reconciler=ReconcilerSettings(
            stop_grace_seconds=stop_grace_seconds,
            kill_grace_seconds=0.5,
            recheck_seconds=recheck_seconds,
        ),
    )


class DeploydThread:
    """deployd of ``system``'s local cluster with its own health monitor, run in a thread."""

    def __init__(
        self,
        system: SystemConfig,
        engine: DockerEngine,
        events: EventLog,
        settings: DeploydSettings,
        drainer: Drainer | None = None,
        startup_interval_seconds: float = STARTUP_INTERVAL_SECONDS,
        daemon: bool = True,
    ) -> None:
        self.health = HealthMonitor(
            engine.exec_in_task, startup_interval_seconds=startup_interval_seconds
        )
        store = DesiredStore(system.soa_dir, system.local_cluster, None, system=system)
        self.deployd = Deployd(
            store, engine, self.health, drainer or NoopDrainer(), events, settings
        )
        self.stop_event = threading.Event()
        self.thread = threading.Thread(
            target=self.deployd.run_forever, args=(self.stop_event,), daemon=daemon
        )

    def start(self) -> DeploydThread:
        self.thread.start()
        return self

    def stop(self, timeout: float = 30.0) -> None:
        self.stop_event.set()
        if self.thread.ident is not None:
            self.thread.join(timeout=timeout)
