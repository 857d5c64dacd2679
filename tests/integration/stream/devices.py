"""Fake devices for the stream proxy tests: real TigerVNC servers on unix sockets."""

from __future__ import annotations

import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from backend.config import Settings

XVNC = "/usr/bin/Xvnc"
GEOMETRIES = {"dev-a": (320, 240), "dev-b": (400, 300)}
SPY = "dev-spy"


@dataclass
class Farm:
    settings: Settings
    secret: bytes
    spy: socket.socket
    """A listening unix socket standing in for dev-spy's VNC: shows who connected."""


def _free_display() -> Iterator[int]:
    for display in range(50, 200):
        if not (Path(f"/tmp/.X{display}-lock").exists() or Path(f"/tmp/.X11-unix/X{display}").exists()):
            yield display


def start_xvnc(vnc_socket: Path, width: int, height: int, log: Path) -> subprocess.Popen[bytes]:
    """Start Xvnc serving only *vnc_socket*; retry on the next display if one is taken."""
    for display in _free_display():
        with log.open("ab") as log_file:
            process = subprocess.Popen(
                [
                    XVNC,
                    f":{display}",
                    "-rfbunixpath",
                    str(vnc_socket),
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
                ],
                stdin=subprocess.DEVNULL,
                stdout=subprocess.DEVNULL,
                stderr=log_file,
            )
        deadline = time.monotonic() + 10
        while process.poll() is None and not vnc_socket.exists():
            if time.monotonic() > deadline:
                process.kill()
                process.wait()
                raise RuntimeError(f"Xvnc did not create {vnc_socket}; see {log}")
            time.sleep(0.05)
        if process.poll() is None:
            return process
        # Lost a race for the display number with another X server: next one.
    raise RuntimeError("no free X display number")
