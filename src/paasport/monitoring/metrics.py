"""Prometheus metrics of paasport: the metric objects others update, and ``serve_metrics``.

The reconciler observes ``reconcile_duration_seconds`` and counts ``bounces_total``; the monitor
sets the task, replication and check gauges. Everything lives in prometheus_client's default
registry (so discovery's own histograms are served too), created on first attribute access:
importing this module costs nothing until a metric is used.
"""

from __future__ import annotations

import threading
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from paasport.errors import PermanentError, UsageError

if TYPE_CHECKING:
    from wsgiref.simple_server import WSGIServer

    from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

    registry: CollectorRegistry
    # paasport_tasks{cluster,service,instance,state}: tasks by engine state
    tasks_by_state: Gauge
    # paasport_instance_tasks{cluster,service,instance,kind=healthy|expected|backends_up}
    healthy_vs_expected: Gauge
    # paasport_bounces_total{result=started|finished|failed}
    bounces_total: Counter
    # paasport_check_status{check,service,instance,cluster}: 0 OK, 1 WARN, 2 CRIT
    check_results: Gauge
    # paasport_reconcile_duration_seconds: one reconcile pass
    reconcile_duration_seconds: Histogram
    # paasport_monitor_pass_duration_seconds: one monitoring pass
    monitor_pass_duration_seconds: Histogram
    # paasport_alerts_total{check,severity,reason}
    alerts_total: Counter
    # paasport_check_errors_total{check}: checks that raised
    check_errors_total: Counter
    # paasport_sink_failures_total{sink}
    sink_failures_total: Counter

_NAMES = (
    "registry",
    "tasks_by_state",
    "healthy_vs_expected",
    "bounces_total",
    "check_results",
    "reconcile_duration_seconds",
    "monitor_pass_duration_seconds",
    "alerts_total",
    "check_errors_total",
    "sink_failures_total",
)
_lock = threading.Lock()
_created: dict[str, Any] = {}


def _create() -> dict[str, Any]:
    from prometheus_client import REGISTRY, Counter, Gauge, Histogram

    instance_labels = ("cluster", "service", "instance")
    return {
        "registry": REGISTRY,
        "tasks_by_state": Gauge(
            "paasport_tasks", "Tasks by engine state", (*instance_labels, "state")
        ),
        "healthy_vs_expected": Gauge(
            "paasport_instance_tasks",
            "Healthy tasks, expected tasks and up proxy backends per instance",
            (*instance_labels, "kind"),
        ),
        "bounces_total": Counter("paasport_bounces", "Bounces by result", ("result",)),
        "check_results": Gauge(
            "paasport_check_status",
            "Last result of each check: 0 OK, 1 WARN, 2 CRIT",
            ("check", "service", "instance", "cluster"),
        ),
        "reconcile_duration_seconds": Histogram(
            "paasport_reconcile_duration_seconds",
            "Duration of one reconcile pass",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        ),
        "monitor_pass_duration_seconds": Histogram(
            "paasport_monitor_pass_duration_seconds",
            "Duration of one monitoring pass",
            buckets=(0.01, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10, 30),
        ),
        "alerts_total": Counter(
            "paasport_alerts", "Alert notifications sent", ("check", "severity", "reason")
        ),
        "check_errors_total": Counter(
            "paasport_check_errors", "Checks that raised instead of returning", ("check",)
        ),
        "sink_failures_total": Counter(
            "paasport_sink_failures", "Deliveries a sink did not take", ("sink",)
        ),
    }


def __getattr__(name: str) -> Any:
    if name not in _NAMES:
        raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
    with _lock:
        if not _created:
            _created.update(_create())
    return _created[name]


@dataclass
class MetricsServer:
    """A running /metrics HTTP server; ``close()`` stops it."""

    host: str
    port: int
    _server: WSGIServer
    _thread: threading.Thread

    @property
    def url(self) -> str:
        return f"http://{self.host}:{self.port}/metrics"

    def close(self) -> None:
        self._server.shutdown()
        self._server.server_close()
        self._thread.join(5)


def parse_listen(addr: str) -> tuple[str, int]:
    """``host:port`` (or ``:port``, host 127.0.0.1) -> (host, port); port 0 picks a free one."""
    host, sep, port = addr.rpartition(":")
    if not sep or not port.isdigit() or int(port) > 65535:
        raise UsageError(f"bad listen address {addr!r}: expected HOST:PORT, e.g. 127.0.0.1:9464")
    return host or "127.0.0.1", int(port)


def serve_metrics(addr: str) -> MetricsServer:
    """Serve every paasport (and discovery) metric at ``http://addr/metrics`` in a thread."""
    from prometheus_client import start_http_server

    host, port = parse_listen(addr)
    __getattr__("registry")  # make sure paasport's metrics exist before the first scrape
    try:
        server, thread = start_http_server(port, addr=host)
    except OSError as err:
        raise PermanentError(f"cannot serve /metrics on {host}:{port}: {err}") from None
    return MetricsServer(host=host, port=int(server.server_port), _server=server, _thread=thread)
