"""Targets on a browser page: selectors to Playwright locators, points to pixels, and waiting.

Waiting is Playwright's (it polls on every animation frame and DOM change); what
this module adds is the error a flow author reads when the wait ends, naming the
command, the target and the time: ``tap: no element with text "Log in" became
visible within 10s``.
"""

from __future__ import annotations

import re

from playwright.async_api import Error as PlaywrightError
from playwright.async_api import Locator, Page
from playwright.async_api import TimeoutError as PlaywrightTimeout

from agent.commands import Target
from agent.drivers.base import Screen
from agent.exceptions import CommandFailed

__all__ = ["locate", "screen_point", "seconds", "wait_gone", "wait_visible"]

_POINT = re.compile(r"^\s*(\d+(?:\.\d+)?)(%?)\s*,\s*(\d+(?:\.\d+)?)(%?)\s*$")


def seconds(timeout: float) -> str:
    """``10s``, ``2.5s``: a timeout as errors show it."""
    return f"{timeout:g}s"


def screen_point(spec: str, screen: Screen) -> tuple[float, float]:
    """Pixels of ``"x,y"`` (pixels) or ``"x%,y%"`` (of the screen). Raises CommandFailed when malformed
    or outside the screen."""
    match = _POINT.match(spec)
    if match is None:
        raise CommandFailed(f'point "{spec}" is neither "x,y" nor "x%,y%"')
    x = float(match[1]) * (screen.width / 100 if match[2] else 1)
    y = float(match[3]) * (screen.height / 100 if match[4] else 1)
    if not (0 <= x <= screen.width and 0 <= y <= screen.height):
        raise CommandFailed(f'point "{spec}" is outside the {screen.width}x{screen.height} screen')
    return x, y


def _css_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"').replace("\n", "\\a ") + '"'


def locate(page: Page, target: Target, action: str) -> Locator:
    """Every *visible* element *target* names, narrowed to its ``index``.

    ``text`` must match the element's whole visible text (whitespace
    normalised), as Maestro does; Playwright picks the innermost element that
    matches. Raises CommandFailed for a point (not an element) or a bad regex.
    """
    if target.text is not None:
        try:
            re.compile(target.text)  # alone first, so the error's position is in the flow's text
            pattern = re.compile(f"^(?:{target.text})$")
        except re.error as exc:
            raise CommandFailed(
                f'{action}: text "{target.text}" is not a valid regular expression: {exc}'
            ) from exc
        base = page.get_by_text(pattern)
    elif target.id is not None:
        base = page.locator(f"[id={_css_string(target.id)}]")
    elif target.css is not None:
        base = page.locator(f"css={target.css}")
    elif target.xpath is not None:
        base = page.locator(f"xpath={target.xpath}")
    else:
        raise CommandFailed(f"{action}: a point names no element; use text, id, css or xpath")
    return base.filter(visible=True).nth(target.index)


def _selector_problem(exc: PlaywrightError) -> str | None:
    """The first line of a Playwright error about a malformed selector, else None."""
    message = exc.message or str(exc)
    if "selector" in message.lower() and ("parse" in message.lower() or "not a valid" in message.lower()):
        return message.splitlines()[0]
    return None


async def wait_visible(page: Page, target: Target, timeout: float, action: str) -> Locator:
    """Wait until *target* is visible; return its locator. Raises CommandFailed naming what it awaited."""
    return await _wait_for(page, target, timeout, action, visible=True)


async def wait_gone(page: Page, target: Target, timeout: float, action: str) -> None:
    """Wait until no element *target* names is visible. Raises CommandFailed naming it."""
    await _wait_for(page, target, timeout, action, visible=False)


async def _wait_for(page: Page, target: Target, timeout: float, action: str, *, visible: bool) -> Locator:
    locator = locate(page, target, action)
    try:
        await locator.wait_for(state="visible" if visible else "hidden", timeout=timeout * 1000)
    except PlaywrightTimeout as exc:
        what = (
            f"no element with {target.describe()} became visible within {seconds(timeout)}"
            if visible
            else f"an element with {target.describe()} was still visible after {seconds(timeout)}"
        )
        raise CommandFailed(f"{action}: {what}") from exc
    except PlaywrightError as exc:
        problem = _selector_problem(exc)
        if problem is None:
            raise
        raise CommandFailed(f"{action}: {target.describe()}: {problem}") from exc
    return locator
