"""HAProxy decisions, pure: namespaces + backends -> slot assignment, config text, commands.

``plan_proxy`` is called by ``discovery.haproxy`` on every agent pass: it keeps each backend in
its server slot, fills spare slots through runtime API commands, and asks for a reload only when
the listener set changes or a namespace outgrows its slots. ``render_config`` writes haproxy.cfg.
"""

from __future__ import annotations

import hashlib
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

from paasport.discovery.registry import Backend
from paasport.types import Namespace

SlotState = Literal["ready", "drain", "maint"]
MIN_SLOTS = 8
FREE_HOST = "127.0.0.1"
FREE_PORT = 1  # nothing listens there; free slots are in maintenance anyway
DEFAULT_CLIENT_TIMEOUT_MS = 30000
FINGERPRINT_PREFIX = "# listeners: "
_NAME = re.compile(r"^[a-zA-Z0-9_.-]+$")
_HEADER = re.compile(r"^[A-Za-z0-9-]+$")


@dataclass(frozen=True)
class Slot:
    """One ``server`` line of a backend: free (task_id None, maint) or holding one task."""

    name: str
    task_id: str | None = None
    host: str = FREE_HOST
    port: int = FREE_PORT
    state: SlotState = "maint"
    weight: int = 1


@dataclass(frozen=True)
class ProxyPaths:
    admin_socket: str
    server_state_file: str


@dataclass(frozen=True)
class ProxyState:
    """What one HAProxy serves: its listeners (namespaces with a proxy port) and their slots."""

    listeners: tuple[Namespace, ...] = ()
    binds: tuple[str, ...] = ("127.0.0.1",)
    slots: Mapping[str, tuple[Slot, ...]] = field(default_factory=dict)

    def slot_of(self, namespace: str, task_id: str) -> Slot | None:
        for slot in self.slots.get(namespace, ()):
            if slot.task_id == task_id:
                return slot
        return None


@dataclass(frozen=True)
class ProxyPlan:
    """The next state, whether it needs a reload, and the runtime commands to get there."""

    state: ProxyState
    reload: bool
    commands: tuple[str, ...]


def slot_count(n_backends: int, min_slots: int = MIN_SLOTS) -> int:
    """Spare capacity: at least ``min_slots``, and twice what is registered now."""
    return max(min_slots, 2 * n_backends)


def _listeners(namespaces: Sequence[Namespace]) -> tuple[Namespace, ...]:
    return tuple(sorted((n for n in namespaces if n.proxy_port), key=lambda n: n.full_name))


def _by_namespace(backends: Iterable[Backend]) -> dict[str, list[Backend]]:
    grouped: dict[str, list[Backend]] = {}
    for b in sorted(backends):
        grouped.setdefault(b.namespace, []).append(b)
    return {ns: shared_weights(members) for ns, members in grouped.items()}


MAX_WEIGHT = 256  # HAProxy's largest server weight
BASE_WEIGHT = 100  # an ordinary task's weight when some instance has a share


def shared_weights(backends: Sequence[Backend]) -> list[Backend]:
    """One namespace's backends with HAProxy weights for their shares: the tasks of an
    instance with a share (canary_weight_percent) take that share of the traffic between them,
    the other tasks share the rest evenly; without shares every weight stays as registered.
    Instances with the same share count as one group. Pure."""
    live = [b for b in backends if b.state != "drain"]
    groups: dict[float, list[Backend]] = {}
    for b in live:
        if b.share > 0:
            groups.setdefault(b.share, []).append(b)
    if not groups:
        return list(backends)
    rest = [b for b in live if b.share <= 0]
    taken = min(sum(groups), 100.0)
    raw: dict[str, float] = {}
    if rest and taken < 100.0:
        for b in rest:
            raw[b.task_id] = BASE_WEIGHT
        for share, members in groups.items():
            each = share / (100.0 - taken) * BASE_WEIGHT * len(rest) / len(members)
            for b in members:
                raw[b.task_id] = each
    else:  # the shares take everything: split by share, the rest gets nothing
        for share, members in groups.items():
            for b in members:
                raw[b.task_id] = share * BASE_WEIGHT / len(members)
        for b in rest:
            raw[b.task_id] = 0.0
    top = max(raw.values())
    scale = MAX_WEIGHT / top if top > MAX_WEIGHT else 1.0
    weights = {t: (max(1, round(w * scale)) if w > 0 else 0) for t, w in raw.items()}
    return [replace(b, weight=weights[b.task_id]) if b.task_id in weights else b for b in backends]


def _slot_for(name: str, b: Backend) -> Slot:
    return Slot(
        name, b.task_id, b.host, b.port, "drain" if b.state == "drain" else "ready", b.weight
    )


