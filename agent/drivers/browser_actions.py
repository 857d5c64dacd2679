"""What each command does on a browser page (Playwright's async API).

One coroutine per command, ``action(page, command, where)``, each waiting on its
own up to the command's ``timeout`` and failing with
:class:`agent.exceptions.CommandFailed` naming what it waited for. Playwright's
errors that escape (the browser closed, a navigation error) are translated by
the driver (:mod:`agent.drivers.browser`).
"""

from __future__ import annotations

import asyncio
import base64
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import Any

from playwright.async_api import BrowserContext, Page
from playwright.async_api import Error as PlaywrightError
from playwright.async_api import TimeoutError as PlaywrightTimeout

from agent import commands as c
from agent.drivers.base import Screen
from agent.drivers.keys import BACK, playwright_key
from agent.drivers.qr import decode_codes
from agent.drivers.targets import locate, screen_point, seconds, wait_gone, wait_visible
from agent.drivers.urls import refused_url
from agent.exceptions import CommandFailed

__all__ = ["ACTIONS", "Where"]

_POLL = 0.1
"""Seconds between two looks at the screen for commands that poll it (QR codes, animations)."""
_TYPED_CHARS = 500
"""Longer texts are inserted as one input event instead of typed key by key."""
_SCROLL_FRACTION = 0.8
"""One scroll moves this much of the screen, so a line at the edge stays in view."""

# Resolves once the window's scroll position held still for two frames (at most 1 s):
# wheel scrolling may be smooth, and the next command must see where it ended.
_SCROLL_SETTLED = """
() => new Promise((resolve) => {
  let last = null, still = 0;
  const started = performance.now();
  const tick = () => {
    const now = window.scrollX + "," + window.scrollY;
    still = now === last ? still + 1 : 0;
    last = now;
    if (still >= 2 || performance.now() - started > 1000) resolve(now);
    else requestAnimationFrame(tick);
  };
  requestAnimationFrame(tick);
})
"""

_INTO_VIEW_CENTRE = """
(element) => {
  element.scrollIntoView({ block: "nearest", inline: "nearest" });
  const box = element.getBoundingClientRect();
  return [box.x + box.width / 2, box.y + box.height / 2];
}
"""

# `output` and `env` are parameters, so the direct eval sees them as Maestro's globals.
# As in Maestro, the flow's variables are globals of the script (`'hi ' + USERNAME`),
# besides `env`; names that cannot be JavaScript parameters are only in `env`.
_EVAL = """
async ([__corralScript, output, env]) => {
  const usable = (name) => {
    if (!/^[A-Za-z_$][A-Za-z0-9_$]*$/.test(name) || ["output", "env", "__corralScript"].includes(name)) {
      return false;
    }
    try {
      new Function(name, "");  // a reserved word (`class`) cannot be a parameter
      return true;
    } catch (error) {
      return false;
    }
  };
  const names = Object.keys(env).filter(usable);
  const run = new Function("__corralScript", "output", "env", ...names, "return eval(__corralScript);");
  const value = await run(__corralScript, output, env, ...names.map((name) => env[name]));
  return { value: value === undefined ? null : value, output };
}
"""


@dataclass(frozen=True, slots=True)
class Where:
    """What an action may need besides the page."""

    context: BrowserContext
    screen: Screen
    start_url: str


Action = Callable[[Page, Any, Where], Awaitable[dict[str, Any]]]


def _ms(seconds_: float) -> float:
    return seconds_ * 1000


async def _open_url(page: Page, command: c.OpenUrl, _where: Where) -> dict[str, Any]:
    refused = refused_url(command.url)
    if refused is not None:
        raise CommandFailed(f"open_url: {command.url} is refused: {refused}")
    try:
        await page.goto(command.url, wait_until="load", timeout=_ms(command.timeout))
    except PlaywrightTimeout as exc:
        raise CommandFailed(
            f"open_url: {command.url} did not finish loading within {seconds(command.timeout)}"
        ) from exc
    except PlaywrightError as exc:
        raise CommandFailed(f"open_url: {command.url}: {(exc.message or str(exc)).splitlines()[0]}") from exc
    return {"url": page.url}


async def _clear_state(page: Page, _command: c.ClearState, where: Where) -> dict[str, Any]:
    await where.context.clear_cookies()
    await where.context.clear_permissions()
    session = await where.context.new_cdp_session(page)
    try:
        await session.send("Network.clearBrowserCache")
        origin = await page.evaluate("() => window.location.origin")
        if isinstance(origin, str) and origin.startswith("http"):
            await session.send("Storage.clearDataForOrigin", {"origin": origin, "storageTypes": "all"})
    finally:
        await session.detach()
    # file:// pages have an opaque origin the call above does not take; clear what the page sees.
    await page.evaluate("() => { try { localStorage.clear(); sessionStorage.clear(); } catch (e) {} }")
    return {}


async def _stop_app(page: Page, command: c.StopApp, where: Where) -> dict[str, Any]:
    await page.goto(where.start_url, wait_until="load", timeout=_ms(command.timeout))
    return {}


