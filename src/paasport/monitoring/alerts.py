"""The alert state machine, pure: check results + routing + ``now`` -> alert states + notifications.

``monitoring.monitor`` keeps the states between passes and hands the returned Alert values to the
sinks. Dedup key: (check, service, instance, cluster). A failing check fires once it has failed
for ``alert_after``, repeats every ``realert_every`` (<= 0: never), and resolves when it passes.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, replace
from typing import Literal

from paasport.monitoring.checks import STATUS_VALUE, CheckResult, Status
from paasport.types import MonitoringConfig

AlertKey = tuple[str, str, str, str]  # (check, service, instance, cluster)
Severity = Literal["page", "ticket"]
Reason = Literal["new", "realert", "escalated", "resolved"]


@dataclass(frozen=True)
class AlertState:
    """What the monitor remembers of one key between passes."""

    status: Status
    failing_since: float | None  # start of the current non-OK streak
    firing: bool = False
    last_sent: float | None = None
    severity: Severity = "ticket"
    last_alert: Alert | None = None  # the last fire notification (resolution copies it)


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
    severity = severity_of(result, routing)
    base = AlertState(status=result.status, failing_since=failing_since, severity=severity)

    reason: Reason | None = None
    if state is None or not state.firing:
        if now - failing_since >= alert_after:
            reason = "new"
    else:
        worse = STATUS_VALUE[result.status] > STATUS_VALUE[state.status]
        if worse or (severity == "page" and state.severity != "page"):
            reason = "escalated"
        elif (
            routing.realert_every > 0
            and state.last_sent is not None
            and now - state.last_sent >= routing.realert_every
        ):
            reason = "realert"

    if reason is None:
        if state is not None and state.firing:
            # Keep firing at the level last sent; a milder status is not news until it clears.
            return replace(state, failing_since=failing_since), None
        return base, None

    alert = Alert(
        check=result.check,
        service=result.service,
        instance=result.instance,
        cluster=result.cluster,
        status=result.status,
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
