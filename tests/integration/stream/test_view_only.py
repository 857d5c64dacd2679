"""View tokens cannot change a device: input through the real proxy to a real Xvnc, read back from X.

Each case sends a pointer move, a key press and a clipboard, then asks for one
pixel and waits for it: Xvnc handles a client's messages in order, so once the
update arrives, whatever input got through has reached the X display.
"""

from __future__ import annotations

import asyncio
import struct

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed

from backend.stream import StreamProxy
from tests.rfb import ByteStream, WebSocketStream, handshake, read_update
from tests.xvnc import XProbe

TIMEOUT = 10.0
KEYSYM_A = 0x61
TARGET = (17, 23)

POINTER_MOVE = struct.pack("!BBHH", 5, 0, *TARGET)
EXTENDED_POINTER_MOVE = struct.pack("!BBHHB", 5, 0x80, *TARGET, 0)
KEY_A_DOWN = struct.pack("!BBxxI", 4, 1, KEYSYM_A)
KEY_A_UP = struct.pack("!BBxxI", 4, 0, KEYSYM_A)
QEMU_KEY_A_DOWN = struct.pack("!BBHII", 255, 0, 1, KEYSYM_A, 30)
CUT_TEXT = struct.pack("!BxxxI", 6, 5) + b"hello"
SET_DESKTOP_SIZE = struct.pack("!BxHHBx", 251, 640, 480, 1) + struct.pack("!IHHHHI", 0, 0, 0, 640, 480, 0)


async def _one_pixel(stream: ByteStream) -> None:
    """Ask for the top-left pixel and read the whole update (Raw, 32 bpp: no SetEncodings sent)."""
    await stream.write(struct.pack("!BBHHHH", 3, 0, 0, 0, 1, 1))
    await read_update(stream, TIMEOUT)


async def _send_input(proxy: StreamProxy, device_id: str, scope: str, messages: list[bytes]) -> None:
    async with connect(proxy.pane_url(device_id, scope), open_timeout=TIMEOUT) as ws:  # type: ignore[arg-type]
        stream = WebSocketStream(ws)
        await asyncio.wait_for(handshake(stream), TIMEOUT)
        for message in messages:
            await stream.write(message)
        await _one_pixel(stream)
        # Still open: the input was dropped, the pane was not closed.
        await _one_pixel(stream)


async def test_view_token_input_does_not_reach_the_display(
    proxy: StreamProxy, input_device: tuple[str, XProbe]
) -> None:
    device_id, probe = input_device
    start = probe.pointer()
    assert start != TARGET
    await _send_input(
        proxy, device_id, "view", [POINTER_MOVE, KEY_A_DOWN, QEMU_KEY_A_DOWN, CUT_TEXT, SET_DESKTOP_SIZE]
    )
    assert probe.pointer() == start
    assert not probe.key_down(KEYSYM_A)
    assert probe.selection_owner("CLIPBOARD") == 0
    assert "closed a view stream" not in proxy.log_path.read_text()


async def test_control_token_input_reaches_the_display(
    proxy: StreamProxy, input_device: tuple[str, XProbe]
) -> None:
    # Positive control for the test above: the same input with a control token.
    device_id, probe = input_device
    assert probe.selection_owner("CLIPBOARD") == 0
    async with connect(proxy.pane_url(device_id, "control"), open_timeout=TIMEOUT) as ws:
        stream = WebSocketStream(ws)
        await asyncio.wait_for(handshake(stream), TIMEOUT)
        for message in (POINTER_MOVE, KEY_A_DOWN, CUT_TEXT):
            await stream.write(message)
        await _one_pixel(stream)
        assert probe.pointer() == TARGET
        assert probe.key_down(KEYSYM_A)
        assert probe.selection_owner("CLIPBOARD") != 0
        await stream.write(KEY_A_UP)
        await _one_pixel(stream)
        assert not probe.key_down(KEYSYM_A)


@pytest.mark.parametrize(
    "message",
    [bytes([7, 0, 0, 0]), bytes([255, 1, 0, 0]), bytes([253, 0, 0, 0, 0, 0, 0, 0])],
    ids=["unknown type", "QEMU audio", "gii"],
)
async def test_view_stream_that_sends_what_the_proxy_does_not_understand_is_closed(
    proxy: StreamProxy, input_device: tuple[str, XProbe], message: bytes
) -> None:
    device_id, probe = input_device
    async with connect(proxy.pane_url(device_id, "view"), open_timeout=TIMEOUT) as ws:
        stream = WebSocketStream(ws)
        await asyncio.wait_for(handshake(stream), TIMEOUT)
        # The pointer move after the unknown message must not get through either.
        await stream.write(message + EXTENDED_POINTER_MOVE)
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1008
    assert probe.pointer() != TARGET
    assert "closed a view stream of dev-input" in proxy.log_path.read_text()
