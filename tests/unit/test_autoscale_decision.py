"""bounce.autoscale: the scaling decision's rules as case tables, a simulated load drop through
the stabilization window, docker-stats CPU maths, and properties of ``decide``."""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import pytest
from hypothesis import assume, given
from hypothesis import strategies as st

from paasport.bounce.autoscale import (
    AutoscalingPolicy,
    CpuReading,
    Decision,
    Override,
    Recommendation,
    Sample,
    TaskLoad,
    cpu_fraction,
    cpu_reading,
    cpu_sample,
    decide,
    effective_bounds,
    moving_average,
    remember,
    scale_down_floor,
)
from paasport.discovery.haproxy_stats import parse_show_stat

NOW = 10_000.0
CPU = AutoscalingPolicy()  # setpoint 0.8 of the task's cpus, 60 s moving average
INFLIGHT = AutoscalingPolicy("http_inflight")  # 1 request per task, 1800 s moving average


def tasks(*values: float | None, unhealthy: int = 0) -> tuple[TaskLoad, ...]:
    """One task per value (None: a task with no samples); the last ``unhealthy`` are unhealthy."""
    n = len(values)
    return tuple(
        TaskLoad(f"t{i}", i < n - unhealthy, () if v is None else (Sample(NOW - 10, v),))
        for i, v in enumerate(values)
    )


def rec(age: float, desired: int, replicas: int) -> Recommendation:
    return Recommendation(NOW - age, desired, replicas)


@dataclass(frozen=True)
class Case:
    current: int
    values: tuple[float | None, ...]
    desired: int
    says: str  # a part of the reason
    lo: int = 1
    hi: int = 10
    unhealthy: int = 0
    history: tuple[Recommendation, ...] = ()
    bouncing: bool = False
    override: Override | None = None
    policy: AutoscalingPolicy = field(default=CPU)


def case(id: str, *args: Any, **kwargs: Any) -> Any:
    return pytest.param(Case(*args, **kwargs), id=id)


