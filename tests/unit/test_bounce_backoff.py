"""bounce.backoff: exponential replacement delay, window reset and crash-loop detection."""

from __future__ import annotations

import pytest

from paasport.bounce.backoff import (
    BackoffPolicy,
    decide,
    is_crash_loop,
    recent,
    record_restart,
    restart_delay,
)

POLICY = BackoffPolicy(factor=2.0, cap_seconds=300.0, window_seconds=600.0, crash_loop_restarts=5)


@pytest.mark.parametrize(
    ("restarts", "backoff", "delay"),
    [
        (0, 10.0, 0.0),
        (1, 10.0, 10.0),
        (2, 10.0, 20.0),
        (3, 10.0, 40.0),
        (5, 10.0, 160.0),
        (6, 10.0, 300.0),  # 320 capped
        (1000, 10.0, 300.0),  # no overflow
        (3, 0.0, 0.0),
        (1, 500.0, 300.0),
    ],
)
def test_restart_delay(restarts: int, backoff: float, delay: float) -> None:
    assert restart_delay(restarts, backoff, POLICY) == delay


# (history, backoff_seconds, now) -> (restarts, delay, next_start_at, may_start, crash_loop)
DECISIONS = [
    ((), 10.0, 1000.0, (0, 0.0, 1000.0, True, False)),
    ((995.0,), 10.0, 1000.0, (1, 10.0, 1005.0, False, False)),
    ((990.0,), 10.0, 1000.0, (1, 10.0, 1000.0, True, False)),
    ((900.0, 990.0), 10.0, 1000.0, (2, 20.0, 1010.0, False, False)),
    ((990.0, 900.0), 10.0, 1000.0, (2, 20.0, 1010.0, False, False)),  # unsorted history
    ((300.0, 990.0), 10.0, 1000.0, (1, 10.0, 1000.0, True, False)),  # 300 left the window
    ((1.0, 2.0), 10.0, 1000.0, (0, 0.0, 1000.0, True, False)),  # all expired: reset
    ((900.0, 910.0, 920.0, 930.0, 940.0), 10.0, 1000.0, (5, 160.0, 1100.0, False, False)),
    ((900.0, 910.0, 920.0, 930.0, 940.0, 950.0), 10.0, 1000.0, (6, 300.0, 1250.0, False, True)),
    ((999.0,), 0.0, 1000.0, (1, 0.0, 999.0, True, False)),
    ((1001.0,), 10.0, 1000.0, (0, 0.0, 1000.0, True, False)),  # future entries ignored
]


@pytest.mark.parametrize(("history", "backoff", "now", "expected"), DECISIONS)
def test_decide(
    history: tuple[float, ...],
    backoff: float,
    now: float,
    expected: tuple[int, float, float, bool, bool],
) -> None:
    d = decide(history, backoff, now, POLICY)
    assert (d.restarts, d.delay, d.next_start_at, d.may_start, d.crash_loop) == expected


@pytest.mark.parametrize(
    ("history", "now", "crash_loop"),
    [
        ((), 100.0, False),
        ((10.0, 20.0, 30.0, 40.0, 50.0), 100.0, False),  # exactly N: not yet
        ((10.0, 20.0, 30.0, 40.0, 50.0, 60.0), 100.0, True),
        ((10.0, 20.0, 30.0, 40.0, 50.0, 60.0), 650.0, False),  # 10 left the window
        ((5.0, 60.0, 70.0, 80.0, 90.0, 100.0, 110.0), 650.0, True),  # 6 inside
    ],
)
def test_is_crash_loop(history: tuple[float, ...], now: float, crash_loop: bool) -> None:
    assert is_crash_loop(history, now, POLICY) is crash_loop


def test_record_restart_appends_and_forgets_expired() -> None:
    history: tuple[float, ...] = ()
    for at in (10.0, 20.0, 700.0):
        history = record_restart(history, at, POLICY)
    assert history == (700.0,)  # 10 and 20 are older than the 600 s window at 700
    assert record_restart((100.0,), 200.0, POLICY) == (100.0, 200.0)
    assert recent((5.0, 1.0, 3.0), 4.0, POLICY) == (1.0, 3.0)
