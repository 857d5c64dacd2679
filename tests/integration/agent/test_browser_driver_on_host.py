"""The browser driver on the host: real Playwright, real Chromium, a real X display (xvfb-run).

The host-side twin of the device tests: the same driver with the host's Debian
Chromium on the test run's display (xvfb-run), so the events can be read
straight from the driver.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import psutil
import pytest

from agent.commands import parse_command
from agent.drivers.browser import BrowserDriver
from agent.drivers.targets import Screen

PAGES = Path(__file__).parents[3] / "backend" / "runtime" / "images" / "browser" / "start" / "test"

Events = list[tuple[str, dict[str, Any]]]


async def _until(condition: Callable[[], bool], timeout: float = 30.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.02)


@pytest.fixture
async def driven(tmp_path: Path) -> AsyncIterator[tuple[BrowserDriver, Events]]:
    assert os.environ.get("DISPLAY"), "run under xvfb-run: the driver needs an X display"
    events: Events = []
    driver = BrowserDriver(
        lambda kind, data: events.append((kind, data)),
        display=os.environ["DISPLAY"],
        screen=Screen(1024, 768),
        start_url=(PAGES / "target.html").as_uri(),
        user_data_dir=str(tmp_path / "profile"),
    )
    await driver.start()
    try:
        await _until(lambda: any(kind == "state" for kind, _data in events))
        yield driver, events
    finally:
        await driver.stop()


def _chromium_browsers() -> list[psutil.Process]:
    return [
        child
        for child in psutil.Process().children(recursive=True)
        if child.name() == "chromium" and not any(a.startswith("--type=") for a in child.cmdline())
    ]


async def test_launch_console_errors_and_failed_requests_become_bounded_events(
    driven: tuple[BrowserDriver, Events],
) -> None:
    driver, events = driven
    assert events[0][0] == "state" and events[0][1]["browser"] == "launched"
    await driver.run(parse_command("open_url", {"url": (PAGES / "errors.html").as_uri()}))
    await _until(lambda: any("uncaught test error" in data.get("message", "") for _kind, data in events))
    logs = [data for kind, data in events if kind == "log"]
    console = [data for data in logs if data["source"] == "console"]
    # 200 errors at once: the burst of the rate limit goes out, the rest is counted.
    assert 40 <= len(console) <= 60
    assert {data["level"] for data in console} == {"error"}
    # Chromium logs the missing image on the console too, maybe before the script runs.
    messages = [data["message"] for data in console if data["message"].startswith("test error")]
    assert messages[:3] == ["test error 1", "test error 2", "test error 3"]
    failed = [data for data in logs if data["source"] == "network"]
    assert [data["url"] for data in failed] == [(PAGES / "missing.png").as_uri()]
    assert failed[0]["message"] == "request failed: net::ERR_FILE_NOT_FOUND"

    # Log once more until the bucket has refilled: that event counts what was skipped.
    def flood_over() -> bool:
        return any(data.get("message", "").startswith("after the flood") for _kind, data in events)

    sent = 0
    async with asyncio.timeout(30):
        while not flood_over():
            sent += 1
            script = f"console.error('after the flood {sent}')"
            await driver.run(parse_command("eval_script", {"script": script}))
            await asyncio.sleep(0.1)
    console = [data for kind, data in events if kind == "log" and data["source"] == "console"]
    last = next(n for n, data in enumerate(console) if data["message"].startswith("after the flood"))
    console = console[: last + 1]
    through = int(console[-1]["message"].removeprefix("after the flood "))
    # Every console message is an event or counted in the next event's "suppressed":
    # 200 test errors, Chromium's line about the missing image, and the ones sent since.
    assert len(console) + sum(data.get("suppressed", 0) for data in console) == 201 + through
    assert console[-1]["suppressed"] > 0


async def test_a_killed_browser_is_reported_and_relaunched(driven: tuple[BrowserDriver, Events]) -> None:
    driver, events = driven
    (browser,) = _chromium_browsers()
    browser.kill()
    await _until(lambda: any(data.get("browser") == "relaunched" for _kind, data in events))
    states = [data["browser"] for kind, data in events if kind == "state"]
    assert states == ["launched", "crashed", "relaunched"]
    result = await driver.run(parse_command("copy_text", {"target": {"text": "Paired"}}))
    assert result == {"text": "Paired"}
    assert driver.launches == 2


async def test_a_command_during_the_start_page_load_waits_for_it(tmp_path: Path) -> None:
    """Before: a command that arrived after Chromium launched but before its start page had
    loaded navigated at once and failed ("interrupted by another navigation")."""
    slow_start = (
        "data:text/html,<title>slow</title>"
        "<script>const t = Date.now(); while (Date.now() - t < 2000);</script>"
    )
    driver = BrowserDriver(
        lambda _kind, _data: None,
        display=os.environ["DISPLAY"],
        screen=Screen(1024, 768),
        start_url=slow_start,
        user_data_dir=str(tmp_path / "profile"),
    )
    await driver.start()
    try:
        # Chromium runs (its context exists) and is loading the start page, which takes 2 s.
        await _until(lambda: driver._context is not None)
        target = (PAGES / "target.html").as_uri()
        assert await driver.run(parse_command("open_url", {"url": target})) == {"url": target}
    finally:
        await driver.stop()