DECISIONS = [
    # the proportional rule: ceil(current * metric / setpoint)
    case("issue-example", 3, (0.92,) * 3, 4, "cpu 0.92 vs setpoint 0.70 over 120 s: 3 -> 4",
         policy=AutoscalingPolicy(setpoint=0.7, moving_average_window_seconds=120)),
    case("scale-up-from-1", 1, (1.2,), 2, "cpu 1.20 vs setpoint 0.80 over 60 s: 1 -> 2"),
    case("scale-up-far", 2, (2.0, 2.0), 5, ": 2 -> 5"),
    case("mean-over-tasks", 3, (1.6, 0.8, 0.0), 3, "cpu 0.80 vs"),
    case("exact-product-no-extra-task", 5, (0.96,) * 5, 6, ": 5 -> 6"),
    case("http-inflight", 2, (3.0, 5.0), 8,
         "http_inflight 4.00 vs setpoint 1.00 over 1800 s: 2 -> 8", policy=INFLIGHT),
    # tolerance 0.1, both edges inclusive
    case("tolerance-upper-edge", 4, (0.88,) * 4, 4, "within tolerance 0.1: stays 4"),
    case("tolerance-lower-edge", 4, (0.72,) * 4, 4, "within tolerance 0.1: stays 4"),
    case("just-above-tolerance", 4, (0.8811,) * 4, 5, ": 4 -> 5"),
    case("just-below-tolerance", 10, (0.7189,) * 10, 9, ": 10 -> 9"),
    # tasks without metrics count as at the setpoint
    case("some-without-samples", 3, (1.6, None, None), 4, "(1 of 3 tasks reporting): 3 -> 4"),
    case("tasks-missing-from-readings", 4, (1.6,), 5, "(1 of 4 tasks reporting): 4 -> 5"),
    case("no-metrics", 3, (None,) * 3, 3, "no cpu metrics yet from 3 tasks"),
    case("no-readings", 3, (), 3, "no cpu metrics yet from 3 tasks"),
    case("no-metrics-above-max", 12, (None,) * 12, 10, "capped at max_instances 10: 12 -> 10"),
    # no tasks: nothing to measure, the minimum
    case("no-tasks-starts-min", 0, (), 1, "no tasks running; min_instances 1: 0 -> 1"),
    case("no-tasks-min-2", 0, (), 2, ": 0 -> 2", lo=2),
    case("no-tasks-min-0", 0, (), 0, "no tasks running: stays 0", lo=0),
    case("idle-keeps-one-task", 1, (0.0,), 1, "stays 1", lo=0),
    # min/max
    case("capped-at-max", 3, (1.6,) * 3, 5, "wants 6; capped at max_instances 5: 3 -> 5", hi=5),
    case("at-max-stays", 5, (1.6,) * 5, 5, "capped at max_instances 5: stays 5", hi=5),
    case("above-max-lowered", 8, (0.8,) * 8, 5, "capped at max_instances 5: 8 -> 5", hi=5),
    case("below-min-raised", 1, (0.8,), 3, "raised to min_instances 3: 1 -> 3", lo=3),
    case("scale-down-stops-at-min", 2, (0.0, 0.0), 2, "raised to min_instances 2: stays 2", lo=2),
    # overrides replace min/max until they expire
    case("override-raises-min", 3, (0.8,) * 3, 6,
         "raised to min_instances 6: 3 -> 6 (override 6..12 for 600 s more)",
         hi=5, override=Override(6, 12, NOW + 600)),
    case("override-raises-max", 5, (1.6,) * 5, 10, ": 5 -> 10 (override 1..12",
         hi=5, override=Override(1, 12, NOW + 1)),
    case("override-expires-at-until", 5, (1.6,) * 5, 5, "capped at max_instances 5: stays 5",
         hi=5, override=Override(1, 12, NOW)),
    case("override-expired", 5, (1.6,) * 5, 5, "capped at max_instances 5: stays 5",
         hi=5, override=Override(1, 12, NOW - 3600)),
    case("override-lowers-max", 8, (0.8,) * 8, 4, "capped at max_instances 4: 8 -> 4",
         override=Override(1, 4, NOW + 60)),
    # stabilization: a scale-down goes only to the window's highest recommendation
    case("window-holds", 4, (0.2,) * 4, 4,
         "wants 1; held by the 300 s stabilization window: stays 4", history=(rec(100, 4, 4),)),
    case("window-holds-part", 4, (0.2,) * 4, 3, "held by the 300 s stabilization window: 4 -> 3",
         history=(rec(100, 3, 4), rec(200, 2, 4))),
    case("window-never-raises", 4, (0.2,) * 4, 4, "stays 4", history=(rec(100, 9, 4),)),
    case("window-releases-at-300-s", 4, (0.2,) * 4, 2, ": 4 -> 2", history=(rec(300, 4, 4),)),
    case("window-ignores-future", 4, (0.2,) * 4, 2, ": 4 -> 2", history=(rec(-5, 4, 4),)),
    case("window-no-brake-up", 3, (1.6,) * 3, 6, ": 3 -> 6", history=(rec(10, 1, 3),)),
    case("window-no-brake-in-tolerance", 3, (0.8,) * 3, 3, "within tolerance",
         history=(rec(10, 1, 3),)),
    # at most 30% of the tasks per minute (floored like the HPA), at least one
    case("rate-30-percent", 10, (0.08,) * 10, 7, "wants 1; at most 30% per minute: 10 -> 7"),
    case("rate-3-of-10", 10, (0.56,) * 10, 7, "cpu 0.56 vs setpoint 0.80 over 60 s: 10 -> 7"),
    case("rate-one-of-three", 3, (0.0,) * 3, 2, "at most 30% per minute: 3 -> 2"),
    case("rate-one-of-two", 2, (0.0,) * 2, 1, ": 2 -> 1"),
    case("rate-used-this-minute", 7, (0.08,) * 7, 7, "at most 30% per minute: stays 7",
         history=(rec(30, 1, 10),)),
    case("rate-minute-over", 7, (0.08,) * 7, 4, "at most 30% per minute: 7 -> 4",
         history=(rec(60, 1, 10),)),
    case("rate-100-tasks", 100, (0.08,) * 100, 70, ": 100 -> 70", hi=100),
    case("rate-small-fraction-one-step", 10, (0.08,) * 10, 9, "at most 1% per minute: 10 -> 9",
         policy=AutoscalingPolicy(max_scale_down_fraction_per_minute=0.01)),
    # health: no scale-down while fewer than 70% of the tasks are healthy
    case("unhealthy-blocks-down", 4, (0.2,) * 4, 4,
         "only 2 of 4 tasks healthy, no scale-down: stays 4", unhealthy=2),
    case("seventy-percent-healthy-ok", 10, (0.08,) * 10, 7, ": 10 -> 7", unhealthy=3),
    case("sixty-percent-healthy-blocks", 10, (0.08,) * 10, 10, "only 6 of 10", unhealthy=4),
    case("missing-tasks-not-healthy", 4, (0.2, 0.2), 4, "only 2 of 4 tasks healthy"),
    case("unhealthy-still-scales-up", 4, (1.6,) * 4, 8, ": 4 -> 8", unhealthy=3),
    case("unhealthy-still-capped", 8, (0.2,) * 8, 5, "capped at max_instances 5", hi=5,
         unhealthy=8),
    # nothing during a bounce
    case("bounce-no-scale-up", 3, (1.6,) * 3, 3, "bounce under way: stays 3", bouncing=True),
    case("bounce-no-scale-down", 6, (0.1,) * 6, 6, "bounce under way", bouncing=True),
    case("bounce-even-above-max", 8, (0.8,) * 8, 8, "bounce under way", hi=5, bouncing=True),
]  # fmt: skip


