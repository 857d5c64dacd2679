"""Fake devices for the stream proxy tests: real TigerVNC servers on unix sockets."""

from __future__ import annotations

import socket
from dataclasses import dataclass

from backend.config import Settings

GEOMETRIES = {"dev-a": (320, 240), "dev-b": (400, 300)}
SPY = "dev-spy"


@dataclass
class Farm:
    settings: Settings
    secret: bytes
    spy: socket.socket
    """A listening unix socket standing in for dev-spy's VNC: shows who connected."""
