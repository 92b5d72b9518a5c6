"""Discovery's Prometheus histograms (registration-to-routable, deregistration-to-unroutable).

The agent observes them after each proxy change; they live on prometheus_client's default
registry, which ``monitoring.metrics.serve_metrics`` serves. prometheus_client loads lazily.
"""

from __future__ import annotations

import threading
from typing import Any

_BUCKETS = (0.05, 0.1, 0.2, 0.3, 0.5, 0.75, 1.0, 2.0, 5.0, 10.0, 30.0, 60.0)
_lock = threading.Lock()
_metrics: dict[str, Any] = {}


def _histograms() -> dict[str, Any]:
    with _lock:
        if not _metrics:
            from prometheus_client import Histogram

            _metrics["routable"] = Histogram(
                "paasport_discovery_registration_to_routable_seconds",
                "Seconds from a backend's registration to this host's proxy routing to it",
                ["namespace"],
                buckets=_BUCKETS,
            )
            _metrics["unroutable"] = Histogram(
                "paasport_discovery_deregistration_to_unroutable_seconds",
                "Seconds from a backend leaving the pool (gone or draining) to this host's "
                "proxy sending it no new requests",
                ["namespace"],
                buckets=_BUCKETS,
            )
        return _metrics


def observe_routable(namespace: str, seconds: float) -> None:
    _histograms()["routable"].labels(namespace=namespace).observe(max(seconds, 0.0))


def observe_unroutable(namespace: str, seconds: float) -> None:
    _histograms()["unroutable"].labels(namespace=namespace).observe(max(seconds, 0.0))
