"""The logs view: the merged log lines of a service's tasks on this host's cluster.

``log_json`` is one line as ``paasport logs --json`` prints it; ``load_logs`` reads the last
lines once (the API's ``/v1/services/{service}/logs``, which the dashboard's log pane reads).
"""

from __future__ import annotations

from dataclasses import dataclass

from paasport.config.system import SystemConfig
from paasport.engine.base import Engine, LogLine


def log_json(line: LogLine) -> dict[str, object]:
    """One log line as ``paasport logs --json`` prints it. Pure."""
    return {
        "task": line.task_name or line.task_id[:12],
        "task_id": line.task_id,
        "timestamp": line.timestamp,
        "stream": line.stream,
        "message": line.message.rstrip("\n"),
    }


@dataclass(frozen=True)
class LogsView:
    service: str
    instance: str | None
    lines: tuple[LogLine, ...]

    def to_json(self) -> list[dict[str, object]]:
        return [log_json(line) for line in self.lines]


def load_logs(
    system: SystemConfig,
    service: str,
    instance: str | None,
    *,
    tail: int = 100,
    engine: Engine | None = None,
) -> LogsView:
    """The last ``tail`` lines of each task of ``service`` (``instance``), merged, oldest
    first (the newest ``tail`` of the merge); ``engine`` as for ``load_status``."""
    from paasport.engine.factory import engine_for

    own = engine is None
    engine = engine_for(system.local) if engine is None else engine
    try:
        lines = list(engine.logs(service, instance, follow=False, tail=tail))
    finally:
        if own:
            engine.close()
    return LogsView(service, instance, tuple(lines[-tail:]))