def fresh_state(
    namespaces: Sequence[Namespace],
    binds: Sequence[str],
    backends: Sequence[Backend],
    min_slots: int = MIN_SLOTS,
    previous: ProxyState | None = None,
) -> ProxyState:
    """A full layout (for a reload): every backend in a slot, keeping slots it already held."""
    listeners = _listeners(namespaces)
    grouped = _by_namespace(backends)
    slots: dict[str, tuple[Slot, ...]] = {}
    for ns in listeners:
        members = grouped.get(ns.full_name, [])
        count = slot_count(len(members), min_slots)
        old = previous.slots.get(ns.full_name, ()) if previous else ()
        if len(old) >= count and len(old) <= 2 * count:
            count = len(old)  # keep the slot count when it still fits: fewer surprises
        names = [f"s{i}" for i in range(count)]
        held = {s.task_id: s.name for s in old if s.task_id is not None}
        layout: dict[str, Slot] = {}
        pending: list[Backend] = []
        for b in members:
            if held.get(b.task_id) in names and held[b.task_id] not in layout:
                layout[held[b.task_id]] = _slot_for(held[b.task_id], b)
            else:
                pending.append(b)
        free = [n for n in names if n not in layout]
        for b, name in zip(pending, free, strict=False):
            layout[name] = _slot_for(name, b)
        slots[ns.full_name] = tuple(layout.get(n, Slot(n)) for n in names)
    return ProxyState(listeners, tuple(binds), slots)


def _cmd(ns: str, slot: str, what: str) -> str:
    return f"set server {ns}/{slot} {what}"


def plan_proxy(
    current: ProxyState | None,
    namespaces: Sequence[Namespace],
    binds: Sequence[str],
    backends: Sequence[Backend],
    min_slots: int = MIN_SLOTS,
) -> ProxyPlan:
    """Move ``current`` to route exactly ``backends``: runtime commands if possible, else reload."""
    listeners = _listeners(namespaces)
    grouped = _by_namespace(b for b in backends if b.port > 0)
    if current is None or current.listeners != listeners or current.binds != tuple(binds):
        state = fresh_state(
            namespaces, binds, [b for v in grouped.values() for b in v], min_slots, current
        )
        return ProxyPlan(state, True, drain_commands(state))
    commands: list[str] = []
    slots: dict[str, tuple[Slot, ...]] = {}
    for ns in listeners:
        name = ns.full_name
        members = {b.task_id: b for b in grouped.get(name, [])}
        new_slots = list(current.slots.get(name, ()))
        for i, slot in enumerate(new_slots):
            if slot.task_id is None:
                if slot.state != "maint":  # a stale route found on a running proxy
                    commands.append(_cmd(name, slot.name, "state maint"))
                    new_slots[i] = replace(slot, state="maint")
                continue
            b = members.pop(slot.task_id, None)
            if b is None:
                if slot.state != "maint":
                    commands.append(_cmd(name, slot.name, "state maint"))
                new_slots[i] = Slot(slot.name, None, slot.host, slot.port, "maint", slot.weight)
                continue
            want = _slot_for(slot.name, b)
            if (want.host, want.port) != (slot.host, slot.port):
                commands.append(_cmd(name, slot.name, f"addr {want.host} port {want.port}"))
            if want.weight != slot.weight:
                commands.append(_cmd(name, slot.name, f"weight {want.weight}"))
            if want.state != slot.state:
                commands.append(_cmd(name, slot.name, f"state {want.state}"))
            new_slots[i] = want
        free = [i for i, s in enumerate(new_slots) if s.task_id is None]
        if len(members) > len(free):
            state = fresh_state(
                namespaces, binds, [b for v in grouped.values() for b in v], min_slots, current
            )
            return ProxyPlan(state, True, drain_commands(state))
        for b, i in zip(sorted(members.values()), free, strict=False):
            slot = new_slots[i]
            want = _slot_for(slot.name, b)
            if (want.host, want.port) != (slot.host, slot.port):
                commands.append(_cmd(name, slot.name, f"addr {want.host} port {want.port}"))
            if want.weight != slot.weight:
                commands.append(_cmd(name, slot.name, f"weight {want.weight}"))
            commands.append(_cmd(name, slot.name, f"state {want.state}"))
            new_slots[i] = want
        slots[name] = tuple(new_slots)
    return ProxyPlan(replace(current, slots=slots), False, tuple(commands))


def drain_commands(state: ProxyState) -> tuple[str, ...]:
    """After a reload: every held slot's admin state (drain cannot be written in the config, and
    the loaded server-state file may still say drain for a task that is up again)."""
    return tuple(
        _cmd(ns, s.name, f"state {s.state}")
        for ns, slots in sorted(state.slots.items())
        for s in slots
        if s.task_id is not None
    )


