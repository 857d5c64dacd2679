"""The stream proxy against real TigerVNC servers on unix sockets."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import socket
import time
from collections.abc import Callable
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from backend.auth.tokens import sign
from backend.stream import InvalidDeviceIdError, ProxyNotRunningError, StreamProxy
from tests.integration.stream.devices import GEOMETRIES, SPY, Farm
from tests.rfb import FRAMEBUFFER_UPDATE, WebSocketStream, handshake, request_full_update

TIMEOUT = 10.0


def _url(proxy: StreamProxy, query: str, device_id: str = SPY) -> str:
    return f"ws://127.0.0.1:{proxy.port}/devices/{device_id}{query}"


def _stat_fields(pid: int) -> list[bytes]:
    """Fields of /proc/<pid>/stat after the command name: state, ppid, pgrp, ..."""
    with open(f"/proc/{pid}/stat", "rb") as handle:
        return handle.read().rsplit(b")", 1)[1].split()


def _processes() -> dict[int, list[bytes]]:
    found = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            with contextlib.suppress(OSError):  # the process just ended
                found[int(name)] = _stat_fields(int(name))
    return found


def _proxy_pids(proxy: StreamProxy) -> list[int]:
    """Our children running *proxy*'s server (a zombie's cmdline is empty).

    Matched by its log file, which is per data dir: other proxies of this test
    session (GUI tests keep one) are not this one.
    """
    pids = []
    for pid, fields in _processes().items():
        if int(fields[1]) == os.getpid():
            try:
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
            except OSError:
                continue
            if b"backend.stream.relay" in cmdline and str(proxy.log_path).encode() in cmdline:
                pids.append(pid)
    return pids


def _proxy_pid(proxy: StreamProxy) -> int:
    """The proxy's main process."""
    pids = _proxy_pids(proxy)
    assert len(pids) == 1, pids
    return pids[0]


def _group_alive(group: int) -> list[int]:
    return [pid for pid, fields in _processes().items() if int(fields[2]) == group and fields[0] != b"Z"]


def _spy_was_connected(farm: Farm) -> bool:
    try:
        connection, _ = farm.spy.accept()
    except BlockingIOError:
        return False
    connection.close()
    return True


async def _assert_streams(proxy: StreamProxy, device_id: str) -> None:
    async with connect(proxy.pane_url(device_id), max_size=None, open_timeout=TIMEOUT) as ws:
        stream = WebSocketStream(ws)
        size = await asyncio.wait_for(handshake(stream), TIMEOUT)
        assert size == GEOMETRIES[device_id]
        await request_full_update(stream, *size)
        assert (await asyncio.wait_for(stream.read_exactly(1), TIMEOUT))[0] == FRAMEBUFFER_UPDATE


@pytest.mark.parametrize("device_id", sorted(GEOMETRIES))
async def test_valid_token_streams_that_devices_screen(proxy: StreamProxy, device_id: str) -> None:
    # Each device has its own geometry, so the size proves which screen answered.
    await _assert_streams(proxy, device_id)


async def test_concurrent_panes_each_get_their_own_device(proxy: StreamProxy) -> None:
    async with (
        connect(proxy.pane_url("dev-a"), open_timeout=TIMEOUT) as ws_a,
        connect(proxy.pane_url("dev-b"), open_timeout=TIMEOUT) as ws_b,
    ):
        sizes = await asyncio.wait_for(
            asyncio.gather(handshake(WebSocketStream(ws_a)), handshake(WebSocketStream(ws_b))), TIMEOUT
        )
    assert list(sizes) == [GEOMETRIES["dev-a"], GEOMETRIES["dev-b"]]


@pytest.mark.parametrize("scope", ["view", "control"])
def test_pane_url_names_the_device_and_carries_a_scoped_token(proxy: StreamProxy, scope: str) -> None:
    url = urlsplit(proxy.pane_url("dev-a", scope))  # type: ignore[arg-type]
    assert (url.scheme, url.hostname, url.port, url.path) == ("ws", "127.0.0.1", proxy.port, "/devices/dev-a")
    assert url.query.startswith(f"token=v2.{scope}.dev-a.")


