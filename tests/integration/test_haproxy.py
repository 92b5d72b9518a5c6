"""The real HAProxy (Debian's) driven by HAProxyProcess: runtime changes, hitless reloads,
rejected renders, adoption after an agent restart. Backends are tiny HTTP servers."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import pytest

from paasport.discovery.haproxy import (
    ConfigRejected,
    HAProxyProcess,
    ProxyConflict,
    ProxyUnavailable,
    read_stats,
    runtime_command,
)
from paasport.discovery.haproxy_config import ProxyPaths, plan_proxy, render_config
from paasport.discovery.registry import Backend
from paasport.types import Namespace

from discovery_support import Load, backends, free_port, get, wait_for

CASES = Path(__file__).parent.parent / "cases" / "haproxy"


@pytest.fixture
def proxy(tmp_dir: Path) -> Iterator[HAProxyProcess]:
    p = HAProxyProcess(tmp_dir / "haproxy")
    yield p
    p.stop()


def ns(port: int, **kw: object) -> Namespace:
    return Namespace("web", "main", port, healthcheck_uri="/status", **kw)  # type: ignore[arg-type]


def be(task: str, port: int, state: str = "up") -> Backend:
    return Backend("web.main", task, "127.0.0.1", port, "h1", state)  # type: ignore[arg-type]


def names_seen(port: int, n: int = 12) -> set[str]:
    return {get(port)[1] for _ in range(n)}


def test_runtime_api_changes_need_no_reload(proxy: HAProxyProcess) -> None:
    port = free_port()
    with backends("a", "b") as (a, b):
        started = proxy.apply([ns(port)], [be("a", a.port)])
        assert started.started
        worker = proxy.worker_pid()
        assert names_seen(port) == {"a"}
        assert proxy.apply([ns(port)], [be("a", a.port), be("b", b.port)]).commands == 2
        assert names_seen(port) == {"a", "b"}
        proxy.apply([ns(port)], [be("a", a.port, "drain"), be("b", b.port)])
        assert names_seen(port) == {"b"}
        proxy.apply([ns(port)], [be("b", b.port)])
        assert names_seen(port) == {"b"}
        stats = {s.addr: s.state for s in proxy.stats()}
        assert stats[f"127.0.0.1:{a.port}"] == "maint"
        assert proxy.worker_pid() == worker and proxy.reloads == 0


def test_listener_changes_reload_without_failed_requests(proxy: HAProxyProcess) -> None:
    port, other = free_port(), free_port()
    api = Namespace("api", "main", other, healthcheck_uri="/status")
    with backends("a", "b") as (a, b):
        proxy.apply([ns(port)], [be("a", a.port), be("b", b.port)])
        with Load(port) as load:
            for i in range(6):
                listeners = [ns(port), api] if i % 2 == 0 else [ns(port)]
                assert proxy.apply(listeners, [be("a", a.port), be("b", b.port)]).reloaded
                wait_for(lambda: False, timeout=0.2)
        assert proxy.reloads == 6
        assert load.failures == []
        assert load.ok > 50 and set(load.seen) == {"a", "b"}


def test_outgrowing_the_spare_slots_reloads(proxy: HAProxyProcess) -> None:
    port = free_port()
    names = [f"t{i}" for i in range(10)]
    with backends(*names) as servers:
        proxy.apply([ns(port)], [be(s.name, s.port) for s in servers[:4]])
        result = proxy.apply([ns(port)], [be(s.name, s.port) for s in servers])
        assert result.reloaded
        assert names_seen(port, 40) == set(names)


def test_bad_render_is_rejected_and_the_old_config_stays(proxy: HAProxyProcess) -> None:
    port = free_port()
    with backends("a") as (a,):
        proxy.apply([ns(port)], [be("a", a.port)])
        before = proxy.config_file.read_text()
        bad = ns(free_port(), balance="no-such-algorithm")
        with pytest.raises(ConfigRejected, match="haproxy rejected"):
            proxy.apply([bad], [be("a", a.port)])
        assert proxy.config_file.read_text() == before
        assert get(port) == (200, "a")
        assert proxy.apply([ns(port)], [be("a", a.port)]).commands == 0


def test_restarted_agent_adopts_the_running_proxy(tmp_dir: Path) -> None:
    port = free_port()
    first = HAProxyProcess(tmp_dir / "haproxy")
    try:
        with backends("a", "b") as (a, b):
            first.apply([ns(port)], [be("a", a.port), be("b", b.port, "drain")])
            worker = first.worker_pid()
            second = HAProxyProcess(tmp_dir / "haproxy")  # a new agent process, same files
            result = second.apply([ns(port)], [be("a", a.port), be("b", b.port, "drain")])
            assert (result.reloaded, result.started, result.commands) == (False, False, 0)
            assert second.worker_pid() == worker
            assert names_seen(port) == {"a"}
            second.apply([ns(port)], [be("b", b.port)])
            assert names_seen(port) == {"b"}
    finally:
        first.stop()


def test_health_checks_take_a_dead_server_out(proxy: HAProxyProcess) -> None:
    port = free_port()
    with backends("a", "b") as (a, b):
        proxy.apply([ns(port)], [be("a", a.port), be("b", b.port)])
        b.healthy = False
        assert wait_for(
            lambda: (
                {s.addr: s.state for s in read_stats(proxy.admin_socket)}[f"127.0.0.1:{b.port}"]
                == "down"
            ),
            timeout=5,
        )
        assert names_seen(port) == {"a"}


def test_a_second_proxy_on_the_same_port_is_refused(proxy: HAProxyProcess, tmp_dir: Path) -> None:
    """Another agent (another state dir) routing the same port is refused with a line naming
    the first; the first keeps serving every request (no SO_REUSEPORT split)."""
    port = free_port()
    with backends("a", "b") as (a, b):
        proxy.apply([ns(port)], [be("a", a.port)])
        other = HAProxyProcess(tmp_dir / "other-state" / "haproxy")
        try:
            with Load(port) as load:
                with pytest.raises(ProxyConflict, match=f"pid {os.getpid()}.*{proxy.workdir}"):
                    other.apply([ns(port)], [be("b", b.port)])
                proxy.locks.release()  # the first agent is gone; its HAProxy still serves
                with pytest.raises(ProxyConflict, match=f"HAProxy pid {proxy.master_pid()}"):
                    other.apply([ns(port)], [be("b", b.port)])
                wait_for(lambda: load.ok > 100)
            assert other.master_pid() is None
            assert not other.config_file.exists()
            assert load.failures == [] and set(load.seen) == {"a"}
        finally:
            other.stop()


def test_noreuseport_makes_a_second_haproxy_fail_to_bind(
    proxy: HAProxyProcess, tmp_dir: Path
) -> None:
    """Even past the lock (another lock folder), HAProxy itself refuses to share the port."""
    port = free_port()
    with backends("a", "b") as (a, b):
        proxy.apply([ns(port)], [be("a", a.port)])
        other = HAProxyProcess(tmp_dir / "other" / "haproxy", lock_dir=tmp_dir / "locks")
        try:
            with Load(port) as load:
                with pytest.raises(ProxyUnavailable, match="did not start"):
                    other.apply([ns(port)], [be("b", b.port)])
                wait_for(lambda: load.ok > 100)
            assert load.failures == [] and set(load.seen) == {"a"}
        finally:
            other.stop()


@pytest.mark.parametrize("case", sorted(CASES.glob("*.yaml")), ids=lambda p: p.stem)
def test_golden_configs_pass_haproxy_check(case: Path, tmp_dir: Path) -> None:
    import yaml

    data = yaml.safe_load(case.read_text())
    state = plan_proxy(
        None,
        [Namespace(**d) for d in data["namespaces"]],
        data["binds"],
        [Backend(**d) for d in data["backends"] or []],
    ).state
    cfg = tmp_dir / "haproxy.cfg"
    cfg.write_text(render_config(state, ProxyPaths(str(tmp_dir / "a.sock"), str(tmp_dir / "s"))))
    HAProxyProcess(tmp_dir).check(cfg)


def test_a_socket_that_trickles_its_answer_hits_one_deadline(tmp_dir: Path) -> None:
    """A wedged HAProxy that answers a byte at a time cannot hold a pass past the deadline."""
    import socket
    import threading
    import time

    path = tmp_dir / "slow.sock"
    server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    server.bind(str(path))
    server.listen(1)
    done = threading.Event()

    def trickle() -> None:
        conn, _ = server.accept()
        with conn:
            for _ in range(25):  # 5 s at most, then the answer ends
                if done.is_set():
                    return
                try:
                    conn.sendall(b".")
                except OSError:
                    return
                done.wait(0.2)

    thread = threading.Thread(target=trickle, daemon=True)
    thread.start()
    started = time.monotonic()
    try:
        with pytest.raises(ProxyUnavailable, match=r"timed out|within 1s"):
            runtime_command(path, "show info", timeout=1.0)
        assert time.monotonic() - started < 1.5
    finally:
        done.set()
        server.close()
        thread.join(timeout=5)