@pytest.mark.parametrize("c", DECISIONS)
def test_decide(c: Case) -> None:
    d = decide(
        c.policy,
        c.current,
        c.lo,
        c.hi,
        tasks(*c.values, unhealthy=c.unhealthy),
        NOW,
        c.history,
        c.bouncing,
        c.override,
    )
    assert (d.desired, d.current, d.changed) == (c.desired, c.current, c.desired != c.current)
    assert c.says in d.reason


@pytest.mark.parametrize(
    ("unhealthy", "bouncing", "record"),
    [
        pytest.param(0, False, Recommendation(NOW, 1, 10), id="raw-recommendation-before-limits"),
        pytest.param(4, False, Recommendation(NOW, 10, 10), id="health-hold-stands-by"),
        pytest.param(0, True, None, id="bounce-records-nothing"),
    ],
)
def test_record(unhealthy: int, bouncing: bool, record: Recommendation | None) -> None:
    readings = tasks(*(0.08,) * 10, unhealthy=unhealthy)
    assert decide(CPU, 10, 1, 10, readings, NOW, (), bouncing).record == record


def test_no_tasks_records_nothing_and_reports_no_metric() -> None:
    d = decide(CPU, 0, 1, 10, (), NOW)
    assert (d.metric, d.record) == (None, None)


def test_metric_counts_silent_tasks_at_setpoint() -> None:
    d = decide(CPU, 4, 1, 10, tasks(1.6, 0.0, None, None), NOW)
    assert d.metric == pytest.approx((1.6 + 0.0 + 0.8 + 0.8) / 4)


def test_old_samples_count_as_no_metrics() -> None:
    old = (TaskLoad("t0", True, (Sample(NOW - 61, 2.0),)),)
    d = decide(CPU, 1, 1, 10, old, NOW)
    assert (d.desired, d.metric) == (1, None)


def test_load_drop_waits_for_the_window_then_steps_down() -> None:
    """Load falls from 3 busy tasks to idle at t=0; a pass every 15 s applies its decision."""
    history: tuple[Recommendation, ...] = ()
    current, counts = 3, {}
    for t in range(-120, 900, 15):
        load = 0.8 if t < 0 else 0.05
        readings = tuple(TaskLoad(f"t{i}", True, (Sample(t, load),)) for i in range(current))
        d = decide(CPU, current, 1, 10, readings, float(t), history)
        history = remember(history, d.record, CPU)
        current = d.desired
        counts[t] = current
    # the window holds 3 until the last pass recommending 3 (t=-15) is 300 s old
    assert {n for t, n in counts.items() if t < 285} == {3}
    # then 30% of 3 floors to one task a minute
    assert {n for t, n in counts.items() if 285 <= t < 345} == {2}
    assert {n for t, n in counts.items() if t >= 345} == {1}  # and never below one task
    assert all(r.at > 885 - 300 for r in history)  # remember() forgets what no rule reads


