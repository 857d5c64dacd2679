"""A hostile local user against the real proxy: a flood of half-sent requests.

With the fork-per-connection websockify proxy, 400 half-sent requests made 400
processes (~1.2 GB) that stayed until the client left. The relay drops each
after HANDSHAKE_TIMEOUT, evicts the oldest when a connection arrives with
MAX_HANDSHAKES in their handshake, stays one process with bounded memory, and
keeps streaming to the panes already open. A flooder that keeps the handshake
slots full does not keep new panes out.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import statistics
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake

from backend.stream import StreamProxy
from backend.stream.relay import HANDSHAKE_TIMEOUT, MAX_HANDSHAKES
from tests.integration.stream.devices import GEOMETRIES, SPY, Farm
from tests.rfb import WebSocketStream, handshake, read_update, request_full_update

FLOOD = 400
PANES = 20
TIMEOUT = 10.0
RSS_GROWTH_LIMIT_KB = 40 * 1024
"""What 400 half-sent requests may add to the relay's resident memory (measured: a few MB)."""


def _relay_pid(proxy: StreamProxy) -> int:
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        with contextlib.suppress(OSError):
            cmdline = Path(f"/proc/{name}/cmdline").read_bytes()
            if b"backend.stream.relay" in cmdline and str(proxy.log_path).encode() in cmdline:
                return int(name)
    raise AssertionError("no relay process")


def _spy_was_connected(farm: Farm) -> bool:
    try:
        connection, _ = farm.spy.accept()
    except BlockingIOError:
        return False
    connection.close()
    return True


def _rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def _group_members(group: int) -> list[int]:
    members = []
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError):
                fields = Path(f"/proc/{name}/stat").read_bytes().rsplit(b")", 1)[1].split()
                if int(fields[2]) == group and fields[0] != b"Z":
                    members.append(int(name))
    return members


async def _half_sent(port: int) -> tuple[asyncio.StreamReader, asyncio.StreamWriter, float]:
    """A connection that sends part of a request and never the rest, and when it connected."""
    reader, writer = await asyncio.wait_for(asyncio.open_connection("127.0.0.1", port), TIMEOUT)
    connected = time.monotonic()
    writer.write(b"GET /devices/dev-a?token=v2.view.dev-a.")
    await writer.drain()
    return reader, writer, connected


async def _closed_at(reader: asyncio.StreamReader) -> float:
    """When the server closed this connection (EOF or reset)."""
    with contextlib.suppress(ConnectionError):
        assert await asyncio.wait_for(reader.read(), HANDSHAKE_TIMEOUT + TIMEOUT) == b""
    return time.monotonic()


def _most_at_once(intervals: list[tuple[float, float]]) -> int:
    events = sorted([(start, 1) for start, _ in intervals] + [(end, -1) for _, end in intervals])
    most = current = 0
    for _, change in events:
        current += change
        most = max(most, current)
    return most


async def test_a_flood_of_half_sent_requests_is_dropped_and_bounded(proxy: StreamProxy) -> None:
    relay = _relay_pid(proxy)
    updates = 0

    async def stream_pane() -> None:
        nonlocal updates
        async with connect(proxy.pane_url("dev-a"), max_size=None, open_timeout=TIMEOUT) as ws:
            stream = WebSocketStream(ws)
            size = await asyncio.wait_for(handshake(stream), TIMEOUT)
            while True:
                await request_full_update(stream, *size)
                await read_update(stream, TIMEOUT)
                updates += 1

    pane = asyncio.create_task(stream_pane())
    try:
        deadline = time.monotonic() + TIMEOUT
        while updates == 0:  # the pane streams before the flood
            assert not pane.done() and time.monotonic() < deadline, "the pane never streamed"
            await asyncio.sleep(0.02)
        before_flood = updates
        rss_before = _rss_kb(relay)
        connections = await asyncio.gather(*(_half_sent(proxy.port) for _ in range(FLOOD)))
        # One process serves them all, in bounded memory.
        assert _group_members(relay) == [relay]
        rss_flooded = _rss_kb(relay)
        closes = await asyncio.gather(*(_closed_at(reader) for reader, _, _ in connections))
        for _, writer, _ in connections:
            writer.close()
        assert not pane.done(), "the open pane stopped streaming during the flood"
        assert updates > before_flood
    finally:
        pane.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await pane
    # Every half-sent request was dropped: those beyond the cap at once, the
    # rest when their handshake time ran out, so that no more than the cap
    # waited at any moment (a little slack: the times are the client's).
    lives = [(connected, closed) for (_, _, connected), closed in zip(connections, closes, strict=True)]
    waited = [(start, end) for start, end in lives if end - start > HANDSHAKE_TIMEOUT - 0.5]
    refused = [(start, end) for start, end in lives if end - start < HANDSHAKE_TIMEOUT / 2]
    assert len(waited) + len(refused) == FLOOD, sorted(end - start for start, end in lives)
    assert refused
    assert _most_at_once(waited) <= MAX_HANDSHAKES + 8
    assert max(end - start for start, end in waited) < HANDSHAKE_TIMEOUT + TIMEOUT
    assert rss_flooded - rss_before < RSS_GROWTH_LIMIT_KB, (rss_before, rss_flooded)
    # Refusals are logged at a bounded rate (10 a second), not one line each.
    log = proxy.log_path.read_text()
    assert "handshakes in progress" in log
    assert log.count("\n") < 100, log.count("\n")
    print(f"relay RSS {rss_before} kB before, {rss_flooded} kB with {FLOOD} half-sent requests")
    # Once the flood is gone, new panes connect again.
    async with connect(proxy.pane_url("dev-b"), open_timeout=TIMEOUT) as ws:
        assert await asyncio.wait_for(handshake(WebSocketStream(ws)), TIMEOUT) == GEOMETRIES["dev-b"]


