"""In-memory Engine, HealthSource, Drainer and event sink for the reconciler's unit tests.

The fake engine applies actions at once and counts calls, so tests can assert on what a
reconcile step did (and on how many list calls a pass made).
"""

from __future__ import annotations

import dataclasses
import itertools
import threading
from collections import Counter
from collections.abc import Iterator, Mapping, Sequence, Set
from dataclasses import dataclass, field

from paasport.engine.base import ExecResult, LogLine, NodeCapacity, NodeInfo, OneOff
from paasport.engine.one_off_spec import command_of
from paasport.errors import NotFoundError
from paasport.monitoring.events import Event
from paasport.reconcile.drain import DrainStatus
from paasport.types import AppSpec, AppVersion, InstanceConfig, Task, TaskHealth


@dataclass
class FakeEngine:
    cluster: str = "test"
    tasks: dict[str, Task] = field(default_factory=dict)
    images: dict[tuple[str, str, str], str] = field(default_factory=dict)
    calls: Counter[str] = field(default_factory=Counter)
    stopped: list[tuple[str, float]] = field(default_factory=list)
    log_lines: dict[str, list[str]] = field(default_factory=dict)
    _ids: Iterator[int] = field(default_factory=lambda: itertools.count(1))
    clock: float = 1000.0
    one_offs: dict[str, OneOff] = field(default_factory=dict)
    stats: dict[str, Mapping[str, object]] = field(default_factory=dict)
    one_off_specs: dict[str, AppSpec] = field(default_factory=dict)
    one_off_lines: dict[str, list[str]] = field(default_factory=dict)

    def list_app_versions(
        self, service: str | None = None, instance: str | None = None
    ) -> Sequence[AppVersion]:
        self.calls["list"] += 1
        groups: dict[tuple[str, str, str], list[Task]] = {}
        for t in self.tasks.values():
            if service is not None and t.service != service:
                continue
            if instance is not None and t.instance != instance:
                continue
            groups.setdefault((t.service, t.instance, t.config_hash), []).append(t)
        return [
            AppVersion(
                service=s,
                instance=i,
                cluster=self.cluster,
                config_hash=h,
                git_sha=ts[0].git_sha,
                image=self.images.get((s, i, h), ""),
                tasks=tuple(sorted(ts, key=lambda t: t.task_id)),
            )
            for (s, i, h), ts in sorted(groups.items())
        ]

    def _start(self, spec: AppSpec) -> None:
        n = next(self._ids)
        tid = f"t{n:04d}"
        self.tasks[tid] = Task(
            task_id=tid,
            service=spec.service,
            instance=spec.instance,
            cluster=self.cluster,
            config_hash=spec.config_hash,
            git_sha=spec.git_sha,
            state="running",
            port=30000 + n,
            started_at=self.clock + n,
            name=f"{spec.instance}-{n}",
        )
        self.images[(spec.service, spec.instance, spec.config_hash)] = spec.image

    def _live(self, spec: AppSpec) -> int:
        return sum(
            1
            for t in self.tasks.values()
            if (t.service, t.instance, t.config_hash)
            == (spec.service, spec.instance, spec.config_hash)
            and t.state not in ("exited", "dead")
        )

    def create_app_version(self, spec: AppSpec, count: int) -> AppVersion:
        self.calls["create"] += 1
        for _ in range(count):
            self._start(spec)
        return self.list_app_versions(spec.service, spec.instance)[0]

    def scale_app_version(self, spec: AppSpec, count: int) -> None:
        self.calls["scale"] += 1
        while self._live(spec) < count:
            self._start(spec)

    def stop_task(self, task_id: str, grace_seconds: float) -> None:
        self.calls["stop"] += 1
        if task_id not in self.tasks:
            raise NotFoundError(f"no task {task_id}")
        del self.tasks[task_id]
        self.stopped.append((task_id, grace_seconds))

    def delete_app_version(self, service: str, instance: str, config_hash: str) -> None:
        self.calls["delete"] += 1
        for tid, t in list(self.tasks.items()):
            if (t.service, t.instance, t.config_hash) == (service, instance, config_hash):
                del self.tasks[tid]

    def exec_in_task(self, task_id: str, cmd: str, timeout: float) -> ExecResult:
        return ExecResult(0, "")

    def logs(
        self,
        service: str,
        instance: str | None = None,
        follow: bool = False,
        since: float | None = None,
        tail: int | None = None,
        stop: threading.Event | None = None,
    ) -> Iterator[LogLine]:
        self.calls["logs"] += 1
        for tid, lines in self.log_lines.items():
            for line in lines:
                yield LogLine(tid, tid, "", "stdout", line)

    def node_capacity(self) -> Sequence[NodeCapacity]:
        return [NodeCapacity("local", 2, 4096, 0, 0)]

    def local_node(self) -> NodeInfo:
        return NodeInfo("", "local", "127.0.0.1")

    # one-off tasks: started running; ``end_one_off`` makes one exit
    def start_one_off(self, spec: AppSpec, run_id: str, kind: str, labels: Mapping[str, str],
                      by: str = "") -> OneOff:  # fmt: skip
        self.calls["start_one_off"] += 1
        task_id = f"oneoff-{next(self._ids)}"
        run = OneOff(run_id, task_id, kind, spec.service, spec.instance, spec.cluster,
                     spec.git_sha, command_of(spec), self.clock, "running", extra=dict(labels),
                     by=by)  # fmt: skip
        self.one_offs[task_id] = run
        self.one_off_specs[task_id] = spec
        return run

    def end_one_off(self, task_id: str, exit_code: int, output: Sequence[str] = ()) -> None:
        self.one_offs[task_id] = dataclasses.replace(
            self.one_offs[task_id], state="exited", exit_code=exit_code, finished=self.clock
        )
        self.one_off_lines[task_id] = list(output)

    def list_one_offs(self, service: str | None = None, kind: str | None = None
                      ) -> Sequence[OneOff]:  # fmt: skip
        self.calls["list_one_offs"] += 1
        return [
            r
            for r in self.one_offs.values()
            if (service is None or r.service == service) and (kind is None or r.kind == kind)
        ]

    def one_off_output(self, task_id: str, follow: bool = False,
                       stop: threading.Event | None = None) -> Iterator[str]:  # fmt: skip
        yield from self.one_off_lines.get(task_id, [])

    def remove_one_off(self, task_id: str) -> None:
        self.calls["remove_one_off"] += 1
        self.one_offs.pop(task_id, None)

    def task_stats(self, task_id: str) -> Mapping[str, object] | None:
        return self.stats.get(task_id)

    def close(self) -> None:
        self.closed = True

    def image_exists(self, image: str) -> bool:
        return True

    # test controls
    def crash(self, task_id: str, exit_code: int = 1, oom: bool = False) -> None:
        self.tasks[task_id] = dataclasses.replace(
            self.tasks[task_id], state="exited", exit_code=exit_code, oom_killed=oom
        )

    def live(self, config_hash: str | None = None) -> list[Task]:
        return [
            t
            for t in self.tasks.values()
            if t.state == "running" and (config_hash is None or t.config_hash == config_hash)
        ]