@pytest.mark.parametrize(
    ("samples", "now", "window", "mean"),
    [
        pytest.param((), NOW, 60.0, None, id="none"),
        pytest.param((Sample(NOW - 10, 0.5), Sample(NOW - 20, 1.5)), NOW, 60.0, 1.0, id="mean"),
        pytest.param((Sample(NOW - 60, 9.0), Sample(NOW, 1.0)), NOW, 60.0, 1.0, id="edges"),
        pytest.param((Sample(NOW + 1, 9.0),), NOW, 60.0, None, id="future-ignored"),
        pytest.param((Sample(NOW - 61, 9.0),), NOW, 60.0, None, id="all-too-old"),
    ],
)
def test_moving_average(
    samples: tuple[Sample, ...], now: float, window: float, mean: float | None
) -> None:
    assert moving_average(samples, now, window) == mean


@pytest.mark.parametrize(
    ("current", "history", "floor"),
    [
        pytest.param(10, (), 7, id="30-percent"),
        pytest.param(3, (), 2, id="floored-3"),
        pytest.param(1, (), 0, id="one"),
        pytest.param(0, (), 0, id="zero"),
        pytest.param(7, (rec(59, 1, 10),), 7, id="start-of-minute-count"),
        pytest.param(7, (rec(60, 1, 10),), 4, id="minute-over"),
    ],
)
def test_scale_down_floor(current: int, history: tuple[Recommendation, ...], floor: int) -> None:
    assert scale_down_floor(current, history, NOW, CPU) == floor


@pytest.mark.parametrize(
    ("override", "bounds"),
    [
        pytest.param(None, (2, 5), id="config"),
        pytest.param(Override(3, 9, NOW + 1), (3, 9), id="override"),
        pytest.param(Override(3, 9, NOW), (2, 5), id="expired-at-until"),
        pytest.param(Override(6, 4, NOW + 1), (6, 6), id="min-wins-a-crossing"),
        pytest.param(Override(-1, 4, NOW + 1), (0, 4), id="never-negative"),
    ],
)
def test_effective_bounds(override: Override | None, bounds: tuple[int, int]) -> None:
    assert effective_bounds(2, 5, override, NOW) == bounds


def test_remember_appends_and_forgets() -> None:
    history = (rec(400, 9, 9), rec(100, 5, 5))
    assert remember(history, Recommendation(NOW, 4, 5), CPU) == (
        rec(100, 5, 5),
        Recommendation(NOW, 4, 5),
    )
    assert remember(history, None, CPU) == history


@pytest.mark.parametrize(
    ("policy", "target", "window"),
    [
        pytest.param(AutoscalingPolicy(), 0.8, 60.0, id="cpu-defaults"),
        pytest.param(AutoscalingPolicy("http_inflight"), 1.0, 1800.0, id="inflight-defaults"),
        pytest.param(AutoscalingPolicy("cpu", 0.5, "proportional", 300), 0.5, 300.0, id="set"),
    ],
)
def test_policy_defaults(policy: AutoscalingPolicy, target: float, window: float) -> None:
    assert (policy.target, policy.window) == (target, window)
    assert (policy.stabilization_window_seconds, policy.tolerance) == (300.0, 0.1)
    assert policy.max_scale_down_fraction_per_minute == 0.3


@pytest.mark.parametrize(
    "kwargs",
    [
        pytest.param({"metrics_provider": "uwsgi"}, id="provider"),
        pytest.param({"decision_policy": "pid"}, id="decision-policy"),
        pytest.param({"setpoint": 0.0}, id="setpoint-zero"),
        pytest.param({"moving_average_window_seconds": -1}, id="window"),
        pytest.param({"tolerance": -0.1}, id="tolerance"),
        pytest.param({"max_scale_down_fraction_per_minute": 1.5}, id="fraction"),
        pytest.param({"max_scale_down_fraction_per_minute": 0.0}, id="no-scale-down"),
    ],
)
def test_policy_rejects(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ValueError):
        AutoscalingPolicy(**kwargs)


# --- CPU from docker stats -------------------------------------------------------------------

READ_AT = "2024-05-01T10:00:02.123456789Z"
READ_EPOCH = 1714557602.123456


def reading(total: int, system: int, online: int = 4, at: float = READ_EPOCH) -> CpuReading:
    return CpuReading(at, total, system, online)


BASE = reading(10**9, 10**10)  # the earlier reading: 1 s of container CPU, 10 s of host CPU


