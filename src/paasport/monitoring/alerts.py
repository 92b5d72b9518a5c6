"""The alert state machine, pure: check results + routing + ``now`` -> alert states + notifications.

``monitoring.monitor`` keeps the states between passes and hands the returned Alert values to the
sinks. Dedup key: (check, service, instance, cluster). A failing check fires once it has failed
*at that level* (WARN, CRIT ticket, CRIT page) for ``alert_after``, repeats every ``realert_every``
(<= 0: never), and resolves when it passes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Literal

from paasport.monitoring.checks import CheckResult, Status
from paasport.types import MonitoringConfig

AlertKey = tuple[str, str, str, str]  # (check, service, instance, cluster)
Severity = Literal["page", "ticket"]
Reason = Literal["new", "realert", "escalated", "resolved"]


@dataclass(frozen=True)
class AlertState:
    """What the monitor remembers of one key between passes."""

    status: Status  # firing: the level last sent; otherwise the latest result's
    failing_since: float | None  # start of the current non-OK streak
    firing: bool = False
    last_sent: float | None = None
    severity: Severity = "ticket"
    last_alert: Alert | None = None  # the last fire notification (resolution copies it)
    # since[i]: start of the current streak at level i + 1 or above (see ``level_of``)
    since: tuple[float, ...] = ()


@dataclass(frozen=True)
class Alert:
    """A notification for the sinks: a firing alert (new, repeated, escalated) or a resolution."""

    check: str
    service: str
    instance: str
    cluster: str
    status: Status
    severity: Severity
    reason: Reason
    message: str
    starts_at: float
    ends_at: float | None  # set on resolution
    routing: MonitoringConfig

    @property
    def key(self) -> AlertKey:
        return (self.check, self.service, self.instance, self.cluster)

    @property
    def firing(self) -> bool:
        return self.reason != "resolved"


def key_of(result: CheckResult) -> AlertKey:
    return (result.check, result.service, result.instance, result.cluster)


def severity_of(result: CheckResult, routing: MonitoringConfig) -> Severity:
    """Only a CRIT of a check that may page, for a team that pages, is a page."""
    if result.status == "CRIT" and result.can_page and routing.page:
        return "page"
    return "ticket"


# The levels a failing check alerts at, mildest first: a level fires only after the check has
# been failing at that level or above for ``alert_after`` (PaaSTA/Sensu count occurrences at the
# status that alerts). So a bounce dip downgraded to a WARN ticket does not make the CRIT page
# that follows it fire at once: the page waits ``alert_after`` of its own.
_LEVELS: tuple[tuple[Status, Severity], ...] = (
    ("WARN", "ticket"),
    ("CRIT", "ticket"),
    ("CRIT", "page"),
)


def level_of(status: Status, severity: Severity) -> int:
    """0 for OK, then 1 + the index in ``_LEVELS`` (WARN 1, CRIT ticket 2, CRIT page 3)."""
    if status == "OK":
        return 0
    if status == "WARN":
        return 1
    return 3 if severity == "page" else 2


def streaks(previous: tuple[float, ...], level: int, now: float) -> tuple[float, ...]:
    """Start of the streak at each level up to ``level``: kept while the check stays at or above
    it, restarted at ``now`` when it just reached it, dropped above ``level``."""
    return tuple(previous[i] if i < len(previous) else now for i in range(level))


def due_level(since: tuple[float, ...], alert_after: float, now: float) -> int:
    """The highest level failing for at least ``alert_after`` (0: none yet)."""
    due = 0
    for i, start in enumerate(since):
        if now - start >= alert_after:
            due = i + 1
    return due


def step(
    state: AlertState | None, result: CheckResult, routing: MonitoringConfig, now: float
) -> tuple[AlertState | None, Alert | None]:
    """Advance one key by one result: the new state (None: all clear) and what to send."""
    if result.status == "OK":
        if state is not None and state.firing and state.last_alert is not None:
            resolved = replace(
                state.last_alert,
                status="OK",
                reason="resolved",
                message=result.message,
                ends_at=now,
                routing=routing,
            )
            return None, resolved
        return None, None

    failing_since = now
    if state is not None and state.failing_since is not None:
        failing_since = state.failing_since
    alert_after = result.alert_after if result.alert_after is not None else routing.alert_after
    level = level_of(result.status, severity_of(result, routing))
    since = streaks(state.since if state is not None else (), level, now)
    due = due_level(since, alert_after, now)
    status, severity = _LEVELS[due - 1] if due else (result.status, severity_of(result, routing))
    base = AlertState(status=status, failing_since=failing_since, severity=severity, since=since)

    reason: Reason | None = None
    if state is None or not state.firing:
        if due:
            reason = "new"
    else:
        sent = level_of(state.status, state.severity)
        if due > sent:
            reason = "escalated"
        elif (
            routing.realert_every > 0
            and state.last_sent is not None
            and now - state.last_sent >= routing.realert_every
        ):
            reason = "realert"
            if due < sent:  # a milder status is not news: repeat the level last sent
                status, severity = state.status, state.severity
                base = replace(base, status=status, severity=severity)

    if reason is None:
        if state is not None and state.firing:
            # Keep firing at the level last sent; a milder status is not news until it clears.
            return replace(state, failing_since=failing_since, since=since), None
        return base, None

    alert = Alert(
        check=result.check,
        service=result.service,
        instance=result.instance,
        cluster=result.cluster,
        status=status,
        severity=severity,
        reason=reason,
        message=result.message,
        starts_at=failing_since,
        ends_at=None,
        routing=routing,
    )
    return replace(base, firing=True, last_sent=now, last_alert=alert), alert


def evaluate(
    states: Mapping[AlertKey, AlertState],
    results: Iterable[tuple[CheckResult, MonitoringConfig]],
    now: float,
) -> tuple[dict[AlertKey, AlertState], list[Alert]]:
    """One monitor pass: step every result; keys without a result this pass keep their state."""
    new_states = dict(states)
    alerts: list[Alert] = []
    for result, routing in results:
        key = key_of(result)
        state, alert = step(new_states.get(key), result, routing, now)
        if state is None:
            new_states.pop(key, None)
        else:
            new_states[key] = state
        if alert is not None:
            alerts.append(alert)
    return new_states, alerts


def resolve_vanished(
    states: Mapping[AlertKey, AlertState],
    live: Iterable[tuple[str, str, str]],
    now: float,
) -> tuple[dict[AlertKey, AlertState], list[Alert]]:
    """Resolve every alert of an instance no longer monitored (removed from the configs)."""
    live_set = set(live)
    kept: dict[AlertKey, AlertState] = {}
    alerts: list[Alert] = []
    for key, state in states.items():
        if key[1:] in live_set:
            kept[key] = state
        elif state.firing and state.last_alert is not None:
            alerts.append(
                replace(
                    state.last_alert,
                    status="OK",
                    reason="resolved",
                    message=f"{key[1]}.{key[2]} on {key[3]}: no longer configured",
                    ends_at=now,
                )
            )
    return kept, alerts


def active_alerts(states: Mapping[AlertKey, AlertState]) -> list[Alert]:
    """The alerts currently firing (re-posted to Alertmanager every pass so they stay active)."""
    return [s.last_alert for s in states.values() if s.firing and s.last_alert is not None]
