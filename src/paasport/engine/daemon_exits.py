"""Whose doing a finished task is: the service's (a crash to judge) or the Docker daemon's.

Pure; ``engine.docker.DockerEngine`` calls ``verdict`` for every finished task it lists and
hides the daemon's (or first asks the daemon whether it still accepts new connections).
"""

from __future__ import annotations

from collections.abc import Sequence
from enum import StrEnum

from paasport.engine.container_spec import exited_during_outage

# dockerd's shutdown-timeout (15 s) and then some: how long before its last answer (or before
# it stopped accepting connections) a shutdown may have begun stopping containers
DAEMON_SHUTDOWN_SECONDS = 20.0


class Verdict(StrEnum):
    JUDGE = "judge"  # the service's own exit: the reconciler judges it (crash, backoff)
    DAEMON = "daemon"  # the daemon stopped it (shutdown or restart): replace, no crash
    ASK = "ask"  # just exited and unexplained: ask whether the daemon is going away


def verdict(
    finished_at: float | None,
    oom_killed: bool,
    outages: Sequence[tuple[float, float]],
    going_away_since: float | None,
    answered_at: float | None,
    now: float,
) -> Verdict:
    """The verdict on one finished task.

    ``outages``: windows the daemon was away (closed); ``going_away_since``: since when it has
    been away or refusing new connections (None: it accepts them); ``answered_at``: the last
    time it accepted a new connection. A dockerd shutting down closes its listener first and
    then stops every container, while kept-alive connections still list them: a task that
    exited after the last accepted connection may be such a corpse, so it is asked about
    before it counts as a crash. An OOM kill is always the task's own.
    """
    if finished_at is None or oom_killed:
        return Verdict.JUDGE
    if exited_during_outage(finished_at, outages):
        return Verdict.DAEMON
    if going_away_since is not None and finished_at >= going_away_since - DAEMON_SHUTDOWN_SECONDS:
        return Verdict.DAEMON
    if answered_at is not None and answered_at >= finished_at:
        return Verdict.JUDGE  # it accepted a new connection after the exit: no shutdown
    if now - finished_at > DAEMON_SHUTDOWN_SECONDS:
        return Verdict.JUDGE  # long before we looked: nothing to ask about any more
    return Verdict.ASK