def test_pane_url_refuses_an_unknown_scope(proxy: StreamProxy) -> None:
    with pytest.raises(ValueError, match="scope"):
        proxy.pane_url("dev-a", "admin")  # type: ignore[arg-type]


def test_pane_url_refuses_invalid_device_ids(proxy: StreamProxy) -> None:
    with pytest.raises(InvalidDeviceIdError):
        proxy.pane_url("../dev-a")


def _forged(token: str) -> str:
    return token[:-1] + ("A" if token[-1] != "A" else "B")


REFUSED_QUERIES: dict[str, Callable[[Farm], str]] = {
    "no query": lambda farm: "",
    "no token": lambda farm: "?other=1",
    "empty token": lambda farm: "?token=",
    "garbage": lambda farm: "?token=garbage",
    "expired": lambda farm: "?token=" + sign(farm.secret, "view", SPY, -5),
    "forged": lambda farm: "?token=" + _forged(sign(farm.secret, "view", SPY, 60)),
    "other secret": lambda farm: "?token=" + sign(b"k" * 32, "view", SPY, 60),
    "agent purpose": lambda farm: "?token=" + sign(farm.secret, "agent", SPY, 60),
    "token for another device": lambda farm: "?token=" + sign(farm.secret, "control", "dev-a", 60),
}


@pytest.mark.parametrize("case", sorted(REFUSED_QUERIES))
async def test_refused_token_never_reaches_the_device(proxy: StreamProxy, farm: Farm, case: str) -> None:
    query = REFUSED_QUERIES[case](farm)
    with pytest.raises(InvalidStatus) as refused:
        async with connect(_url(proxy, query), open_timeout=TIMEOUT):
            pass
    assert refused.value.response.status_code == 403
    # The proxy answers 403 before it would open the device's socket: nobody knocked.
    assert not _spy_was_connected(farm)


async def test_a_path_that_names_no_device_is_refused(proxy: StreamProxy, farm: Farm) -> None:
    token = sign(farm.secret, "view", SPY, 60)
    with pytest.raises(InvalidStatus) as refused:
        async with connect(f"ws://127.0.0.1:{proxy.port}/websockify?token={token}", open_timeout=TIMEOUT):
            pass
    assert refused.value.response.status_code == 403
    assert not _spy_was_connected(farm)


async def test_a_token_opens_one_connection_only(proxy: StreamProxy, farm: Farm) -> None:
    url = proxy.pane_url(SPY)
    async with connect(url, open_timeout=TIMEOUT):
        await _wait_for_spy(farm)
    with pytest.raises(InvalidStatus) as replayed:
        async with connect(url, open_timeout=TIMEOUT):
            pass
    assert replayed.value.response.status_code == 403
    assert not _spy_was_connected(farm)
    assert "refused a stream connection: token already used" in proxy.log_path.read_text()


async def _wait_for_spy(farm: Farm) -> None:
    deadline = time.monotonic() + TIMEOUT
    while not _spy_was_connected(farm):
        assert time.monotonic() < deadline, "the proxy never connected to the device"
        await asyncio.sleep(0.02)


@pytest.mark.parametrize("scope", ["view", "control"])
async def test_valid_token_reaches_the_spy_device(proxy: StreamProxy, farm: Farm, scope: str) -> None:
    # Positive control for the tests above: the spy does see a valid pane.
    async with connect(proxy.pane_url(SPY, scope), open_timeout=TIMEOUT):  # type: ignore[arg-type]
        await _wait_for_spy(farm)


async def test_device_without_vnc_socket_closes_without_data(proxy: StreamProxy) -> None:
    async with connect(proxy.pane_url("dev-gone"), open_timeout=TIMEOUT) as ws:
        with pytest.raises(ConnectionClosed) as closed:
            await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert closed.value.rcvd is not None
    assert closed.value.rcvd.code == 1011


