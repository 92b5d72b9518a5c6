"""Crash-loop backoff (pure): when may a dead task be replaced, and is the instance crash-looping.

The reconciler keeps each instance's restart history (times at which a task of it died and was
replaced) and asks ``decide`` before performing a replacement; monitoring and ``paasport status``
use ``is_crash_loop``. PaaSTA's Marathon semantics: ``backoff_seconds`` doubling per recent
restart (``backoff_factor`` 2), capped at ``max_launch_delay_seconds`` 300.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

MAX_EXPONENT = 30  # 2**30 * any sane backoff is far beyond every cap


@dataclass(frozen=True)
class BackoffPolicy:
    """Tunables; defaults follow PaaSTA (factor 2, cap 300 s)."""

    factor: float = 2.0
    cap_seconds: float = 300.0
    window_seconds: float = 600.0  # restarts older than this are forgotten (backoff resets)
    crash_loop_restarts: int = 5  # more than this many restarts within the window = crash loop


DEFAULT_POLICY = BackoffPolicy()


@dataclass(frozen=True)
class BackoffDecision:
    restarts: int  # restarts within the window
    delay: float  # seconds to wait after the latest restart
    next_start_at: float  # when the next replacement may start (same clock as the history)
    may_start: bool
    crash_loop: bool


def recent(
    history: Sequence[float], now: float, policy: BackoffPolicy = DEFAULT_POLICY
) -> tuple[float, ...]:
    """The restarts still inside the window, oldest first."""
    return tuple(sorted(t for t in history if now - policy.window_seconds < t <= now))


def record_restart(
    history: Sequence[float], at: float, policy: BackoffPolicy = DEFAULT_POLICY
) -> tuple[float, ...]:
    """The history with a restart at ``at`` added and expired entries dropped (bounded size)."""
    return recent((*history, at), at, policy)


def restart_delay(
    restarts: int, backoff_seconds: float, policy: BackoffPolicy = DEFAULT_POLICY
) -> float:
    """``backoff * factor**(restarts - 1)`` capped; 0 when no restart happened in the window.

    ``restarts`` counts the restarts already made within the window, the latest included.
    """
    if restarts <= 0 or backoff_seconds <= 0:
        return 0.0
    exponent = min(restarts - 1, MAX_EXPONENT)
    return float(min(backoff_seconds * policy.factor**exponent, policy.cap_seconds))


def is_crash_loop(
    history: Sequence[float], now: float, policy: BackoffPolicy = DEFAULT_POLICY
) -> bool:
    """More than ``crash_loop_restarts`` restarts within the window."""
    return len(recent(history, now, policy)) > policy.crash_loop_restarts


def decide(
    history: Sequence[float],
    backoff_seconds: float,
    now: float,
    policy: BackoffPolicy = DEFAULT_POLICY,
) -> BackoffDecision:
    """May the next replacement start now, and if not, when."""
    restarts = recent(history, now, policy)
    delay = restart_delay(len(restarts), backoff_seconds, policy)
    next_start = restarts[-1] + delay if restarts else now
    return BackoffDecision(
        restarts=len(restarts),
        delay=delay,
        next_start_at=next_start,
        may_start=now >= next_start,
        crash_loop=len(restarts) > policy.crash_loop_restarts,
    )
