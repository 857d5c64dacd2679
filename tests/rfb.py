"""A minimal RFB (VNC) client over a WebSocket, for tests and benchmarks."""

from __future__ import annotations

import asyncio
import struct

from websockets.asyncio.client import ClientConnection, connect

__all__ = ["first_update", "handshake"]


class _Reader:
    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._buffer = bytearray()

    async def read(self, n: int, timeout: float = 10.0) -> bytes:
        while len(self._buffer) < n:
            chunk = await asyncio.wait_for(self._ws.recv(), timeout)
            self._buffer.extend(chunk if isinstance(chunk, bytes) else chunk.encode())
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data


async def handshake(ws: ClientConnection) -> tuple[_Reader, int, int]:
    """RFB 3.8 with security None, shared; returns the reader and the framebuffer size."""
    reader = _Reader(ws)
    greeting = await reader.read(12)
    if not greeting.startswith(b"RFB 003."):
        raise AssertionError(f"not an RFB greeting: {greeting!r}")
    await ws.send(b"RFB 003.008\n")
    count = (await reader.read(1))[0]
    if 1 not in await reader.read(count):
        raise AssertionError("server does not offer security type None")
    await ws.send(b"\x01")
    if await reader.read(4) != b"\x00\x00\x00\x00":
        raise AssertionError("security handshake failed")
    await ws.send(b"\x01")
    width, height = struct.unpack(">HH", await reader.read(4))
    await reader.read(16)
    (name_length,) = struct.unpack(">I", await reader.read(4))
    await reader.read(name_length)
    return reader, width, height


async def first_update(url: str) -> tuple[int, int]:
    """Connect to *url*, handshake, request a full frame; return the size once it arrives."""
    async with connect(url, subprotocols=["binary"], max_size=None, open_timeout=5) as ws:
        reader, width, height = await handshake(ws)
        await ws.send(struct.pack(">BBHHHH", 3, 0, 0, 0, width, height))
        if (await reader.read(1))[0] != 0:
            raise AssertionError("expected a FramebufferUpdate")
        return width, height
