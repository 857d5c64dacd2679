"""Fixtures: a farm of fake devices and a started StreamProxy in front of it."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import pytest

from backend.auth.tokens import load_or_create_secret
from backend.config import Settings
from backend.stream import StreamProxy
from tests.integration.stream.devices import GEOMETRIES, SPY, Farm
from tests.require import missing
from tests.xvnc import XVNC, XProbe, start_xvnc


@pytest.fixture(scope="module")
def farm() -> Iterator[Farm]:
    if not os.access(XVNC, os.X_OK):
        missing("xvnc", "TigerVNC Xvnc is not installed (apt install tigervnc-standalone-server)")
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
            servers.append(start_xvnc(vnc_socket, width, height)[1])
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
def input_device(farm: Farm) -> Iterator[tuple[str, XProbe]]:
    """A fresh Xvnc device (``dev-input``, 320x240) and a probe of what input reached its display."""
    device_id = "dev-input"
    device_dir = farm.settings.device_dir(device_id)
    device_dir.mkdir(mode=0o700)
    display, server = start_xvnc(device_dir / "vnc.sock", 320, 240)
    probe = XProbe(display)
    try:
        yield device_id, probe
    finally:
        probe.close()
        server.terminate()
        try:
            server.wait(timeout=10)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()
        shutil.rmtree(device_dir, ignore_errors=True)


@pytest.fixture
async def proxy(farm: Farm) -> AsyncIterator[StreamProxy]:
    proxy = StreamProxy(farm.settings, farm.secret)
    await proxy.start()
    try:
        yield proxy
    finally:
        await proxy.stop()
