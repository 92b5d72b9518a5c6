"""The loop of deployd's background parts (the job scheduler, the autoscaler, the auto-rollback
guard): one pass every ``interval`` seconds until ``stop``; a pass that fails (a dependency
away, or a bug) is logged and the next one runs."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable

from paasport.errors import PaasportError


def every(interval: float, stop: threading.Event, one_pass: Callable[[], object], name: str,
          log: logging.Logger) -> None:  # fmt: skip
    log.info("%s: every %.1fs", name, interval)
    while not stop.wait(interval):
        try:
            one_pass()
        except PaasportError as err:  # the engine, git, a file or the event log is away
            log.warning("%s pass failed: %s", name, err)
        except Exception:  # a bug in one pass must not end the loop
            log.exception("%s pass failed", name)
