"""Autoscaling decisions (pure): how many tasks an instance should run for the load it reports.

The reconciler gathers per-task samples (CPU via ``cpu_fraction``, HAProxy ``scur``), keeps the
recommendation history and calls ``decide`` each pass; it performs a changed count as a scale.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Literal

MetricsProvider = Literal["cpu", "http_inflight"]

# PaaSTA's defaults (paasta_tools/long_running_service_tools.py): DEFAULT_AUTOSCALING_SETPOINT 0.8
# of the task's cpus; DEFAULT_DESIRED_ACTIVE_REQUESTS_PER_REPLICA 1 with
# DEFAULT_ACTIVE_REQUESTS_AUTOSCALING_MOVING_AVERAGE_WINDOW 1800 s; the CPU window is its
# DEFAULT_CPU_AUTOSCALING_MOVING_AVERAGE_WINDOW 60 s (CPU there is now the HPA's own, near
# instantaneous, resource metric).
DEFAULT_SETPOINTS: Mapping[MetricsProvider, float] = {"cpu": 0.8, "http_inflight": 1.0}
DEFAULT_WINDOWS: Mapping[MetricsProvider, float] = {"cpu": 60.0, "http_inflight": 1800.0}
RATE_PERIOD_SECONDS = 60.0  # the scale-down rate cap is "per minute" (HPA periodSeconds 60)
# Decimal inputs land a hair off their boundaries in binary (0.72 / 0.8 - 1 > 0.1): compare and
# round with this slack so the tolerance edge and exact products behave as written.
EPSILON = 1e-9


@dataclass(frozen=True)
class AutoscalingPolicy:
    """An instance's ``autoscaling`` settings; None picks the metrics provider's default.

    Scale-down rules are PaaSTA's HPA ``scaleDown`` behaviour (kubernetes_tools.py): a 300 s
    stabilization window and at most 30% of the tasks per 60 s; tolerance 0.1 is the HPA's.
    """

    metrics_provider: MetricsProvider = "cpu"
    setpoint: float | None = None  # cpu: fraction of the task's cpus; http_inflight: per task
    decision_policy: Literal["proportional"] = "proportional"
    moving_average_window_seconds: float | None = None
    stabilization_window_seconds: float = 300.0
    tolerance: float = 0.1
    max_scale_down_fraction_per_minute: float = 0.3
    min_healthy_fraction_for_scale_down: float = 0.7

    def __post_init__(self) -> None:
        if self.metrics_provider not in DEFAULT_SETPOINTS:
            raise ValueError(f"unknown metrics_provider {self.metrics_provider!r}")
        if self.decision_policy != "proportional":
            raise ValueError(f"unknown decision_policy {self.decision_policy!r}")
        if self.target <= 0 or self.window <= 0:
            raise ValueError("setpoint and moving_average_window_seconds must be positive")
        if self.stabilization_window_seconds < 0 or self.tolerance < 0:
            raise ValueError("stabilization_window_seconds and tolerance must not be negative")
        if not 0 < self.max_scale_down_fraction_per_minute <= 1:
            raise ValueError("max_scale_down_fraction_per_minute must be within (0, 1]")

    @property
    def target(self) -> float:
        """The setpoint in force."""
        return DEFAULT_SETPOINTS[self.metrics_provider] if self.setpoint is None else self.setpoint

    @property
    def window(self) -> float:
        """The moving-average window in force, in seconds."""
        w = self.moving_average_window_seconds
        return DEFAULT_WINDOWS[self.metrics_provider] if w is None else w


@dataclass(frozen=True)
class Override:
    """A temporary range (``paasport autoscale-override``) replacing min/max until ``until``."""

    min_instances: int
    max_instances: int
    until: float  # epoch seconds; the override is gone from this instant on

    def active(self, now: float) -> bool:
        return now < self.until


@dataclass(frozen=True)
class Sample:
    """One reading of one task: CPU fraction or in-flight requests, at ``at``."""

    at: float
    value: float


@dataclass(frozen=True)
class TaskLoad:
    """A running task of the instance, its health now and its recent samples (any order)."""

    task_id: str
    healthy: bool
    samples: tuple[Sample, ...] = ()


@dataclass(frozen=True)
class Recommendation:
    """One history entry: what a pass recommended (before limits) and how many tasks ran."""

    at: float
    desired: int
    replicas: int


@dataclass(frozen=True)
class Decision:
    desired: int
    current: int
    metric: float | None  # the value compared with the setpoint; None when no task reported
    reason: str  # one sentence for people: the event text and ``paasport status``
    changed: bool
    record: Recommendation | None = None  # for the caller to append to the history (``remember``)


def effective_bounds(
    min_instances: int, max_instances: int, override: Override | None, now: float
) -> tuple[int, int]:
    """(min, max) in force: an unexpired override's, else the config's; min wins a crossing."""
    if override is not None and override.active(now):
        min_instances, max_instances = override.min_instances, override.max_instances
    lo = max(0, min_instances)
    return lo, max(lo, max_instances)


def moving_average(samples: Iterable[Sample], now: float, window: float) -> float | None:
    """Mean of the samples taken in (now - window, now]; None when there is none."""
    values = [s.value for s in samples if now - window < s.at <= now]
    return math.fsum(values) / len(values) if values else None


def scale_down_floor(
    current: int, history: Sequence[Recommendation], now: float, policy: AutoscalingPolicy
) -> int:
    """The fewest tasks allowed now: 30% (floored, like the HPA) of the count at the start of
    the last minute may go, and always at least one task per minute."""
    recent = (r.replicas for r in history if now - RATE_PERIOD_SECONDS < r.at <= now)
    start = max([current, *recent])
    allowed = math.floor(start * (1 - policy.max_scale_down_fraction_per_minute) + EPSILON)
    return max(0, min(allowed, start - 1))


def remember(
    history: Sequence[Recommendation], record: Recommendation | None, policy: AutoscalingPolicy
) -> tuple[Recommendation, ...]:
    """The history with ``record`` appended and entries no rule looks at any more dropped."""
    if record is None:
        return tuple(history)
    keep = max(policy.stabilization_window_seconds, RATE_PERIOD_SECONDS)
    return tuple(r for r in (*history, record) if record.at - keep < r.at <= record.at)


def decide(
    policy: AutoscalingPolicy,
    current: int,
    min_instances: int,
    max_instances: int,
    readings: Sequence[TaskLoad],
    now: float,
    history: Sequence[Recommendation] = (),
    bouncing: bool = False,
    override: Override | None = None,
) -> Decision:
    """The task count for the next pass (Kubernetes HPA's proportional rule).

    ``ceil(current * metric / setpoint)``, where ``metric`` is the mean over tasks of each task's
    moving average and tasks without samples count as at the setpoint (tasks missing from
    ``readings`` too, and as unhealthy); no change within the tolerance; a scale-down goes no
    lower than the highest recommendation of the stabilization window nor than
    ``scale_down_floor``, not at all while under 70% of the tasks are healthy, and never below
    one task (only ``max_instances`` 0 stops an instance); the result is clamped to the bounds in
    force. Nothing changes during a bounce; with no task running the instance starts at its
    minimum.
    """
    lo, hi = effective_bounds(min_instances, max_instances, override, now)
    suffix = _override_note(override, now)
    slots = max(current, len(readings))
    averages = [moving_average(t.samples, now, policy.window) for t in readings]
    known = [a for a in averages if a is not None]
    metric = (math.fsum(known) + policy.target * (slots - len(known))) / slots if known else None

    if bouncing:
        return _decision(current, current, metric, f"bounce under way: stays {current}{suffix}")
    if current <= 0:
        why = f"no tasks running; min_instances {lo}" if lo else "no tasks running"
        return _decision(lo, current, None, f"{why}: {_outcome(current, lo)}{suffix}")

    prefix = _describe(policy, metric, len(known), slots)
    limits: list[str] = []
    if metric is None:
        raw = current
    elif abs(metric / policy.target - 1) <= policy.tolerance + EPSILON:
        raw = current
        limits.append(f"within tolerance {policy.tolerance:g}")
    else:
        # a running instance keeps one task: with none left there is no load to measure
        raw = max(1, math.ceil(current * metric / policy.target - EPSILON))

    healthy = sum(1 for t in readings if t.healthy)
    held_for_health = raw < current and healthy / slots < policy.min_healthy_fraction_for_scale_down
    desired = raw
    if held_for_health:
        desired = current
        limits.append(f"only {healthy} of {slots} tasks healthy, no scale-down")
    elif raw < current:
        cutoff = now - policy.stabilization_window_seconds
        stabilized = min(current, max([raw, *(r.desired for r in history if cutoff < r.at <= now)]))
        floor = scale_down_floor(current, history, now, policy)
        desired = min(current, max(stabilized, floor))
        if floor > stabilized and desired > raw:
            limits.append(f"at most {policy.max_scale_down_fraction_per_minute:.0%} per minute")
        elif stabilized > raw:
            window = policy.stabilization_window_seconds
            limits.append(f"held by the {window:g} s stabilization window")

    if desired > hi:
        desired, limits = hi, [f"capped at max_instances {hi}"]
    elif desired < lo:
        desired, limits = lo, [f"raised to min_instances {lo}"]
    wants = f", wants {raw}" if raw not in (desired, current) else ""
    limit = "; " + "; ".join(limits) if limits else ""
    # a pass held for health stands by the current count, so the window restarts once tasks heal
    record = Recommendation(now, current if held_for_health else raw, current)
    reason = f"{prefix}{wants}{limit}: {_outcome(current, desired)}{suffix}"
    return _decision(desired, current, metric, reason, record)


def _decision(
    desired: int,
    current: int,
    metric: float | None,
    reason: str,
    record: Recommendation | None = None,
) -> Decision:
    return Decision(desired, current, metric, reason, desired != current, record)


def _outcome(current: int, desired: int) -> str:
    return f"stays {current}" if desired == current else f"{current} -> {desired}"


def _describe(policy: AutoscalingPolicy, metric: float | None, known: int, slots: int) -> str:
    name = policy.metrics_provider
    if metric is None:
        return f"no {name} metrics yet from {slots} tasks (counted at the setpoint)"
    text = f"{name} {metric:.2f} vs setpoint {policy.target:.2f} over {policy.window:g} s"
    return text if known == slots else f"{text} ({known} of {slots} tasks reporting)"


def _override_note(override: Override | None, now: float) -> str:
    if override is None or not override.active(now):
        return ""
    left = math.ceil(override.until - now)
    return f" (override {override.min_instances}..{override.max_instances} for {left} s more)"


# --- CPU from docker stats -------------------------------------------------------------------


@dataclass(frozen=True)
class CpuReading:
    """The cumulative counters of one ``docker stats`` reading (``cpu_stats``/``precpu_stats``)."""

    at: float  # epoch seconds of the reading (``read`` / ``preread``)
    total_usage_ns: int  # the container's CPU time
    system_usage_ns: int  # the host's CPU time, all cpus together
    online_cpus: int


def cpu_reading(stats_json: Mapping[str, object], *, previous: bool = False) -> CpuReading | None:
    """The ``cpu_stats`` (``precpu_stats`` with ``previous``) of a stats answer; None when it is
    empty, as the first reading of a one-shot answer's ``precpu_stats`` and a stopped task are."""
    stats = stats_json.get("precpu_stats" if previous else "cpu_stats")
    at = _epoch(stats_json.get("preread" if previous else "read"))
    if not isinstance(stats, Mapping) or at is None:
        return None
    usage = stats.get("cpu_usage")
    usage = usage if isinstance(usage, Mapping) else {}
    total, system = usage.get("total_usage"), stats.get("system_cpu_usage")
    online = stats.get("online_cpus")
    if not isinstance(online, int) or online <= 0:  # cgroup v1 daemons: count percpu_usage
        per_cpu = usage.get("percpu_usage")
        online = len(per_cpu) if isinstance(per_cpu, list) else 0
    if not isinstance(total, int) or not isinstance(system, int) or system <= 0 or online <= 0:
        return None
    return CpuReading(at, total, system, online)


def cpu_fraction(prev: CpuReading, cur: CpuReading, cpus: float) -> float | None:
    """The share of the task's ``cpus`` used between two readings: the docker CLI's CPU % formula
    (container delta / host delta * online cpus) over the allotment instead of one cpu.

    None when it cannot be told: no host time elapsed, a counter went back (the container
    restarted) or no allotment."""
    cpu_delta = cur.total_usage_ns - prev.total_usage_ns
    system_delta = cur.system_usage_ns - prev.system_usage_ns
    if cpus <= 0 or system_delta <= 0 or cpu_delta < 0:
        return None
    return cpu_delta / system_delta * cur.online_cpus / cpus


def cpu_sample(prev: CpuReading, cur: CpuReading, cpus: float) -> Sample | None:
    """``cpu_fraction`` as a sample taken at the later reading."""
    fraction = cpu_fraction(prev, cur, cpus)
    return None if fraction is None else Sample(cur.at, fraction)


def _epoch(value: object) -> float | None:
    """RFC 3339 (docker's nanosecond form included) to epoch seconds; None for Go's zero time."""
    if not isinstance(value, str):
        return None
    try:
        when = datetime.fromisoformat(value)
    except ValueError:
        return None
    return None if when.year <= 1 or when.tzinfo is None else when.timestamp()