class _Flooder:
    """Keeps *size* half-sent requests open at the relay, opening a new one as soon as one is closed."""

    def __init__(self, port: int, size: int) -> None:
        self._port = port
        self.open = 0
        self.opened = 0
        self.evicted = 0
        """Connections closed before HANDSHAKE_TIMEOUT / 2: dropped for a newer one."""
        self.timed_out = 0
        self._slots = [asyncio.create_task(self._slot(), name=f"flood-{n}") for n in range(size)]

    async def _slot(self) -> None:
        while True:
            reader, writer, connected = await _half_sent(self._port)
            self.open += 1
            self.opened += 1
            try:
                closed = await _closed_at(reader)
            finally:
                self.open -= 1
                writer.close()
            if closed - connected < HANDSHAKE_TIMEOUT / 2:
                self.evicted += 1
            else:
                self.timed_out += 1

    async def wait_full(self) -> None:
        """Wait until every slot holds an open connection (the relay accepts in order)."""
        await self._wait(lambda: self.open == len(self._slots), "holds every slot")

    async def wait_timed_out(self, count: int) -> None:
        """Wait until the relay has dropped *count* connections for their timeout (each one renewed)."""
        await self._wait(lambda: self.timed_out >= count, f"saw {count} connections time out")

    async def _wait(self, condition: Callable[[], bool], what: str) -> None:
        deadline = time.monotonic() + HANDSHAKE_TIMEOUT + TIMEOUT
        while not condition():
            for slot in self._slots:
                if slot.done():
                    slot.result()  # raises what stopped it
            assert time.monotonic() < deadline, f"the flooder never {what}: {self.open} open"
            await asyncio.sleep(0.001)

    async def stop(self) -> None:
        for slot in self._slots:
            slot.cancel()
        await asyncio.gather(*self._slots, return_exceptions=True)


async def test_panes_connect_while_a_flooder_keeps_the_handshake_slots_full(proxy: StreamProxy) -> None:
    # The review's attack: nobody keeps MAX_HANDSHAKES half-sent requests in the
    # relay, renewing each as soon as it is dropped. Panes connect one after the
    # other, each with a valid token, and must all stream.
    flooder = _Flooder(proxy.port, MAX_HANDSHAKES)
    handshake_ms: list[float] = []
    failures: list[str] = []
    try:
        for n in range(PANES):
            device_id = "dev-a" if n % 2 == 0 else "dev-b"
            if n == PANES // 2:
                # The second half meets connections renewed after a timeout:
                # every one the first half did not evict has timed out (and the
                # ones that replaced those evicted, opened at the same time).
                # The renewed ones time out HANDSHAKE_TIMEOUT later, long after
                # the last pane, so the slots stay full for every pane.
                await flooder.wait_timed_out(MAX_HANDSHAKES)
            await flooder.wait_full()
            started = time.monotonic()
            try:
                async with connect(proxy.pane_url(device_id), max_size=None, open_timeout=TIMEOUT) as ws:
                    handshake_ms.append((time.monotonic() - started) * 1000)
                    stream = WebSocketStream(ws)
                    size = await asyncio.wait_for(handshake(stream), TIMEOUT)
                    assert size == GEOMETRIES[device_id]
                    await request_full_update(stream, *size)
                    await read_update(stream, TIMEOUT)
            except (OSError, TimeoutError, ConnectionClosed, InvalidHandshake) as exc:
                failures.append(f"pane {n}: {exc!r}")
    finally:
        await flooder.stop()
    slowest = max(handshake_ms, default=0.0)
    median = statistics.median(handshake_ms) if handshake_ms else 0.0
    print(
        f"{PANES - len(failures)} of {PANES} panes streamed; handshake max {slowest:.1f} ms, "
        f"median {median:.1f} ms; flooder opened "
        f"{flooder.opened} connections, {flooder.evicted} evicted, {flooder.timed_out} timed out"
    )
    assert failures == []
    # Each pane arrived with the slots full and took the oldest flooder's place.
    assert flooder.evicted >= PANES


async def test_a_single_half_sent_request_is_dropped_after_the_handshake_timeout(proxy: StreamProxy) -> None:
    reader, writer, connected = await _half_sent(proxy.port)
    try:
        closed = await _closed_at(reader)
    finally:
        writer.close()
    assert HANDSHAKE_TIMEOUT - 0.5 < closed - connected < HANDSHAKE_TIMEOUT + TIMEOUT


async def test_a_planted_vnc_socket_symlink_is_not_followed(proxy: StreamProxy, farm: Farm) -> None:
    # A device controls its own directory: it may replace vnc.sock with a link
    # to another device's socket. The proxy refuses it instead of connecting there.
    device_dir = farm.settings.device_dir("dev-link")
    device_dir.mkdir(mode=0o700)
    try:
        (device_dir / "vnc.sock").symlink_to(farm.settings.device_dir(SPY) / "vnc.sock")
        async with connect(proxy.pane_url("dev-link"), open_timeout=TIMEOUT) as ws:
            with pytest.raises(ConnectionClosed) as closed:
                await asyncio.wait_for(ws.recv(), TIMEOUT)
        assert closed.value.rcvd is not None
        assert closed.value.rcvd.code == 1011
        assert not _spy_was_connected(farm)
    finally:
        shutil.rmtree(device_dir)