async def _tap(page: Page, command: c.Tap, where: Where) -> dict[str, Any]:
    target = command.target
    if target.point is not None:
        x, y = screen_point(target.point, where.screen)
    else:
        started = time.monotonic()
        locator = locate(page, target, "tap")
        try:
            # Waits for a visible match; one round trip brings it into view and measures it.
            x, y = await locator.evaluate(_INTO_VIEW_CENTRE, timeout=_ms(command.timeout))
        except PlaywrightTimeout as exc:
            raise CommandFailed(
                f"tap: no element with {target.describe()} became visible within {seconds(command.timeout)}"
            ) from exc
        if not command.long_press:
            remaining = max(0.1, command.timeout - (time.monotonic() - started))
            try:
                for _ in range(command.repeat):
                    # Waits until it is stable, enabled and not covered, then clicks its centre.
                    await locator.click(timeout=_ms(remaining))
            except PlaywrightTimeout as exc:
                raise CommandFailed(
                    f"tap: the element with {target.describe()} was visible but did not become clickable"
                    f" (enabled, not covered) within {seconds(command.timeout)}"
                ) from exc
            return {"x": round(x), "y": round(y)}
    for _ in range(command.repeat):
        await page.mouse.move(x, y)
        await page.mouse.down()
        if command.long_press:
            await asyncio.sleep(1.0)  # the long press itself
        await page.mouse.up()
    return {"x": round(x), "y": round(y)}


async def _input_text(page: Page, command: c.InputText, _where: Where) -> dict[str, Any]:
    if len(command.text) <= _TYPED_CHARS:
        await page.keyboard.type(command.text)
    else:
        # One keystroke per character costs a round trip each; a long text goes in at once.
        await page.keyboard.insert_text(command.text)
    return {}


async def _erase_text(page: Page, command: c.EraseText, _where: Where) -> dict[str, Any]:
    for _ in range(command.chars):
        await page.keyboard.press("Backspace")
    return {}


async def _press_key(page: Page, command: c.PressKey, where: Where) -> dict[str, Any]:
    try:
        key = playwright_key(command.key)
    except KeyError as exc:
        raise CommandFailed(f"press_key: {exc.args[0]}") from exc
    if key == BACK:
        return await _back(page, c.Back(timeout=command.timeout), where)
    await page.keyboard.press(key)
    return {}


async def _back(page: Page, command: c.Back, _where: Where) -> dict[str, Any]:
    try:
        await page.go_back(wait_until="load", timeout=_ms(command.timeout))
    except PlaywrightTimeout as exc:
        raise CommandFailed(
            f"back: the previous page did not load within {seconds(command.timeout)}"
        ) from exc
    return {}


async def _hide_keyboard(_page: Page, _command: c.HideKeyboard, _where: Where) -> dict[str, Any]:
    return {}


def _wheel_delta(direction: str, screen: Screen) -> tuple[float, float]:
    dx = screen.width * _SCROLL_FRACTION
    dy = screen.height * _SCROLL_FRACTION
    return {"down": (0.0, dy), "up": (0.0, -dy), "right": (dx, 0.0), "left": (-dx, 0.0)}[direction]


async def _scroll_once(page: Page, direction: str, screen: Screen) -> str:
    """Scroll one screen with the mouse wheel at the centre; return the settled scroll position."""
    await page.mouse.move(screen.width / 2, screen.height / 2)
    await page.mouse.wheel(*_wheel_delta(direction, screen))
    return str(await page.evaluate(_SCROLL_SETTLED))


async def _scroll(page: Page, command: c.Scroll, where: Where) -> dict[str, Any]:
    await _scroll_once(page, command.direction, where.screen)
    return {}


async def _in_view(page: Page, command: c.ScrollUntilVisible, screen: Screen) -> bool:
    locator = locate(page, command.target, "scroll_until_visible")
    if await locator.count() == 0:
        return False
    box = await locator.bounding_box(timeout=1000)
    if box is None:
        return False
    centre_x, centre_y = box["x"] + box["width"] / 2, box["y"] + box["height"] / 2
    return 0 <= centre_x <= screen.width and 0 <= centre_y <= screen.height


async def _scroll_until_visible(page: Page, command: c.ScrollUntilVisible, where: Where) -> dict[str, Any]:
    deadline = time.monotonic() + command.timeout
    while True:
        try:
            if await _in_view(page, command, where.screen):
                return {}
        except PlaywrightTimeout:
            pass  # the element went away while we measured it: look again after the scroll
        if time.monotonic() >= deadline:
            raise CommandFailed(
                f"scroll_until_visible: no element with {command.target.describe()} came into view"
                f" within {seconds(command.timeout)} of scrolling {command.direction}"
            )
        await _scroll_once(page, command.direction, where.screen)


