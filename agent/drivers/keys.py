"""Maestro's key names (``pressKey``) as Playwright keys for browser devices. Pure."""

from __future__ import annotations

__all__ = ["BACK", "KEYS", "playwright_key"]

BACK = "Back"
"""Maestro's Back key: the browser goes back in its history instead of pressing a key."""

KEYS: dict[str, str] = {
    "enter": "Enter",
    "backspace": "Backspace",
    "delete": "Delete",
    "tab": "Tab",
    "escape": "Escape",
    "esc": "Escape",
    "space": "Space",
    "home": "Home",
    "end": "End",
    "pageup": "PageUp",
    "pagedown": "PageDown",
    "arrowup": "ArrowUp",
    "arrowdown": "ArrowDown",
    "arrowleft": "ArrowLeft",
    "arrowright": "ArrowRight",
    "up": "ArrowUp",
    "down": "ArrowDown",
    "left": "ArrowLeft",
    "right": "ArrowRight",
    # Maestro's TV remote keys, for flows written for Android TV.
    "remotedpadup": "ArrowUp",
    "remotedpaddown": "ArrowDown",
    "remotedpadleft": "ArrowLeft",
    "remotedpadright": "ArrowRight",
    "remotedpadcenter": "Enter",
    "back": BACK,
}
"""Normalised Maestro name (lower case, no spaces, dashes or underscores) -> Playwright key."""


def playwright_key(name: str) -> str:
    """The Playwright key for Maestro key *name*, or :data:`BACK`.

    Case, spaces, dashes and underscores do not matter (``Remote Dpad Up`` =
    ``remote_dpad_up``). Raises KeyError naming the keys a browser device has.
    """
    normalised = "".join(ch for ch in name.lower() if ch not in " -_")
    try:
        return KEYS[normalised]
    except KeyError:
        known = ", ".join(sorted({value for value in KEYS.values()}))
        raise KeyError(f"key {name!r} has no equivalent on browser devices (known: {known})") from None
