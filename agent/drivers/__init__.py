"""Drivers: what makes a device kind do the agent's commands (:mod:`agent.commands`).

One driver per device kind (:class:`~agent.drivers.base.Driver`); the browser
driver (:mod:`agent.drivers.browser`) runs the device's Chromium through
Playwright. :func:`driver_for` picks one by kind without importing the others.
"""

from __future__ import annotations

from agent.drivers.base import Driver, EmitEvent

__all__ = ["Driver", "EmitEvent", "driver_for"]


def driver_for(kind: str, emit: EmitEvent) -> Driver:
    """The driver of device *kind*. Raises ValueError for a kind without one."""
    if kind == "browser":
        from agent.drivers.browser import BrowserDriver

        return BrowserDriver.from_environment(emit)
    raise ValueError(f"no driver for device kind {kind!r} (known: browser)")