async def _swipe(page: Page, command: c.Swipe, where: Where) -> dict[str, Any]:
    if command.direction is not None:
        # A finger swiping up moves the content up: the page scrolls down.
        opposite = {"up": "down", "down": "up", "left": "right", "right": "left"}[command.direction]
        await _scroll_once(page, opposite, where.screen)
        return {}
    assert command.start is not None
    assert command.end is not None
    start = screen_point(command.start, where.screen)
    end = screen_point(command.end, where.screen)
    steps = max(1, command.duration_ms // 16)
    await page.mouse.move(*start)
    await page.mouse.down()
    for step in range(1, steps + 1):
        fraction = step / steps
        await page.mouse.move(
            start[0] + (end[0] - start[0]) * fraction, start[1] + (end[1] - start[1]) * fraction
        )
        await asyncio.sleep(command.duration_ms / 1000 / steps)  # the gesture's pace
    await page.mouse.up()
    return {}


async def _assert(page: Page, command: c.Assert, _where: Where) -> dict[str, Any]:
    if command.visible:
        await wait_visible(page, command.target, command.timeout, "assert")
    else:
        await wait_gone(page, command.target, command.timeout, "assert")
    return {}


async def _wait_until(page: Page, command: c.WaitUntil, _where: Where) -> dict[str, Any]:
    if command.visible is not None:
        await wait_visible(page, command.visible, command.timeout, "wait_until")
    elif command.not_visible is not None:
        await wait_gone(page, command.not_visible, command.timeout, "wait_until")
    return {}


async def _screen_png(page: Page, screen: Screen, timeout: float) -> bytes:
    clip = {"x": 0, "y": 0, "width": screen.width, "height": screen.height}
    return await page.screenshot(type="png", clip=clip, timeout=_ms(timeout))  # type: ignore[arg-type]


async def _wait_for_animation(page: Page, command: c.WaitForAnimation, where: Where) -> dict[str, Any]:
    deadline = time.monotonic() + command.timeout
    previous = await _screen_png(page, where.screen, command.timeout)
    while time.monotonic() < deadline:
        await asyncio.sleep(_POLL)
        current = await _screen_png(page, where.screen, command.timeout)
        if current == previous:
            return {}
        previous = current
    return {}  # Maestro's waitForAnimationToEnd gives up quietly, and so do we


async def _copy_text(page: Page, command: c.CopyText, _where: Where) -> dict[str, Any]:
    locator = await wait_visible(page, command.target, command.timeout, "copy_text")
    text = await locator.evaluate(
        "(e) => (e instanceof HTMLInputElement || e instanceof HTMLTextAreaElement) ? e.value : e.innerText"
    )
    return {"text": str(text)}


async def _screenshot(page: Page, command: c.Screenshot, where: Where) -> dict[str, Any]:
    png = await _screen_png(page, where.screen, command.timeout)
    return {"png": base64.b64encode(png).decode(), "width": where.screen.width, "height": where.screen.height}


async def _read_qr(page: Page, command: c.ReadQr, where: Where) -> dict[str, Any]:
    deadline = time.monotonic() + command.timeout
    while True:
        png = await _screen_png(page, where.screen, command.timeout)
        codes = await asyncio.to_thread(decode_codes, png)
        if codes:
            return {"text": codes[0]["text"], "format": codes[0]["format"], "codes": codes}
        if time.monotonic() >= deadline:
            raise CommandFailed(
                f"read_qr: no QR code or barcode appeared on the screen within {seconds(command.timeout)}"
            )
        await asyncio.sleep(_POLL)


async def _eval_script(page: Page, command: c.EvalScript, _where: Where) -> dict[str, Any]:
    try:
        result = await asyncio.wait_for(
            page.evaluate(_EVAL, [command.script, command.output, command.env]), command.timeout
        )
    except TimeoutError as exc:
        raise CommandFailed(
            f"eval_script: the script did not finish within {seconds(command.timeout)}"
        ) from exc
    except PlaywrightError as exc:
        message = (exc.message or str(exc)).splitlines()[0]
        if "Target" in message and "closed" in message:
            raise
        raise CommandFailed(f"eval_script: {message}") from exc
    return {"value": result["value"], "output": result["output"]}


ACTIONS: dict[str, Action] = {
    c.OpenUrl.name: _open_url,
    c.ClearState.name: _clear_state,
    c.StopApp.name: _stop_app,
    c.Tap.name: _tap,
    c.InputText.name: _input_text,
    c.EraseText.name: _erase_text,
    c.PressKey.name: _press_key,
    c.Back.name: _back,
    c.HideKeyboard.name: _hide_keyboard,
    c.Scroll.name: _scroll,
    c.ScrollUntilVisible.name: _scroll_until_visible,
    c.Swipe.name: _swipe,
    c.Assert.name: _assert,
    c.WaitUntil.name: _wait_until,
    c.WaitForAnimation.name: _wait_for_animation,
    c.CopyText.name: _copy_text,
    c.Screenshot.name: _screenshot,
    c.ReadQr.name: _read_qr,
    c.EvalScript.name: _eval_script,
}
"""Every browser command but ``ping`` (the client answers it) by wire name."""