@pytest.mark.parametrize(
    ("prev", "cur", "cpus", "fraction"),
    [
        # 0.5 s of CPU while the 4-cpu host ran 1 s (4e9 ns): half a cpu
        pytest.param(BASE, reading(15 * 10**8, 14 * 10**9), 1.0, 0.5, id="half-of-1-cpu"),
        pytest.param(BASE, reading(15 * 10**8, 14 * 10**9), 0.5, 1.0, id="all-of-half-a-cpu"),
        pytest.param(BASE, reading(15 * 10**8, 14 * 10**9), 2.0, 0.25, id="quarter-of-2-cpus"),
        pytest.param(BASE, reading(10**9, 14 * 10**9), 1.0, 0.0, id="idle"),
        pytest.param(BASE, reading(2 * 10**9, 10**10), 1.0, None, id="no-host-time"),
        pytest.param(BASE, reading(5, 14 * 10**9), 1.0, None, id="restarted"),
        pytest.param(BASE, reading(2 * 10**9, 14 * 10**9), 0.0, None, id="no-allotment"),
    ],
)
def test_cpu_fraction(prev: CpuReading, cur: CpuReading, cpus: float, fraction: float) -> None:
    assert cpu_fraction(prev, cur, cpus) == fraction


V2_STATS: dict[str, Any] = {
    "read": READ_AT,
    "preread": "2024-05-01T10:00:01.1Z",
    "cpu_stats": {
        "cpu_usage": {"total_usage": 15 * 10**8, "usage_in_kernelmode": 1, "usage_in_usermode": 2},
        "system_cpu_usage": 14 * 10**9,
        "online_cpus": 4,
        "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
    },
    "precpu_stats": {
        "cpu_usage": {"total_usage": 10**9, "usage_in_kernelmode": 1, "usage_in_usermode": 2},
        "system_cpu_usage": 10**10,
        "online_cpus": 4,
        "throttling_data": {"periods": 0, "throttled_periods": 0, "throttled_time": 0},
    },
}
ONE_SHOT: dict[str, Any] = {  # ``one-shot=true``: precpu_stats is left empty
    **V2_STATS,
    "preread": "0001-01-01T00:00:00Z",
    "precpu_stats": {"cpu_usage": {"total_usage": 0}, "throttling_data": {}},
}
V1_STATS: dict[str, Any] = {  # cgroup v1 daemons: percpu_usage, no online_cpus
    "read": READ_AT,
    "cpu_stats": {
        "cpu_usage": {"total_usage": 7, "percpu_usage": [3, 4]},
        "system_cpu_usage": 99,
    },
}


@pytest.mark.parametrize(
    ("stats", "previous", "expected"),
    [
        pytest.param(V2_STATS, False, reading(15 * 10**8, 14 * 10**9), id="cgroup-v2"),
        pytest.param(
            V2_STATS, True, reading(10**9, 10**10, at=1714557601.1), id="cgroup-v2-precpu"
        ),
        pytest.param(ONE_SHOT, True, None, id="one-shot-empty-precpu"),
        pytest.param(V1_STATS, False, reading(7, 99, online=2), id="cgroup-v1-percpu"),
        pytest.param({**V2_STATS, "read": "0001-01-01T00:00:00Z"}, False, None, id="zero-time"),
        pytest.param({**V2_STATS, "read": "yesterday"}, False, None, id="bad-time"),
        pytest.param({"read": READ_AT}, False, None, id="no-cpu-stats"),
        pytest.param({"read": READ_AT, "cpu_stats": {"cpu_usage": {}}}, False, None, id="empty"),
    ],
)
def test_cpu_reading(stats: dict[str, Any], previous: bool, expected: CpuReading | None) -> None:
    got = cpu_reading(stats, previous=previous)
    if expected is None:
        assert got is None
    else:
        assert got is not None
        assert got.at == pytest.approx(expected.at)
        assert (got.total_usage_ns, got.system_usage_ns, got.online_cpus) == (
            expected.total_usage_ns,
            expected.system_usage_ns,
            expected.online_cpus,
        )


def test_cpu_sample_from_one_stats_answer() -> None:
    prev, cur = cpu_reading(V2_STATS, previous=True), cpu_reading(V2_STATS)
    assert prev is not None and cur is not None
    assert cpu_sample(prev, cur, 0.5) == Sample(cur.at, 1.0)
    assert cpu_sample(cur, prev, 0.5) is None


# --- in-flight requests from HAProxy ---------------------------------------------------------

