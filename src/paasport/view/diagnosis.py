"""Why an instance is not healthy, in one line a person can act on (pure).

``view.observe`` gathers InstanceFacts (engine, live probes, event log, node capacity, this
host's proxy and registry) and calls ``diagnose``; the first matching rule of a fixed order wins.
"""

from __future__ import annotations

from dataclasses import dataclass

from paasport.bounce.plan import BounceStatus


@dataclass(frozen=True)
class DeadTask:
    name: str
    exit_code: int | None
    oom_killed: bool = False
    last_line: str = ""


@dataclass(frozen=True)
class FailingCheck:
    task: str
    detail: str


@dataclass(frozen=True)
class LostHost:
    """A node the engine reports down, and how many of the instance's tasks were on it."""

    node: str
    tasks: int
    replaced: bool = False  # its tasks are gone already (deployd replaces them elsewhere)


@dataclass(frozen=True)
class PendingTask:
    """A task of the desired version the engine has not placed or started, in its words."""

    name: str
    message: str  # Task.status_message: "no node with 0.5 cpus free"


@dataclass(frozen=True)
class InstanceFacts:
    """What status knows about one instance; every field is a plain value."""

    deployed: bool  # marked for deployment (deployments.json names its deploy group)
    desired_state: str  # "start" | "stop"
    expected: int  # tasks the instance should run (0 when stopped)
    running: int  # live tasks of the desired version
    healthy: int  # of those, passing their health check
    image: str = ""
    image_exists: bool = True
    failing: tuple[FailingCheck, ...] = ()
    dead: tuple[DeadTask, ...] = ()
    crashes_recently: int = 0  # crash/OOM events in the last minutes
    bounce: BounceStatus | None = None
    cpus_needed: float = 0.0  # for the tasks still missing
    mem_needed: float = 0.0
    cpus_free: float | None = None  # None: unknown
    mem_free: float | None = None
    last_error: str = ""  # deployd's last error for this instance, if any
    in_discovery: bool = False  # has registrations: this host's proxy routes to it
    proxy_socket: str = ""  # this host's HAProxy admin socket
    proxy_error: str = ""  # why that HAProxy did not answer ("" when it did)
    registry_error: str = ""  # why the registry did not answer ("" when it did)
    lost: tuple[LostHost, ...] = ()  # down nodes its tasks were on (those are not in ``dead``)
    pending: tuple[PendingTask, ...] = ()  # new tasks waiting to be placed (not in ``dead``)


@dataclass(frozen=True)
class Verdict:
    ok: bool
    state: str  # Running | Bouncing | Starting | Stopped | Not deployed | Crashing | Unhealthy
    why: str  # "" when ok


def diagnose(f: InstanceFacts) -> Verdict:
    """The state of an instance and, when it is not healthy, the one reason to act on first.

    A dead proxy takes an instance in discovery down whatever its tasks do; an unreachable
    registry explains a stuck bounce or failing registrations better than their symptoms."""
    verdict = _diagnose_tasks(f)
    if not f.in_discovery or f.desired_state == "stop" or not f.deployed:
        return verdict
    if f.proxy_error:
        return Verdict(
            False,
            "Proxy down",
            f"this host's HAProxy does not answer on {f.proxy_socket}: {f.proxy_error}",
        )
    if f.registry_error:
        if verdict.ok and not verdict.why:
            why = (
                f"registry unreachable: {f.registry_error} (the proxy keeps routing to the "
                "last known backends)"
            )
        else:
            why = f"registry unreachable: {f.registry_error}"
        return Verdict(verdict.ok, verdict.state, why)
    return verdict


def _diagnose_tasks(f: InstanceFacts) -> Verdict:
    """The verdict from the instance's own tasks, capacity and events."""
    if not f.deployed:
        return Verdict(True, "Not deployed", "")
    if f.desired_state == "stop":
        if f.running:
            return Verdict(True, "Stopping", "")
        return Verdict(True, "Stopped", "")
    healthy_enough = f.healthy >= f.expected
    bouncing = f.bounce is not None and f.bounce.in_progress
    # A corpse of the desired version outlives its replacement only while the instance
    # crash-loops (the reconciler keeps the newest one): Crashing, even between two crashes.
    if healthy_enough and not bouncing and not f.dead:
        return Verdict(True, "Running", "")
    if not f.image_exists:
        return Verdict(
            False,
            "Waiting",
            f"image {f.image} does not exist on this host: run `paasport cook-image` "
            "(or push-to-registry) for this sha",
        )
    if f.lost and not healthy_enough:
        hosts = "; ".join(
            f"{_count(h.tasks, 'task')} lost with {h.node}, which went down; being replaced"
            if h.replaced
            else f"{_count(h.tasks, 'task')} on {h.node}, which is down"
            for h in f.lost
        )
        return Verdict(False, "Host down", hosts)
    oom = [d for d in f.dead if d.oom_killed]
    if oom:
        d = oom[0]
        return Verdict(
            False,
            "Crashing",
            f"task {d.name} was OOM-killed: raise `mem` or use less memory",
        )
    if f.dead or f.crashes_recently >= 2:
        if f.dead:
            d = f.dead[0]
            tail = f": {d.last_line}" if d.last_line else ""
            code = "?" if d.exit_code is None else str(d.exit_code)
            return Verdict(
                False, "Crashing", f"crash loop: task {d.name} exited with code {code}{tail}"
            )
        return Verdict(False, "Crashing", f"crash loop: {f.crashes_recently} crashes recently")
    if f.pending and f.running < f.expected:
        p = f.pending[0]
        others = {q.message for q in f.pending} - {p.message}
        more = f" (and {len(others)} other reason(s))" if others else ""
        return Verdict(
            False, "Waiting", f"{_count(len(f.pending), 'task')} pending: {p.message}{more}"
        )
    if f.running < f.expected and f.cpus_free is not None and f.cpus_free < f.cpus_needed:
        return Verdict(
            False,
            "Waiting",
            f"not enough CPU on this host: {f.cpus_needed:g} more needed, {f.cpus_free:g} free",
        )
    if f.running < f.expected and f.mem_free is not None and f.mem_free < f.mem_needed:
        return Verdict(
            False,
            "Waiting",
            f"not enough memory on this host: {f.mem_needed:g} MB more needed, "
            f"{f.mem_free:g} MB free",
        )
    if f.last_error and f.running < f.expected:
        return Verdict(False, "Waiting", f"deployd: {f.last_error}")
    if f.failing:
        c = f.failing[0]
        more = f" (and {len(f.failing) - 1} more)" if len(f.failing) > 1 else ""
        return Verdict(False, "Unhealthy", f"health check failing on {c.task}: {c.detail}{more}")
    if bouncing and f.bounce is not None:
        state = "Bouncing" if f.bounce.old_remaining else "Starting"
        return Verdict(healthy_enough, state, f"bounce waiting on: {f.bounce.waiting_on}")
    if f.running < f.expected:
        return Verdict(False, "Starting", f"{f.running} of {f.expected} tasks running")
    return Verdict(False, "Starting", f"{f.healthy} of {f.expected} tasks healthy")


def _count(n: int, noun: str) -> str:
    return f"{n} {noun}" if n == 1 else f"{n} {noun}s"
