"""Whether a new version is bad enough to roll back (pure): the auto-rollback guard
(``platform.autorollback``) gathers the signals of one deploy group's new version within its
window and ``judge`` decides.

A new version is bad when it crash-loops (``min_restarts`` crashes or OOM kills of its tasks),
when its health checks fail past the bounce's patience (a task replaced for failing them, or a
task unhealthy longer than the patience), or when its error rate through the proxy (5xx answers,
failed connections and responses) is ``error_rate_margin`` above the old version's over at
least ``min_requests`` requests. The verdict carries the evidence people need to believe it.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

from paasport.types import HealthCheck, RollbackPolicy

Reason = Literal["crash loop", "health checks", "error rate"]


@dataclass(frozen=True)
class CrashSeen:
    time: float
    task: str
    exit_code: int | None
    oom: bool = False
    last_line: str = ""


@dataclass(frozen=True)
class HealthFailure:
    time: float
    task: str
    detail: str


@dataclass(frozen=True)
class ErrorCounts:
    """What clients saw through the proxy: failed answers out of requests."""

    errors: int = 0
    requests: int = 0
    time_ms: float = 0.0  # the requests' response times added up (HAProxy's rtime x requests)

    @property
    def rate(self) -> float:
        return self.errors / self.requests if self.requests else 0.0

    @property
    def latency_ms(self) -> float | None:
        return self.time_ms / self.requests if self.requests and self.time_ms else None

    def __add__(self, other: ErrorCounts) -> ErrorCounts:
        return ErrorCounts(self.errors + other.errors, self.requests + other.requests,
                           self.time_ms + other.time_ms)  # fmt: skip

    def line(self) -> str:
        latency = f", {self.latency_ms:.0f} ms" if self.latency_ms is not None else ""
        return f"{self.rate:.1%} errors ({self.errors:,} of {self.requests:,} requests{latency})"


@dataclass(frozen=True)
class Signals:
    """One deploy group's new version on this cluster, since its deploy."""

    crashes: Sequence[CrashSeen] = ()
    health: Sequence[HealthFailure] = ()
    new: ErrorCounts = field(default_factory=ErrorCounts)
    old: ErrorCounts | None = None  # the versions it replaces, over the same time


@dataclass(frozen=True)
class Verdict:
    reason: Reason
    message: str
    evidence: dict[str, Any]


def patience_seconds(check: HealthCheck) -> float:
    """How long a new task may stay unhealthy before its deploy counts as failing: its grace
    period and three more checks."""
    return check.grace_period_seconds + 3 * (check.interval_seconds + check.timeout_seconds)


def error_verdict(
    signals: Signals,
    policy: RollbackPolicy,
    subject: str = "new version",
    others: str = "the old version",
) -> tuple[bool, str] | None:
    """(worse, the comparison line) once the new version (or canary) has ``min_requests``;
    None before. ``others``: what it is compared with (the old version, the rest)."""
    new = signals.new
    if new.requests < policy.min_requests:
        return None
    old = signals.old if signals.old is not None and signals.old.requests else None
    baseline = old.rate if old is not None else 0.0
    worse = new.rate > baseline + policy.error_rate_margin
    than = f"{old.line()} of {others}" if old else "no error before it"
    return worse, f"{subject} {new.line()} vs {than}: {'worse' if worse else 'as good'}"


def judge(
    signals: Signals,
    policy: RollbackPolicy,
    subject: str = "new version",
    others: str = "the old version",
) -> Verdict | None:
    """The first reason the new version is bad, with its evidence; None while it is not."""
    crashes = sorted(signals.crashes, key=lambda c: c.time)
    if len(crashes) >= policy.min_restarts:
        codes = ", ".join("OOM" if c.oom else str(c.exit_code) for c in crashes[-5:])
        last = next((c.last_line for c in reversed(crashes) if c.last_line), "")
        said = f"; last line: {last}" if last else ""
        return Verdict(
            "crash loop",
            f"crash-looping: {len(crashes)} crashes of the new version (exit codes {codes}){said}",
            {
                "crashes": [
                    {"task": c.task, "exit_code": c.exit_code, "oom": c.oom, "time": c.time}
                    for c in crashes
                ]
            },
        )
    if signals.health:
        first = min(signals.health, key=lambda h: h.time)
        return Verdict(
            "health checks",
            f"failing its health checks: task {first.task}: {first.detail or 'no answer'}",
            {
                "failures": [
                    {"task": h.task, "detail": h.detail, "time": h.time} for h in signals.health
                ]
            },
        )
    compared = error_verdict(signals, policy, subject, others)
    if compared is not None and compared[0]:
        old = signals.old
        return Verdict(
            "error rate",
            f"error rate through the proxy: {compared[1]}",
            {
                "new": {"errors": signals.new.errors, "requests": signals.new.requests},
                "old": {"errors": old.errors, "requests": old.requests} if old else None,
            },
        )
    return None
