"""Fake devices for tests and benchmarks: host TigerVNC Xvnc displays (optionally running Chromium).

Each source is laid out like a real device's runtime directory
(``<root>/devices/<id>/vnc.sock``, a unix socket only, no TCP), so the stream
proxy can serve it exactly as it serves a container.

Needs ``/usr/bin/Xvnc`` (tigervnc-standalone-server) and ``/usr/bin/chromium``.
"""

from __future__ import annotations

import contextlib
import os
import random
import shutil
import signal
import subprocess
import time
import urllib.parse
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["CHROMIUM", "XVNC", "XvncSource", "colour_page", "start_xvnc", "start_xvnc_source"]

XVNC = "/usr/bin/Xvnc"
CHROMIUM = "/usr/bin/chromium"

_DISPLAY_BASE = 300
_DISPLAY_SPAN = 600

_CHROMIUM_FLAGS = (
    "--no-sandbox",
    "--kiosk",
    "--disable-gpu",
    "--no-first-run",
    "--no-default-browser-check",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-extensions",
    "--disable-sync",
    "--disable-features=Translate,MediaRouter",
    "--disable-renderer-backgrounding",
    "--disable-background-timer-throttling",
    "--disable-backgrounding-occluded-windows",
    "--password-store=basic",
    "--mute-audio",
    "--noerrdialogs",
)


def colour_page(name: str, colour: str) -> str:
    """A still page: one flat colour with the device name in big letters."""
    return (
        f"<body style='margin:0;background:{colour};color:white;font:bold 64px sans-serif;"
        f"display:flex;align-items:center;justify-content:center;height:100vh'>{name}</body>"
    )


@dataclass
class XvncSource:
    """One running fake device. ``stop()`` ends its processes and removes its files."""

    device_id: str
    display: int
    socket_path: Path
    width: int
    height: int
    _processes: list[subprocess.Popen[bytes]] = field(default_factory=list, repr=False)
    _files: list[Path] = field(default_factory=list, repr=False)

    @property
    def pids(self) -> list[int]:
        return [process.pid for process in self._processes]

    def stop(self) -> None:
        # Chromium first (it is a client of the X server), each in its own session.
        for process in reversed(self._processes):
            if process.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    os.killpg(process.pid, signal.SIGTERM)
        for process in reversed(self._processes):
            try:
                process.wait(timeout=5)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait(timeout=5)
        self._processes.clear()
        for path in self._files:
            shutil.rmtree(path, ignore_errors=True)
        self._files.clear()


def start_xvnc_source(
    root: Path,
    device_id: str,
    html: str,
    width: int = 640,
    height: int = 480,
    timeout: float = 10.0,
    nice: int = 0,
    client: Sequence[str] = (),
) -> XvncSource:
    """Start Xvnc on a free display with *html* shown full screen by Chromium.

    With *client* (a command line), that X client runs on the display instead of
    Chromium and *html* is ignored. Returns once the VNC socket exists; the
    client may still be painting its first frame. *nice* lowers the priority of
    both (benchmarks: devices yield to the viewer). Raises RuntimeError when Xvnc
    does not come up within *timeout*.
    """
    prefix = ("nice", "-n", str(nice)) if nice else ()
    device_dir = root / "devices" / device_id
    device_dir.mkdir(parents=True, mode=0o700)
    socket_path = device_dir / "vnc.sock"
    source = XvncSource(device_id, -1, socket_path, width, height, [], [device_dir])
    try:
        source.display, xvnc = start_xvnc(socket_path, width, height, timeout, prefix)
        source._processes.append(xvnc)
        if client:
            command = list(client)
        else:
            profile = root / f"chromium-{device_id}"
            source._files.append(profile)
            command = [
                CHROMIUM,
                *_CHROMIUM_FLAGS,
                f"--user-data-dir={profile}",
                f"--window-size={width},{height}",
                "--window-position=0,0",
                "data:text/html;charset=utf-8," + urllib.parse.quote(html),
            ]
        env = {**os.environ, "DISPLAY": f":{source.display}"}
        env.pop("WAYLAND_DISPLAY", None)
        process = subprocess.Popen(
            [*prefix, *command],
            env=env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        source._processes.append(process)
    except BaseException:
        source.stop()
        raise
    return source


def start_xvnc(
    socket_path: Path, width: int, height: int, timeout: float = 10.0, prefix: tuple[str, ...] = ()
) -> tuple[int, subprocess.Popen[bytes]]:
    """Start Xvnc on the first free display from a random start; retry when one is taken.

    Xvnc's own ``-displayfd`` allocation does not see displays taken by servers
    started with ``-nolisten local`` at the same moment, so pick explicitly.
    """
    deadline = time.monotonic() + timeout
    display = _DISPLAY_BASE + random.randrange(_DISPLAY_SPAN)
    while time.monotonic() < deadline:
        display = _DISPLAY_BASE + (display - _DISPLAY_BASE + 1) % _DISPLAY_SPAN
        if Path(f"/tmp/.X{display}-lock").exists() or Path(f"/tmp/.X11-unix/X{display}").exists():
            continue
        xvnc = subprocess.Popen(
            [
                *prefix,
                XVNC,
                f":{display}",
                "-rfbunixpath",
                str(socket_path),
                "-rfbport",
                "-1",
                "-nolisten",
                "tcp",
                "-nolisten",
                "local",
                "-SecurityTypes",
                "None",
                "-geometry",
                f"{width}x{height}",
                "-depth",
                "24",
            ],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )
        while xvnc.poll() is None and time.monotonic() < deadline:
            if socket_path.exists() and Path(f"/tmp/.X11-unix/X{display}").exists():
                return display, xvnc
            time.sleep(0.02)
        if xvnc.poll() is None:
            os.killpg(xvnc.pid, signal.SIGKILL)
        xvnc.wait()
    raise RuntimeError(f"Xvnc did not start within {timeout} s")
