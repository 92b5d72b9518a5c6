"""Alert sinks: where the monitor sends alerts (event log, Alertmanager, webhook, email).

Each sink is one adapter behind the ``Sink`` protocol; ``sinks.dispatch`` runs each in its own
worker thread so a slow or dead sink never holds up the checks. Adapters raise SinkUnavailable.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Protocol

from paasport.errors import TemporaryError
from paasport.monitoring.alerts import Alert


class SinkUnavailable(TemporaryError):
    """A sink did not take a notification (down, timed out, refused)."""


class Sink(Protocol):
    """Delivers alerts somewhere. ``resend_active``: also wants every firing alert each pass."""

    name: str
    resend_active: bool

    def deliver(self, alerts: Sequence[Alert], now: float) -> None:
        """Send the batch; raises SinkUnavailable when it could not."""
        ...