def _quote(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def check_problems(namespaces: Sequence[Namespace]) -> list[str]:
    """Names or values that cannot go into a config line safely (rendering refuses them)."""
    problems = []
    for ns in namespaces:
        if not _NAME.match(ns.full_name):
            problems.append(f"namespace {ns.full_name!r}: name not usable in haproxy.cfg")
        for key in ns.extra_healthcheck_headers:
            if not _HEADER.match(key):
                problems.append(f"namespace {ns.full_name}: header name {key!r} is not valid")
        if any(c in ns.healthcheck_uri for c in " \t\n\"'#"):
            problems.append(f"namespace {ns.full_name}: healthcheck_uri {ns.healthcheck_uri!r}")
    return problems


def _listen_block(ns: Namespace, binds: Sequence[str], slots: Sequence[Slot]) -> list[str]:
    lines = [f"listen {ns.full_name}"]
    lines += [f"    bind {addr}:{ns.proxy_port}" for addr in binds]
    lines += [
        f"    mode {ns.mode}",
        f"    balance {ns.balance}",
        f"    retries {ns.retries}",
        "    option redispatch",
        f"    timeout connect {ns.timeout_connect_ms}ms",
        f"    timeout server {ns.timeout_server_ms}ms",
        f"    timeout client {ns.timeout_client_ms or DEFAULT_CLIENT_TIMEOUT_MS}ms",
        f"    timeout check {int(ns.healthcheck_timeout_s * 1000)}ms",
    ]
    if ns.mode == "http":
        # On a reload the old process keeps idle keep-alive connections until their next request
        # and answers it with "Connection: close", instead of closing them under a client that
        # may be sending on them right then (a lost request).
        lines.append("    option idle-close-on-response")
    if ns.healthcheck_mode == "http":
        send = f"    http-check send meth GET uri {ns.healthcheck_uri}"
        for key, value in sorted(ns.extra_healthcheck_headers.items()):
            send += f" hdr {key} {_quote(value)}"
        lines += ["    option httpchk", send]
    for s in slots:
        if s.task_id is None:
            lines.append(f"    server {s.name} {FREE_HOST}:{FREE_PORT} disabled check")
        else:
            lines.append(f"    server {s.name} {s.host}:{s.port} weight {s.weight} check")
    return lines


def listener_fingerprint(listeners: Sequence[Namespace], binds: Sequence[str]) -> str:
    """A short digest of everything that needs a reload to change (not the servers)."""
    text = repr((tuple(listeners), tuple(binds)))
    return hashlib.sha256(text.encode()).hexdigest()[:16]


def fingerprint_of(config_text: str) -> str | None:
    """The fingerprint line ``render_config`` put at the top of a config, if any."""
    for line in config_text.splitlines()[:3]:
        if line.startswith(FINGERPRINT_PREFIX):
            return line[len(FINGERPRINT_PREFIX) :].strip()
    return None


def render_config(state: ProxyState, paths: ProxyPaths) -> str:
    """The whole haproxy.cfg for ``state``; drain states are applied after loading (runtime)."""
    lines = [
        "# generated by paasport discovery; do not edit (rewritten on every change)",
        FINGERPRINT_PREFIX + listener_fingerprint(state.listeners, state.binds),
        "global",
        f"    stats socket {paths.admin_socket} mode 600 level admin expose-fd listeners",
        f"    server-state-file {paths.server_state_file}",
        "    hard-stop-after 5m",
        # one proxy per port: a second HAProxy binding the same port fails instead of silently
        # sharing its connections (SO_REUSEPORT); reloads take the listening fds over instead
        "    noreuseport",
        "",
        "defaults",
        "    mode http",
        "    load-server-state-from-file global",
        "    timeout connect 1s",
        "    timeout client 30s",
        "    timeout server 30s",
        "    default-server inter 1s fastinter 250ms downinter 500ms rise 1 fall 2",
    ]
    for ns in state.listeners:
        lines.append("")
        lines += _listen_block(ns, state.binds, state.slots.get(ns.full_name, ()))
    if not state.listeners:
        lines += ["", "# no namespace has a proxy_port yet"]
    return "\n".join(lines) + "\n"


def state_from_servers(
    listeners: Sequence[Namespace],
    binds: Sequence[str],
    servers: Mapping[str, Sequence[tuple[str, str, int, SlotState, int]]],
    backends: Sequence[Backend],
) -> ProxyState:
    """Rebuild the slot map of a running HAProxy (agent restart): a slot holds the task whose
    host:port it points at; everything else is free. ``servers``: ns -> (name, host, port, state,
    weight) from ``show servers state``."""
    by_addr = {(b.namespace, b.host, b.port): b.task_id for b in backends}
    slots: dict[str, tuple[Slot, ...]] = {}
    for ns in listeners:
        rows = []
        for name, host, port, st, weight in servers.get(ns.full_name, ()):
            task = by_addr.get((ns.full_name, host, port)) if st != "maint" else None
            rows.append(Slot(name, task, host, port, st, weight))
        slots[ns.full_name] = tuple(rows)
    return ProxyState(tuple(listeners), tuple(binds), slots)
