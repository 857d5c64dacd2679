"""Flow files the tests run, written out in full (Maestro's YAML against the image's test pages)."""

from __future__ import annotations

from pathlib import Path

from backend.flows import Flow, load

PAGES = "file:///opt/corral/start/test"

LOGIN = f"""\
url: {PAGES}/login.html
name: login-check
env:
  USER: alice
---
- launchApp
- tapOn:
    id: username
- inputText: ${{USER}}
- tapOn:
    id: password
- inputText: secret
- tapOn: Log in
- assertVisible: Welcome, ${{USER}}
- takeScreenshot: welcome
"""
LOGIN_LABELS = 8
"""Steps of LOGIN."""

WAIT_FOR_NOTHING = f"""\
url: {PAGES}/click.html
name: wait-for-nothing
---
# Devices provisioned together start their browsers at once: give it time.
- launchApp:
    timeout: 60000
- extendedWaitUntil:
    visible: This text never appears
    timeout: 60000
"""

ASSERT_SIGN_IN = """\
appId: any
name: assert-sign-in
---
- assertVisible:
    text: Sign in
    timeout: 2000
"""
"""No launchApp: passes on a device showing the login page, times out on any other."""


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def flow(folder: Path, name: str, text: str, env: dict[str, str] | None = None) -> Flow:
    return load(write(folder, name, text), env or {})
