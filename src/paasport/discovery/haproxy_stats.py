"""Parsers for HAProxy runtime API answers, pure: ``show stat`` CSV, ``show servers state`` and
the master's ``show proc``.

``discovery.haproxy`` feeds them socket output; ``discovery.mesh`` and the drainer read the
resulting ServerStat rows (status, check, current sessions per server).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

from paasport.discovery.haproxy_config import ProxyState, SlotState

# srv_admin_state bits (HAProxy's SRV_ADMF_*): FMAINT|IMAINT|RMAINT, FDRAIN|IDRAIN. CMAINT (0x04)
# stays set on a server declared ``disabled`` even after it left maintenance: not a maint bit.
_ADMIN_MAINT = 0x01 | 0x02 | 0x20
_ADMIN_DRAIN = 0x08 | 0x10


@dataclass(frozen=True)
class ServerStat:
    """One server row of ``show stat``."""

    proxy: str
    server: str
    status: str  # UP, UP 1/2, DOWN, DRAIN, MAINT, NOLB, no check
    scur: int
    stot: int
    weight: int
    check_status: str
    check_code: str
    check_duration_ms: int | None
    last_change_s: int | None
    addr: str  # "ip:port"
    # answers and failures through this server since its slot was made (HTTP mode: req_tot
    # and hrsp_5xx; econ/eresp: connection and response errors, any mode)
    req_tot: int = 0
    hrsp_5xx: int = 0
    econ: int = 0
    eresp: int = 0
    rtime_ms: int = 0  # average response time over its last 1,024 requests (HTTP)

    @property
    def errors(self) -> int:
        """5xx answers and failed connections or responses: what a client saw fail."""
        return self.hrsp_5xx + self.econ + self.eresp

    @property
    def requests(self) -> int:
        """Requests sent to it (HTTP), else sessions (TCP)."""
        return self.req_tot or self.stot

    @property
    def host_port(self) -> tuple[str, int] | None:
        host, _, port = self.addr.rpartition(":")
        return (host, int(port)) if host and port.isdigit() else None

    @property
    def state(self) -> str:
        """Short state for people: up, down, drain or maint."""
        s = self.status.upper()
        if s.startswith("MAINT"):
            return "maint"
        if s.startswith("DRAIN") or s.startswith("NOLB"):
            return "drain"
        if s.startswith("DOWN"):
            return "down"
        return "up"


def _int(value: str | None) -> int | None:
    return int(value) if value not in (None, "") and str(value).lstrip("-").isdigit() else None


def parse_show_stat(text: str) -> tuple[ServerStat, ...]:
    """Server rows (no FRONTEND/BACKEND rows) of ``show stat`` CSV output."""
    lines = text.strip().splitlines()
    if not lines or not lines[0].startswith("# "):
        return ()
    reader = csv.DictReader(io.StringIO("\n".join([lines[0][2:], *lines[1:]])))
    rows = []
    for r in reader:
        if r.get("svname") in ("FRONTEND", "BACKEND", None):
            continue
        rows.append(
            ServerStat(
                proxy=r["pxname"],
                server=r["svname"],
                status=r.get("status") or "",
                scur=_int(r.get("scur")) or 0,
                stot=_int(r.get("stot")) or 0,
                weight=_int(r.get("weight")) or 0,
                check_status=r.get("check_status") or "",
                check_code=r.get("check_code") or "",
                check_duration_ms=_int(r.get("check_duration")),
                last_change_s=_int(r.get("lastchg")),
                addr=r.get("addr") or "",
                req_tot=_int(r.get("req_tot")) or 0,
                hrsp_5xx=_int(r.get("hrsp_5xx")) or 0,
                econ=_int(r.get("econ")) or 0,
                eresp=_int(r.get("eresp")) or 0,
                rtime_ms=_int(r.get("rtime")) or 0,
            )
        )
    return tuple(rows)


@dataclass(frozen=True)
class ServerStateRow:
    backend: str
    name: str
    host: str
    port: int
    admin: SlotState
    weight: int
    line: str


def parse_servers_state(text: str) -> tuple[ServerStateRow, ...]:
    """Rows of ``show servers state`` (format version 1)."""
    lines = text.strip().splitlines()
    if len(lines) < 2 or not lines[1].startswith("# "):
        return ()
    header = lines[1][2:].split()
    rows = []
    for line in lines[2:]:
        values = line.split()
        if len(values) < len(header):
            continue
        r = dict(zip(header, values, strict=False))
        admin_bits = int(r["srv_admin_state"])
        admin: SlotState = (
            "maint"
            if admin_bits & _ADMIN_MAINT
            else "drain"
            if admin_bits & _ADMIN_DRAIN
            else "ready"
        )
        rows.append(
            ServerStateRow(
                r["be_name"],
                r["srv_name"],
                r["srv_addr"],
                int(r["srv_port"]),
                admin,
                int(r["srv_uweight"]),
                line,
            )
        )
    return tuple(rows)


def servers_by_backend(
    rows: Sequence[ServerStateRow],
) -> Mapping[str, tuple[tuple[str, str, int, SlotState, int], ...]]:
    grouped: dict[str, list[tuple[str, str, int, SlotState, int]]] = {}
    for r in rows:
        grouped.setdefault(r.backend, []).append((r.name, r.host, r.port, r.admin, r.weight))
    return {k: tuple(v) for k, v in grouped.items()}


def filter_server_state(text: str, state: ProxyState) -> str:
    """The saved server state, keeping only servers the new config points at the same address.

    A reused slot must not inherit the old task's health or maintenance state on reload."""
    lines = text.strip().splitlines()
    if len(lines) < 2:
        return "1\n"
    keep = [lines[0], lines[1]]
    wanted = {
        (ns, s.name, s.host, s.port)
        for ns, slots in state.slots.items()
        for s in slots
        if s.task_id is not None
    }
    for row in parse_servers_state(text):
        if (row.backend, row.name, row.host, row.port) in wanted:
            keep.append(row.line)
    return "\n".join(keep) + "\n"


def current_worker_of(show_proc: str) -> int | None:
    """The current worker's pid in the master's ``show proc`` answer (the first row under
    ``# workers``; old workers have their own section), or None when there is none."""
    section = ""
    for line in show_proc.splitlines():
        if line.startswith("#"):
            section = line.strip("# ").lower()
            continue
        fields = line.split()
        if section == "workers" and fields and fields[0].isdigit():
            return int(fields[0])
    return None
