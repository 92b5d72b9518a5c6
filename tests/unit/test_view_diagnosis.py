"""Case table of ``diagnose``: instance facts -> state, ok, and the one actionable line."""

from __future__ import annotations

from dataclasses import replace

import pytest

from paasport.bounce.plan import BounceStatus
from paasport.view.diagnosis import (
    DeadTask,
    FailingCheck,
    InstanceFacts,
    LostHost,
    PendingTask,
    diagnose,
)

OK = InstanceFacts(deployed=True, desired_state="start", expected=3, running=3, healthy=3)
MESH = replace(OK, in_discovery=True, proxy_socket="/state/haproxy/admin.sock")
REFUSED = "[Errno 111] Connection refused"
PROXY_DOWN = "this host's HAProxy does not answer on /state/haproxy/admin.sock: [Errno 111]"
ZK_DOWN = "zookeeper 127.0.0.1:2181/paasport: connect: KazooTimeoutError"
BOUNCE = BounceStatus(True, "crossover", 1, 3, 2, "waiting for 2 new tasks to pass their check")

CASES: list[tuple[str, InstanceFacts, bool, str, str]] = [
    ("running", OK, True, "Running", ""),
    ("never marked", replace(OK, deployed=False, running=0, healthy=0), True, "Not deployed", ""),
    (
        "stopped",
        replace(OK, desired_state="stop", expected=0, running=0, healthy=0),
        True,
        "Stopped",
        "",
    ),
    ("stopping", replace(OK, desired_state="stop", expected=0, healthy=0), True, "Stopping", ""),
    (
        "image missing",
        replace(OK, running=0, healthy=0, image="services-web:paasta-abc", image_exists=False),
        False,
        "Waiting",
        "image services-web:paasta-abc does not exist on this host",
    ),
    (
        "oom",
        replace(OK, healthy=2, running=2, dead=(DeadTask("web-1", 137, True),)),
        False,
        "Crashing",
        "task web-1 was OOM-killed",
    ),
    (
        "crash loop",
        replace(OK, healthy=2, running=2, dead=(DeadTask("web-2", 3, False, "panic: no db"),)),
        False,
        "Crashing",
        "crash loop: task web-2 exited with code 3: panic: no db",
    ),
    (
        "crash loop between two crashes (a kept corpse beside a running replacement)",
        replace(OK, dead=(DeadTask("web-2", 3, False, "panic: no db"),)),
        False,
        "Crashing",
        "crash loop: task web-2 exited with code 3: panic: no db",
    ),
    (
        "crash events",
        replace(OK, healthy=2, crashes_recently=4),
        False,
        "Crashing",
        "crash loop: 4 crashes recently",
    ),
    (
        "no cpu",
        replace(OK, running=1, healthy=1, cpus_needed=2.0, cpus_free=0.5),
        False,
        "Waiting",
        "not enough CPU on this host: 2 more needed, 0.5 free",
    ),
    (
        "no memory",
        replace(OK, running=1, healthy=1, mem_needed=8192, mem_free=1024, cpus_free=4),
        False,
        "Waiting",
        "not enough memory on this host: 8192 MB more needed",
    ),
    (
        "health check",
        replace(
            OK, healthy=2, failing=(FailingCheck("web-3", "HTTP 500 from 127.0.0.1:32768/status"),)
        ),
        False,
        "Unhealthy",
        "health check failing on web-3: HTTP 500 from 127.0.0.1:32768/status",
    ),
    (
        "bouncing",
        replace(OK, healthy=1, bounce=BOUNCE),
        False,
        "Bouncing",
        "bounce waiting on: waiting for 2 new tasks",
    ),
    ("bouncing but healthy", replace(OK, bounce=BOUNCE), True, "Bouncing", "bounce waiting on"),
    ("starting", replace(OK, running=1, healthy=1), False, "Starting", "1 of 3 tasks running"),
    ("warming up", replace(OK, healthy=1), False, "Starting", "1 of 3 tasks healthy"),
    (
        "deployd error",
        replace(OK, running=0, healthy=0, last_error="the engine refused"),
        False,
        "Waiting",
        "deployd: the engine refused",
    ),
    # this host's proxy and registry (issue 9: a dead HAProxy read "Running 3/3", exit 0)
    ("proxy down", replace(MESH, proxy_error=REFUSED), False, "Proxy down", PROXY_DOWN),
    (
        "proxy down beats a crash",
        replace(MESH, proxy_error=REFUSED, healthy=2, crashes_recently=4),
        False,
        "Proxy down",
        PROXY_DOWN,
    ),
    ("proxy down, not in discovery", replace(OK, proxy_error=REFUSED), True, "Running", ""),
    (
        "proxy down, stopped",
        replace(MESH, proxy_error=REFUSED, desired_state="stop", expected=0, running=0, healthy=0),
        True,
        "Stopped",
        "",
    ),
    (
        "registry down, bounce stuck",
        replace(MESH, registry_error=ZK_DOWN, healthy=1, bounce=BOUNCE),
        False,
        "Bouncing",
        f"registry unreachable: {ZK_DOWN}",
    ),
    (
        "registry down, crashes",
        replace(MESH, registry_error=ZK_DOWN, healthy=2, crashes_recently=9),
        False,
        "Crashing",
        f"registry unreachable: {ZK_DOWN}",
    ),
    (
        "registry down, healthy",
        replace(MESH, registry_error=ZK_DOWN),
        True,
        "Running",
        f"registry unreachable: {ZK_DOWN} (the proxy keeps routing",
    ),
    ("registry down, not in discovery", replace(OK, registry_error=ZK_DOWN), True, "Running", ""),
    (
        "a host lost with 2 of the tasks",
        replace(OK, running=1, healthy=1, lost=(LostHost("lab2", 2),)),
        False,
        "Host down",
        "2 tasks on lab2, which is down",
    ),
    (
        "two hosts lost",
        replace(OK, running=0, healthy=0, lost=(LostHost("lab2", 2), LostHost("lab3", 1))),
        False,
        "Host down",
        "2 tasks on lab2, which is down; 1 task on lab3, which is down",
    ),
    (
        "tasks lost with a host, gone from the engine, not replaced yet",
        replace(OK, running=1, healthy=1, lost=(LostHost("lab3", 2, replaced=True),)),
        False,
        "Host down",
        "2 tasks lost with lab3, which went down; being replaced",
    ),
    (
        "a lost host's tasks already replaced",
        replace(OK, lost=(LostHost("lab2", 2),)),
        True,
        "Running",
        "",
    ),
    (
        "a host lost while a crash loop: the host first",
        replace(
            OK,
            running=1,
            healthy=1,
            lost=(LostHost("lab2", 1),),
            dead=(DeadTask("web-2", 3, False),),
        ),
        False,
        "Host down",
        "1 task on lab2, which is down",
    ),
    (
        "pending: no room",
        replace(
            OK, running=2, healthy=2, pending=(PendingTask("web-3", "no node with 0.5 cpus free"),)
        ),
        False,
        "Waiting",
        "1 task pending: no node with 0.5 cpus free",
    ),
    (
        "pending: a constraint no node matches, the engine's word before ours",
        replace(
            OK,
            running=0,
            healthy=0,
            cpus_free=0.1,
            cpus_needed=1.5,
            pending=(
                PendingTask("web-1", "constraint pool=batch matches no node"),
                PendingTask("web-2", "constraint pool=batch matches no node"),
                PendingTask("web-3", "no node with 0.5 cpus free"),
            ),
        ),
        False,
        "Waiting",
        "3 tasks pending: constraint pool=batch matches no node (and 1 other reason(s))",
    ),
    (
        "crash loop before pending",
        replace(
            OK,
            running=1,
            healthy=1,
            dead=(DeadTask("web-2", 3, False),),
            pending=(PendingTask("web-3", "no node with 0.5 cpus free"),),
        ),
        False,
        "Crashing",
        "crash loop: task web-2 exited with code 3",
    ),
]


@pytest.mark.parametrize(("name", "facts", "ok", "state", "why"), CASES, ids=[c[0] for c in CASES])
def test_diagnose(name: str, facts: InstanceFacts, ok: bool, state: str, why: str) -> None:
    verdict = diagnose(facts)
    assert (verdict.ok, verdict.state) == (ok, state)
    if why:
        assert verdict.why.startswith(why), verdict.why
    else:
        assert verdict.why == ""
