"""Fake devices for the stream proxy: real TigerVNC servers on unix sockets."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
import time
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from backend.config import Settings
from backend.hub.tokens import load_or_create_secret
from backend.stream import StreamProxy

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


@pytest.fixture(scope="module")
def farm() -> Iterator[Farm]:
    if not os.access(XVNC, os.X_OK):
        pytest.skip("TigerVNC Xvnc is not installed (apt install tigervnc-standalone-server)")
    # A short root: unix socket paths must stay under 108 bytes.
    root = Path(tempfile.mkdtemp(prefix="corral-st-", dir="/tmp"))
    settings = Settings(runtime_dir=root / "run", data_dir=root / "data")
    servers: list[subprocess.Popen[bytes]] = []
    spy = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        for device_id in [*GEOMETRIES, SPY]:
            settings.device_dir(device_id).mkdir(parents=True, mode=0o700)
        for device_id, (width, height) in GEOMETRIES.items():
            vnc_socket = settings.device_dir(device_id) / "vnc.sock"
            servers.append(start_xvnc(vnc_socket, width, height, root / f"{device_id}.log"))
        spy.bind(str(settings.device_dir(SPY) / "vnc.sock"))
        spy.listen()
        spy.setblocking(False)
        yield Farm(settings=settings, secret=load_or_create_secret(settings.secret_path), spy=spy)
    finally:
        spy.close()
        for server in servers:
            server.terminate()
        for server in servers:
            try:
                server.wait(timeout=10)
            except subprocess.TimeoutExpired:
                server.kill()
                server.wait()
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture
async def proxy(farm: Farm) -> AsyncIterator[StreamProxy]:
    proxy = StreamProxy(farm.settings, farm.secret)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()
