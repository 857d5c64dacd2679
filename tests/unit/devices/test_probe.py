"""The boot probe asks the device's own VNC socket, never one a planted symlink points to."""

from __future__ import annotations

import asyncio
import contextlib
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from backend.config import rundir
from backend.devices.probe import vnc_answers

DEVICE_UID = 10001 if os.geteuid() == 0 else os.getuid()


@pytest.fixture
def device_dir(tmp_path: Path) -> Path:
    rundir.ensure_root(tmp_path / "run")
    rundir.make_device_dir(tmp_path / "run", "dev-1", DEVICE_UID)
    return tmp_path / "run" / "devices" / "dev-1"


@contextlib.asynccontextmanager
async def rfb_server(path: Path) -> AsyncIterator[list[str]]:
    """A server greeting like Xvnc at *path*; yields the list of its connections."""
    connections: list[str] = []

    async def greet(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        connections.append("connected")
        writer.write(b"RFB 003.008\n")
        await writer.drain()
        writer.close()

    server = await asyncio.start_unix_server(greet, path=str(path))
    try:
        yield connections
    finally:
        server.close()
        await server.wait_closed()


async def test_the_devices_own_socket_answers(device_dir: Path) -> None:
    async with rfb_server(device_dir / "vnc.sock") as connections:
        assert await vnc_answers(device_dir / "vnc.sock")
    assert connections == ["connected"]


async def test_a_symlink_to_another_socket_does_not_answer(device_dir: Path, tmp_path: Path) -> None:
    async with rfb_server(tmp_path / "other.sock") as elsewhere:
        (device_dir / "vnc.sock").symlink_to(tmp_path / "other.sock")
        assert not await vnc_answers(device_dir / "vnc.sock")
    assert elsewhere == []  # nobody connected to it


async def test_no_socket_yet_does_not_answer(device_dir: Path) -> None:
    assert not await vnc_answers(device_dir / "vnc.sock")
