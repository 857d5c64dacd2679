"""A minimal RFB 3.8 client over any byte stream: just enough to prove a stream works."""

from __future__ import annotations

import asyncio
import struct
from typing import Protocol

from websockets.asyncio.client import ClientConnection, connect

RFB_VERSION = b"RFB 003.008\n"
SECURITY_NONE = 1
FRAMEBUFFER_UPDATE = 0


class ByteStream(Protocol):
    async def read_exactly(self, n: int) -> bytes: ...
    async def write(self, data: bytes) -> None: ...


class WebSocketStream:
    """RFB bytes over WebSocket binary frames, which may split or merge messages."""

    def __init__(self, ws: ClientConnection) -> None:
        self._ws = ws
        self._buffer = bytearray()

    async def read_exactly(self, n: int) -> bytes:
        while len(self._buffer) < n:
            frame = await self._ws.recv()
            assert isinstance(frame, bytes), "the stream proxy sends binary frames"
            self._buffer += frame
        data = bytes(self._buffer[:n])
        del self._buffer[:n]
        return data

    async def write(self, data: bytes) -> None:
        await self._ws.send(data)


async def handshake(stream: ByteStream) -> tuple[int, int]:
    """Version, security None, shared ClientInit; returns the framebuffer size."""
    assert await stream.read_exactly(12) == RFB_VERSION
    await stream.write(RFB_VERSION)
    (count,) = struct.unpack("!B", await stream.read_exactly(1))
    assert SECURITY_NONE in await stream.read_exactly(count)
    await stream.write(struct.pack("!B", SECURITY_NONE))
    assert struct.unpack("!I", await stream.read_exactly(4)) == (0,), "SecurityResult OK"
    await stream.write(struct.pack("!B", 1))  # ClientInit: shared
    width, height = struct.unpack("!HH", await stream.read_exactly(4))
    await stream.read_exactly(16)  # pixel format
    (name_length,) = struct.unpack("!I", await stream.read_exactly(4))
    await stream.read_exactly(name_length)
    return width, height


async def request_full_update(stream: ByteStream, width: int, height: int) -> None:
    await stream.write(struct.pack("!BBHHHH", 3, 0, 0, 0, width, height))


async def read_update(stream: ByteStream, timeout: float = 10.0) -> int:
    """Read one whole FramebufferUpdate (Raw at 32 bpp: no SetEncodings sent); returns its rect count.

    A server may answer one request with several rects, so every rect is read.
    """
    header = await asyncio.wait_for(stream.read_exactly(4), timeout)
    assert header[0] == FRAMEBUFFER_UPDATE, f"expected a FramebufferUpdate, got message type {header[0]}"
    (rects,) = struct.unpack("!xxH", header)
    for _ in range(rects):
        _x, _y, width, height, encoding = struct.unpack("!HHHHi", await stream.read_exactly(12))
        assert encoding == 0, f"expected Raw rects, got encoding {encoding}"
        await stream.read_exactly(width * height * 4)
    return rects


async def first_update(url: str) -> tuple[int, int]:
    """Connect to a stream *url*, handshake, ask for a full frame; return the size once it arrives."""
    async with connect(url, subprotocols=["binary"], max_size=None, open_timeout=5) as ws:
        stream = WebSocketStream(ws)
        width, height = await asyncio.wait_for(handshake(stream), 10)
        await request_full_update(stream, width, height)
        (message_type,) = struct.unpack("!B", await asyncio.wait_for(stream.read_exactly(1), 10))
        assert message_type == FRAMEBUFFER_UPDATE
        return width, height