async def test_refusals_are_logged_without_tokens(proxy: StreamProxy, farm: Farm) -> None:
    token = sign(farm.secret, "view", SPY, -5)
    with pytest.raises(InvalidStatus):
        async with connect(_url(proxy, f"?token={token}"), open_timeout=TIMEOUT):
            pass
    await _assert_streams(proxy, "dev-a")
    log = proxy.log_path.read_text()
    assert "refused a stream connection: token expired" in log
    assert token.rsplit(".", 1)[1] not in log
    # A valid pane's token is not logged either.
    assert "token=v2" not in log
    assert ".view." not in log


def test_listens_on_ipv4_loopback_only(proxy: StreamProxy) -> None:
    listening = []
    for table in ("/proc/net/tcp", "/proc/net/tcp6"):
        with open(table) as handle:
            for line in handle.readlines()[1:]:
                local, state = line.split()[1], line.split()[3]
                address, port = local.rsplit(":", 1)
                if state == "0A" and int(port, 16) == proxy.port:
                    listening.append(address)
    assert listening == ["0100007F"]  # 127.0.0.1, little-endian hex, nothing on IPv6


async def test_stop_leaves_no_process_and_frees_the_port(farm: Farm) -> None:
    proxy = StreamProxy(farm.settings, farm.secret)
    await proxy.start()
    group = _proxy_pid(proxy)
    port = proxy.port
    async with connect(proxy.pane_url("dev-a"), open_timeout=TIMEOUT) as ws:
        await asyncio.wait_for(handshake(WebSocketStream(ws)), TIMEOUT)
        # One process serves every pane.
        assert _group_alive(group) == [group]
        await proxy.stop()
        with pytest.raises(ConnectionClosed):
            await asyncio.wait_for(ws.recv(), TIMEOUT)
    assert _group_alive(group) == []
    assert not proxy.running
    with pytest.raises(ProxyNotRunningError):
        proxy.pane_url("dev-a")
    with socket.socket() as probe, pytest.raises(ConnectionRefusedError):
        probe.connect(("127.0.0.1", port))


async def test_crashed_proxy_is_restarted_on_the_same_port(proxy: StreamProxy) -> None:
    port = proxy.port
    first = _proxy_pid(proxy)
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + TIMEOUT
    while proxy.running:
        assert time.monotonic() < deadline, "the proxy's exit went unnoticed"
        await asyncio.sleep(0.02)
    # A URL issued now, while no relay serves, waits in the listener's backlog
    # until the restarted relay serves it.
    async with connect(proxy.pane_url("dev-a"), open_timeout=TIMEOUT) as ws:
        assert await asyncio.wait_for(handshake(WebSocketStream(ws)), TIMEOUT) == GEOMETRIES["dev-a"]
    assert _proxy_pids(proxy) not in ([], [first])
    assert proxy.port == port


async def test_a_token_used_before_a_crash_stays_used(proxy: StreamProxy, farm: Farm) -> None:
    used = proxy.pane_url(SPY)
    async with connect(used, open_timeout=TIMEOUT):
        await _wait_for_spy(farm)
    first = _proxy_pid(proxy)
    os.kill(first, signal.SIGKILL)
    deadline = time.monotonic() + TIMEOUT
    while not proxy.running or _proxy_pids(proxy) in ([], [first]):
        assert time.monotonic() < deadline, "the proxy was not restarted"
        await asyncio.sleep(0.05)
    # The new relay's replay guard is empty, yet the used token stays used.
    with pytest.raises(InvalidStatus) as replayed:
        async with connect(used, open_timeout=TIMEOUT):
            pass
    assert replayed.value.response.status_code == 403
    assert not _spy_was_connected(farm)
    assert "token issued before this proxy started" in proxy.log_path.read_text()