SHOW_STAT = """\
# pxname,svname,qcur,qmax,scur,smax,slim,stot,econ,eresp,status,weight,check_status,addr,
web.main,FRONTEND,,,7,9,2000,120,,,OPEN,,,,
web.main,s0,0,0,3,5,,60,0,0,UP,1,L7OK,127.0.0.1:31001,
web.main,s1,0,0,4,6,,60,0,0,UP,1,L7OK,127.0.0.1:31002,
web.main,s2,0,0,,,,0,0,0,MAINT,1,,127.0.0.1:31003,
web.main,BACKEND,0,0,7,9,200,120,0,0,UP,2,,,
"""


def test_scur_per_server_feeds_inflight_samples() -> None:
    rows = parse_show_stat(SHOW_STAT)
    assert [(r.server, r.scur) for r in rows] == [("s0", 3), ("s1", 4), ("s2", 0)]


# --- properties ------------------------------------------------------------------------------

values = st.one_of(st.none(), st.floats(0.0, 5.0))
overrides = st.builds(Override, st.integers(0, 5), st.integers(5, 20), st.floats(0, 2 * NOW))
history_entries = st.builds(
    Recommendation, st.floats(NOW - 600, NOW), st.integers(0, 60), st.integers(0, 60)
)


@st.composite
def situations(draw: st.DrawFn) -> dict[str, Any]:
    lo = draw(st.integers(0, 10))
    current = draw(st.integers(0, 40))
    healths = draw(st.lists(st.booleans(), max_size=current + 2))
    loads = draw(st.lists(values, min_size=len(healths), max_size=len(healths)))
    return {
        "current": current,
        "min_instances": lo,
        "max_instances": draw(st.integers(lo, 50)),
        "readings": tuple(
            TaskLoad(f"t{i}", h, () if v is None else (Sample(NOW - 5, v),))
            for i, (h, v) in enumerate(zip(healths, loads, strict=False))
        ),
        "history": tuple(draw(st.lists(history_entries, max_size=8))),
        "override": draw(st.none() | overrides),
    }


def _decide(s: dict[str, Any], bouncing: bool = False) -> Decision:
    return decide(
        CPU,
        s["current"],
        s["min_instances"],
        s["max_instances"],
        s["readings"],
        NOW,
        s["history"],
        bouncing,
        s["override"],
    )


@given(situations())
def test_always_within_bounds(s: dict[str, Any]) -> None:
    lo, hi = effective_bounds(s["min_instances"], s["max_instances"], s["override"], NOW)
    d = _decide(s)
    assert lo <= d.desired <= hi
    assert d.changed == (d.desired != d.current)


@given(situations())
def test_never_scales_down_while_unhealthy(s: dict[str, Any]) -> None:
    _, hi = effective_bounds(s["min_instances"], s["max_instances"], s["override"], NOW)
    slots = max(s["current"], len(s["readings"]))
    healthy = sum(t.healthy for t in s["readings"])
    assume(slots and healthy / slots < 0.7 and s["current"] <= hi)
    assert _decide(s).desired >= s["current"]


@given(situations())
def test_scale_down_at_most_30_percent_per_pass(s: dict[str, Any]) -> None:
    _, hi = effective_bounds(s["min_instances"], s["max_instances"], s["override"], NOW)
    assume(s["current"] <= hi)
    d = _decide(s)
    if d.desired < d.current:
        assert d.current - d.desired <= max(1, math.ceil(0.3 * d.current))


@given(situations())
def test_nothing_during_a_bounce(s: dict[str, Any]) -> None:
    d = _decide(s, bouncing=True)
    assert (d.desired, d.changed, d.record) == (s["current"], False, None)


@given(
    st.integers(1, 30),
    st.floats(0.9, 1.1),
    st.lists(st.booleans(), min_size=1, max_size=30),
)
def test_idempotent_within_tolerance(current: int, factor: float, healths: list[bool]) -> None:
    history: tuple[Recommendation, ...] = ()
    for now in (NOW, NOW + 15, NOW + 400):
        readings = tuple(
            TaskLoad(f"t{i}", healths[i % len(healths)], (Sample(now - 5, 0.8 * factor),))
            for i in range(current)
        )
        d = decide(CPU, current, 1, 30, readings, now, history)
        assert (d.desired, d.changed) == (current, False)
        assert "within tolerance" in d.reason
        history = remember(history, d.record, CPU)
