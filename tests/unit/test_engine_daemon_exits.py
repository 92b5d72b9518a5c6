"""engine.daemon_exits.verdict: a finished task is a crash, the daemon's doing, or to ask about."""

from __future__ import annotations

import pytest

from paasport.engine.daemon_exits import Verdict, verdict

OUTAGE = [(1000.0, 1015.0)]
NOW = 2000.0

# finished_at, oom_killed, outages, going_away_since, answered_at, expected
CASES = [
    # no finish time or an OOM kill: always the task's own
    (None, False, [], None, None, Verdict.JUDGE),
    (1995.0, True, [], 1996.0, None, Verdict.JUDGE),
    (1005.0, True, OUTAGE, None, None, Verdict.JUDGE),
    # inside a closed outage window: the daemon stopped it
    (1005.0, False, OUTAGE, None, 1990.0, Verdict.DAEMON),
    # the daemon refuses new connections since 1996: its shutdown stopped what exited since
    (1997.0, False, [], 1996.0, 1990.0, Verdict.DAEMON),
    (1990.0, False, [], 1996.0, 1980.0, Verdict.DAEMON),  # the shutdown began before 1996
    (1960.0, False, [], 1996.0, 1950.0, Verdict.JUDGE),  # long before the shutdown: a crash
    # a new connection was accepted after the exit: no shutdown, a crash
    (1995.0, False, [], None, 1995.5, Verdict.JUDGE),
    (1995.0, False, OUTAGE, None, 1995.0, Verdict.JUDGE),
    # just exited, the daemon not asked since (a shutdown answering on kept-alive connections)
    (1995.0, False, [], None, 1990.0, Verdict.ASK),
    (1995.0, False, [], None, None, Verdict.ASK),
    (1030.0, False, OUTAGE, None, 1020.0, Verdict.JUDGE),  # long ago: too late to ask
]


@pytest.mark.parametrize(
    ("finished_at", "oom", "outages", "going_away", "answered", "expected"), CASES
)
def test_verdict(
    finished_at: float | None,
    oom: bool,
    outages: list[tuple[float, float]],
    going_away: float | None,
    answered: float | None,
    expected: Verdict,
) -> None:
    assert verdict(finished_at, oom, outages, going_away, answered, NOW) is expected
