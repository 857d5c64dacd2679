"""What the relay reads from a device goes out gathered, in order, bounded, never waiting for more."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator

import pytest

from backend.stream.relay import READ_BUFFER, _device_to_pane, _DeviceLink


class _Pane:
    """Stands in for the WebSocket connection: records each message sent."""

    def __init__(self) -> None:
        self.messages: list[bytes] = []
        self.sent = asyncio.Event()

    async def send(self, data: memoryview) -> None:
        self.messages.append(bytes(data))
        self.sent.set()
        await asyncio.sleep(0)  # a real send may pause here; the buffer must hold


@pytest.fixture
async def link() -> AsyncIterator[tuple[socket.socket, _DeviceLink]]:
    device_end, relay_end = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    transport, protocol = await asyncio.get_running_loop().create_unix_connection(_DeviceLink, sock=relay_end)
    yield device_end, protocol
    transport.close()
    device_end.close()


async def _pump_until(pane: _Pane, device: _DeviceLink, total: int) -> None:
    pump = asyncio.create_task(_device_to_pane(device, pane))  # type: ignore[arg-type]
    try:
        while sum(map(len, pane.messages)) < total:
            pane.sent.clear()
            await asyncio.wait_for(pane.sent.wait(), 5)
    finally:
        pump.cancel()


async def test_pieces_written_before_the_pump_runs_go_out_as_one_message(
    link: tuple[socket.socket, _DeviceLink],
) -> None:
    device_end, device = link
    for piece in (b"header", b"pixels" * 100, b"more"):
        device_end.sendall(piece)
    # Let the transport read everything before the pump first looks.
    while len(await device.wait_readable()) < 610:
        await asyncio.sleep(0)
    pane = _Pane()
    await _pump_until(pane, device, 610)
    assert pane.messages == [b"header" + b"pixels" * 100 + b"more"]


async def test_a_lone_update_is_sent_without_waiting(link: tuple[socket.socket, _DeviceLink]) -> None:
    device_end, device = link
    pane = _Pane()
    device_end.sendall(b"frame")
    await _pump_until(pane, device, 5)
    assert pane.messages == [b"frame"]


async def test_more_than_the_buffer_arrives_whole_and_in_order_in_bounded_messages(
    link: tuple[socket.socket, _DeviceLink],
) -> None:
    device_end, device = link
    data = bytes(range(256)) * (3 * READ_BUFFER // 256 + 7)
    writer = asyncio.create_task(asyncio.to_thread(device_end.sendall, data))
    pane = _Pane()
    await _pump_until(pane, device, len(data))
    await writer
    assert b"".join(pane.messages) == data
    assert max(map(len, pane.messages)) <= READ_BUFFER


async def test_the_last_bytes_are_sent_before_the_pump_ends(link: tuple[socket.socket, _DeviceLink]) -> None:
    device_end, device = link
    device_end.sendall(b"last")
    device_end.close()
    pane = _Pane()
    await asyncio.wait_for(_device_to_pane(device, pane), 5)  # type: ignore[arg-type]
    assert pane.messages == [b"last"]
