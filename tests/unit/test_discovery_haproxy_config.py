"""haproxy_config: golden haproxy.cfg files (tests/cases/haproxy) and the slot planner's table.

Regenerate the golden files after an intended change: PAASPORT_REGEN_GOLDEN=1 pytest this file.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from paasport.discovery.haproxy_config import (
    ProxyPaths,
    fingerprint_of,
    fresh_state,
    listener_fingerprint,
    plan_proxy,
    render_config,
    shared_weights,
    state_from_servers,
)
from paasport.discovery.haproxy_stats import (
    current_worker_of,
    filter_server_state,
    parse_servers_state,
)
from paasport.discovery.registry import Backend
from paasport.types import Namespace

CASES = Path(__file__).parent.parent / "cases" / "haproxy"
PATHS = ProxyPaths("/run/paasport/haproxy/admin.sock", "/run/paasport/haproxy/server-state")
WEB = Namespace("web", "main", 20001)


def _ns(d: dict[str, Any]) -> Namespace:
    return Namespace(**d)


def _b(d: dict[str, Any]) -> Backend:
    return Backend(**d)


def be(task: str, port: int, state: str = "up", weight: int = 1) -> Backend:
    return Backend("web.main", task, "127.0.0.1", port, "h1", state, weight)  # type: ignore[arg-type]


@pytest.mark.parametrize("case", sorted(CASES.glob("*.yaml")), ids=lambda p: p.stem)
def test_golden_config(case: Path) -> None:
    data = yaml.safe_load(case.read_text())
    namespaces = [_ns(d) for d in data["namespaces"]]
    backends = [_b(d) for d in data["backends"] or []]
    plan = plan_proxy(None, namespaces, data["binds"], backends)
    text = render_config(plan.state, PATHS)
    golden = case.with_suffix(".cfg")
    if os.environ.get("PAASPORT_REGEN_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()
    assert plan.reload


PLAN_CASES = [
    # (name, backends before, backends after, reload?, commands)
    ("nothing changes", [be("t1", 1001)], [be("t1", 1001)], False, []),
    (
        "a new backend takes a spare slot",
        [be("t1", 1001)],
        [be("t1", 1001), be("t2", 1002)],
        False,
        ["set server web.main/s1 addr 127.0.0.1 port 1002", "set server web.main/s1 state ready"],
    ),
    (
        "a gone backend goes to maintenance",
        [be("t1", 1001), be("t2", 1002)],
        [be("t2", 1002)],
        False,
        ["set server web.main/s0 state maint"],
    ),
    (
        "drain and weight through the runtime API",
        [be("t1", 1001)],
        [be("t1", 1001, "drain", 4)],
        False,
        ["set server web.main/s0 weight 4", "set server web.main/s0 state drain"],
    ),
    (
        "a new draining backend starts in drain",
        [],
        [be("t9", 1009, "drain")],
        False,
        ["set server web.main/s0 addr 127.0.0.1 port 1009", "set server web.main/s0 state drain"],
    ),
    (
        "outgrowing the slots reloads",
        [be(f"t{i}", 1000 + i) for i in range(4)],  # 8 slots
        [be(f"t{i}", 1000 + i) for i in range(9)],
        True,
        [f"set server web.main/s{i} state ready" for i in range(9)],
    ),
]


@pytest.mark.parametrize(
    "name,before,after,reload,commands", PLAN_CASES, ids=[c[0] for c in PLAN_CASES]
)
def test_plan_proxy(
    name: str, before: list[Backend], after: list[Backend], reload: bool, commands: list[str]
) -> None:
    start = plan_proxy(None, [WEB], ["127.0.0.1"], before).state
    plan = plan_proxy(start, [WEB], ["127.0.0.1"], after)
    assert plan.reload is reload
    assert list(plan.commands) == commands
    routed = {
        (s.task_id, s.port, s.state) for s in plan.state.slots["web.main"] if s.task_id is not None
    }
    want = {(b.task_id, b.port, "drain" if b.state == "drain" else "ready") for b in after}
    assert routed == want


def test_slot_reuse_after_reload_keeps_existing_slots() -> None:
    start = plan_proxy(None, [WEB], ["127.0.0.1"], [be("t1", 1001), be("t2", 1002)]).state
    gone = plan_proxy(start, [WEB], ["127.0.0.1"], [be("t2", 1002)]).state
    moved = plan_proxy(gone, [Namespace("web", "main", 20002)], ["127.0.0.1"], [be("t2", 1002)])
    assert moved.reload
    assert moved.state.slot_of("web.main", "t2") is not None
    assert moved.state.slot_of("web.main", "t2").name == "s1"  # type: ignore[union-attr]


@pytest.mark.parametrize(
    "change",
    [
        [Namespace("web", "main", 20002)],  # port moved
        [WEB, Namespace("api", "main", 20003)],  # listener added
        [Namespace("web", "main", 20001, timeout_server_ms=5000)],  # option changed
        [],  # listener removed
    ],
)
def test_listener_changes_reload(change: list[Namespace]) -> None:
    start = plan_proxy(None, [WEB], ["127.0.0.1"], [be("t1", 1001)]).state
    assert plan_proxy(start, change, ["127.0.0.1"], [be("t1", 1001)]).reload
    assert listener_fingerprint(start.listeners, start.binds) != listener_fingerprint(
        tuple(n for n in change if n.proxy_port), ("127.0.0.1",)
    )


def test_fingerprint_is_written_into_the_config() -> None:
    state = fresh_state([WEB], ["127.0.0.1"], [be("t1", 1001)])
    assert fingerprint_of(render_config(state, PATHS)) == listener_fingerprint(
        (WEB,), ("127.0.0.1",)
    )


_HEADER = (
    "# be_id be_name srv_id srv_name srv_addr srv_op_state srv_admin_state srv_uweight"
    " srv_iweight srv_time_since_last_change srv_check_status srv_check_result"
    " srv_check_health srv_check_state srv_agent_state bk_f_forced_id srv_f_forced_id srv_fqdn"
    " srv_port srvrecord srv_use_ssl srv_check_port srv_check_addr srv_agent_addr srv_agent_port"
)
SERVERS_STATE = f"""1
{_HEADER}
2 web.main 1 s0 127.0.0.1 2 12 1 1 0 15 3 2 6 0 0 0 - 1001 - 0 0 - - 0
2 web.main 2 s1 127.0.0.1 0 5 1 1 1 1 0 0 14 0 0 0 - 1 - 0 0 - - 0
2 web.main 3 s2 127.0.0.1 2 4 2 1 0 15 3 2 6 0 0 0 - 1003 - 0 0 - - 0
"""


def test_adopting_a_running_proxy_rebuilds_slots() -> None:
    rows = parse_servers_state(SERVERS_STATE)
    assert [(r.name, r.admin) for r in rows] == [("s0", "drain"), ("s1", "maint"), ("s2", "ready")]
    servers = {"web.main": tuple((r.name, r.host, r.port, r.admin, r.weight) for r in rows)}
    state = state_from_servers((WEB,), ("127.0.0.1",), servers, [be("t3", 1003), be("t1", 1001)])
    assert state.slot_of("web.main", "t1").name == "s0"  # type: ignore[union-attr]
    assert state.slot_of("web.main", "t3").name == "s2"  # type: ignore[union-attr]
    plan = plan_proxy(state, [WEB], ["127.0.0.1"], [be("t3", 1003), be("t1", 1001)])
    assert plan.commands == (
        "set server web.main/s0 state ready",
        "set server web.main/s2 weight 1",
    )


def test_saved_server_state_keeps_only_unchanged_slots() -> None:
    state = fresh_state([WEB], ["127.0.0.1"], [be("t1", 1001), be("t2", 2002)])
    kept = filter_server_state(SERVERS_STATE, state)
    assert [r.name for r in parse_servers_state(kept)] == ["s0"]  # s1 moved from :1 to :2002


SHOW_PROC_AFTER_RELOAD = """\
#<PID>          <type>          <reloads>       <uptime>        <version>
3772            master          1 [failed: 0]   0d00h00m00s     2.6.12-1+deb12u4
# workers
3784            worker          0               0d00h00m00s     2.6.12-1+deb12u4
# old workers
3773            worker          1               0d00h00m00s     2.6.12-1+deb12u4
# programs
"""


@pytest.mark.parametrize(
    ("answer", "current"),
    [
        (SHOW_PROC_AFTER_RELOAD, 3784),  # never the old worker still finishing its connections
        (SHOW_PROC_AFTER_RELOAD.replace("3784            worker", "# nothing"), None),
        ("", None),
    ],
)
def test_the_current_worker_is_the_masters_word(answer: str, current: int | None) -> None:
    assert current_worker_of(answer) == current


def _w(task: str, share: float = 0.0, state: str = "up") -> Backend:
    return Backend("web.main", task, "127.0.0.1", 1000, "a1", state, share=share)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    ("backends", "weights"),
    [
        pytest.param([_w("m1"), _w("m2")], {"m1": 1, "m2": 1}, id="no share: as registered"),
        pytest.param([_w("m1"), _w("m2"), _w("m3"), _w("c1", 10)],
                     {"m1": 100, "m2": 100, "m3": 100, "c1": 33}, id="one canary task at 10%"),
        pytest.param([_w("m1"), _w("c1", 10), _w("c2", 10)],
                     {"m1": 100, "c1": 6, "c2": 6}, id="10% over two canary tasks"),
        pytest.param([_w("m1"), _w("c1", 50)], {"m1": 100, "c1": 100}, id="half and half"),
        pytest.param([_w("m1"), _w("c1", 90)], {"m1": 28, "c1": 256},
                     id="scaled down to HAProxy's 256"),
        pytest.param([_w("c1", 10)], {"c1": 256}, id="only canaries: they take it all"),
        pytest.param([_w("m1"), _w("c1", 100)], {"m1": 0, "c1": 256}, id="100%: the rest none"),
        pytest.param([_w("m1"), _w("m2", state="drain"), _w("c1", 20)],
                     {"m1": 100, "m2": 1, "c1": 25}, id="a draining task is left out"),
    ],
)  # fmt: skip
def test_shared_weights(backends: list[Backend], weights: dict[str, int]) -> None:
    assert {b.task_id: b.weight for b in shared_weights(backends)} == weights
