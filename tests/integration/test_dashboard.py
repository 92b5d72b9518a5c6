"""The dashboard in real Chromium (Debian's, driven by Playwright) against a running platform on
the real Docker engine: the service page shows the tasks of the running containers; a token set
in the page shows the action buttons; pressing restart (and confirming) bounces the instance
for real and the page shows the new tasks live, without a reload; a config error shows on the
page; a line a task writes shows in the log tail live (from the log stream); the overview lists
the service and is readable without JavaScript.

Set PAASPORT_DASHBOARD_SCREENSHOT=docs/dashboard.png to refresh the screenshot in docs/.
"""

from __future__ import annotations

import json
import os
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from e2e_world import E2E, INSTANCES, SERVICE, e2e_world, git, healthy_in_proxy, wait_for

from discovery_support import free_port
from harness import write_to_task_log

pytestmark = pytest.mark.integration

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking",
    "--disable-component-update", "--disable-sync", "--no-first-run", "--disable-quic",
]  # fmt: skip
UI_TIMEOUT_MS = 60_000


@pytest.fixture(scope="module")
def running() -> Iterator[tuple[E2E, str, str]]:
    """Our world with `up` serving the API and dashboard on a free port, and a token of the
    service's team."""
    with tempfile.TemporaryDirectory(prefix="paasport-test-") as tmp, e2e_world(Path(tmp)) as world:
        sha = git(world.repo, "rev-parse", "HEAD")
        world.run("cook-image", "-s", SERVICE, "-c", sha)
        world.run("mark-for-deployment", "-s", SERVICE, "-l", f"{world.cluster}.main", "-c", sha)
        port = free_port()
        world.start_up("--api-listen", f"127.0.0.1:{port}")
        token = json.loads(world.run("token", "create", "--team", "e2e", "--json").stdout)["token"]
        wait_for("3 healthy tasks", lambda: healthy_in_proxy(world), 60, world.up_log)
        yield world, f"http://127.0.0.1:{port}", token


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    from playwright.sync_api import sync_playwright

    with sync_playwright() as p:
        b = p.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS, timeout=60_000)
        try:
            yield b
        finally:
            b.close()


def container_ids(cluster: str) -> set[str]:
    out = subprocess.run(
        ["docker", "ps", "-q", "--no-trunc", "--filter", f"label=paasport.cluster={cluster}"],
        capture_output=True, text=True, check=True, timeout=60,
    ).stdout  # fmt: skip
    return set(out.split())


def wait_until(probe: Any, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if probe():
            return True
        time.sleep(0.2)
    return False


def page_task_ids(page: Any) -> set[str]:
    ids = page.eval_on_selector_all("tr.task", "rows => rows.map(r => r.dataset.taskId)")
    return set(ids)


def test_the_service_page_shows_the_running_tasks_and_a_restart_live(
    running: tuple[E2E, str, str], browser: Any
) -> None:
    world, url, token = running
    page = browser.new_page(viewport={"width": 1200, "height": 900})
    page.set_default_timeout(UI_TIMEOUT_MS)
    try:
        page.goto(f"{url}/services/{SERVICE}")
        page.wait_for_selector("#live-state.ok")  # the event stream is open
        shown = page_task_ids(page)
        assert len(shown) == INSTANCES
        assert shown == container_ids(world.cluster)
        assert page.locator(f"#i-{world.cluster}-main .badge").inner_text() == "Running"
        assert page.locator(".actions").first.is_visible() is False  # no token: no buttons

        page.wait_for_selector("pre#logs[data-live]")  # the log stream is open
        [task, *_] = sorted(shown)
        for _ in range(10):  # a line written before the stream reached the task is not shown
            write_to_task_log(task, "a-line-for-the-dashboard")
            if wait_until(lambda: "a-line-for-the-dashboard" in page.inner_text("pre#logs"), 3):
                break
        assert "a-line-for-the-dashboard" in page.inner_text("pre#logs")

        page.fill("#token", token)
        page.click("#token-form button")
        restart = page.locator(f'#i-{world.cluster}-main button[data-action="restart"]')
        assert restart.is_visible() and restart.is_enabled()
        assert page.locator(f'#i-{world.cluster}-main button[data-action="start"]').is_disabled()
        shot = os.environ.get("PAASPORT_DASHBOARD_SCREENSHOT")
        if shot:
            page.screenshot(path=shot, full_page=True)

        page.evaluate("window.notReloaded = true")
        questions: list[str] = []
        page.once("dialog", lambda d: (questions.append(d.message), d.accept()))
        restart.click()
        page.wait_for_selector("#toast.ok")
        assert "restart: tagged paasta-" in page.inner_text("#toast")
        assert questions and questions[0].startswith(f"Restart {SERVICE}.main")
        page.wait_for_function(
            """([old, n]) => {
                const ids = [...document.querySelectorAll('tr.task')].map(r => r.dataset.taskId);
                return ids.length === n && ids.every(id => !old.includes(id))
                    && document.querySelector('.badge').textContent === 'Running';
            }""",
            arg=[sorted(shown), INSTANCES],
        )
        assert page.evaluate("window.notReloaded") is True  # live, not a reload
        after = page_task_ids(page)
        assert after.isdisjoint(shown) and after == container_ids(world.cluster)
        timeline = page.inner_text("ol.timeline")
        assert "restart" in timeline and "bounce" in timeline
    finally:
        page.close()


def test_a_config_error_shows_on_the_page(running: tuple[E2E, str, str], browser: Any) -> None:
    world, url, _ = running
    page = browser.new_page(viewport={"width": 390, "height": 844})  # a phone
    page.set_default_timeout(UI_TIMEOUT_MS)
    good = world.instance_file.read_text()
    try:
        page.goto(f"{url}/services/{SERVICE}")
        page.wait_for_selector("#live-state.ok")
        world.instance_file.write_text(
            good.replace(f'"instances": {INSTANCES},', '"instances": "x",')
        )
        deadline = time.monotonic() + 40
        while time.monotonic() < deadline and "Config error" not in page.inner_text("main"):
            page.wait_for_timeout(500)
            if time.monotonic() > deadline - 20:
                page.reload()  # the live update is the 30 s refresh at worst
        text = page.inner_text("main")
        assert "Config error" in text and "instances" in text, text[:2000]
        assert page.evaluate("document.documentElement.scrollWidth") <= 390 + 1  # no sideways
    finally:
        world.instance_file.write_text(good)
        page.close()


def test_the_overview_lists_the_service_without_javascript(
    running: tuple[E2E, str, str], browser: Any
) -> None:
    world, url, _ = running
    context = browser.new_context(java_script_enabled=False)
    try:
        page = context.new_page()
        page.goto(f"{url}/?q=e2e")
        row = page.locator("table.services tr", has_text=SERVICE)
        assert row.count() == 1
        assert f"main@{world.cluster}" in row.inner_text()
        assert "e2e" in row.inner_text()  # the team
        page.goto(f"{url}/?q=no-such-team")
        assert page.locator("table.services tr", has_text=SERVICE).count() == 0
        assert page.locator("#token-form").is_hidden()  # actions need the script
    finally:
        context.close()