@dataclass
class FakeHealth:
    """Every running task is ``default`` unless set per task."""

    default: TaskHealth = "healthy"
    per_task: dict[str, TaskHealth] = field(default_factory=dict)

    def update(self, tasks: Sequence[Task], *, complete: bool = False) -> None:
        return None

    def with_health(self, app_versions: Sequence[AppVersion]) -> tuple[AppVersion, ...]:
        return tuple(
            dataclasses.replace(
                av,
                tasks=tuple(
                    dataclasses.replace(t, health=self.per_task.get(t.task_id, self.default))
                    if t.state == "running"
                    else t
                    for t in av.tasks
                ),
            )
            for av in app_versions
        )


@dataclass
class FakeDrainer:
    """Drains finish once ``done`` holds the task id."""

    started: list[str] = field(default_factory=list)
    done: set[str] = field(default_factory=set)
    forgotten: list[str] = field(default_factory=list)
    fenced: list[str] = field(default_factory=list)
    marks: dict[str, float] = field(default_factory=dict)  # drains begun before (tests set them)

    def start(self, task: Task, config: InstanceConfig | None) -> None:
        self.started.append(task.task_id)

    def status(self, task: Task, config: InstanceConfig | None, now: float) -> DrainStatus:
        if task.task_id in self.done:
            return DrainStatus(True)
        return DrainStatus(False, "1 proxy has not acknowledged")

    def forget(self, task: Task) -> None:
        self.forgotten.append(task.task_id)
        self.marks.pop(task.task_id, None)

    def marked(self, tasks: Sequence[Task]) -> dict[str, float]:
        return {t.task_id: self.marks[t.task_id] for t in tasks if t.task_id in self.marks}

    def fence(self, task: Task, config: InstanceConfig | None) -> None:
        self.fenced.append(task.task_id)

    def sweep(self, live: Set[str], now: float) -> int:
        return 0


@dataclass
class FakeEvents:
    events: list[Event] = field(default_factory=list)

    def record(self, event: Event) -> None:
        self.events.append(event)

    def messages(self, kind: str | None = None) -> list[str]:
        return [e.message for e in self.events if kind is None or e.kind == kind]
