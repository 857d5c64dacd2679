"""A scripted agent for hub tests: a real websockets client on the device's real socket.

It says hello and then does only what the test tells it: :meth:`FakeAgent.next_command`
returns the next command the hub sent, :meth:`FakeAgent.answer` sends its result.
:meth:`FakeAgent.sync` is the barrier that replaces sleeps: it sends a frame the
hub must refuse and waits for the refusal, so every frame sent before it has been
handled by the hub (it handles a connection's frames in order).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import os
import socket
from pathlib import Path
from typing import Any

from websockets.asyncio.client import ClientConnection, unix_connect
from websockets.client import ClientProtocol
from websockets.exceptions import ConnectionClosed
from websockets.protocol import State
from websockets.uri import parse_uri

from agent.protocol import Command, Hello, Result, decode, decode_credential, encode, session_token
from backend.config import Settings, rundir
from backend.hub import Hub, HubListener

SYNC_FRAME = '{"type": "sync-barrier"}'
"""Refused by the hub with ``invalid_message`` (no such type)."""


def hub_settings_for(tmp: Path) -> Settings:
    return Settings(
        runtime_dir=tmp, data_dir=tmp / "data", device_uid=os.getuid(), agent_replace_interval=0.0
    )


async def serve(
    settings: Settings, device_ids: list[str], listener: HubListener | None = None, **kw: Any
) -> Hub:
    """A hub serving *device_ids* on their real sockets (device directories made here)."""
    rundir.ensure_root(settings.runtime_dir)
    hub = Hub(settings, listener, **kw)
    for device_id in device_ids:
        rundir.make_device_dir(settings.runtime_dir, device_id, settings.effective_device_uid)
        await hub.listen(device_id)
    return hub


def token_for(settings: Settings, device_id: str) -> str:
    path = settings.device_paths(device_id).agent_credential
    return session_token(decode_credential(path.read_bytes()))


class FakeAgent:
    """See the module docstring. Use as ``async with FakeAgent(settings, hub, "dev1") as agent``."""

    def __init__(
        self, settings: Settings, hub: Hub, device_id: str, *, ping_interval: float | None = 20
    ) -> None:
        self.settings = settings
        self._ping_interval = ping_interval
        self.hub = hub
        self.device_id = device_id
        self.commands: asyncio.Queue[Command] = asyncio.Queue()
        self.replies: asyncio.Queue[dict[str, Any]] = asyncio.Queue()
        """Error replies of the hub (parsed JSON), in order."""
        self.connection: ClientConnection | None = None
        self.syncs = 0
        """Barrier frames sent (each one an invalid frame the hub counts)."""
        self._reader: asyncio.Task[None] | None = None

    async def __aenter__(self) -> FakeAgent:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        path = self.settings.device_paths(self.device_id).hub_socket
        self.connection = await unix_connect(
            str(path),
            uri="ws://hub/",
            additional_headers={"Authorization": f"Bearer {token_for(self.settings, self.device_id)}"},
            ping_interval=self._ping_interval,
        )
        self._reader = asyncio.create_task(self._read())
        await self.connection.send(encode(Hello(device_id=self.device_id, agent_version="fake")))
        await self.sync()

    async def _read(self) -> None:
        assert self.connection is not None
        with contextlib.suppress(ConnectionClosed):  # the test looks at close_code
            async for frame in self.connection:
                message = json.loads(frame)
                if message.get("type") == "command":
                    command = decode(frame)
                    assert isinstance(command, Command)
                    self.commands.put_nowait(command)
                else:
                    self.replies.put_nowait(message)

    async def next_command(self, timeout: float = 5.0) -> Command:
        return await asyncio.wait_for(self.commands.get(), timeout)

    async def answer(
        self, command_id: str, *, ok: bool = True, data: Any = None, error: str | None = None
    ) -> None:
        await self.send(encode(Result(id=command_id, ok=ok, data=data, error=error)))

    async def send(self, frame: str | bytes) -> None:
        assert self.connection is not None
        await self.connection.send(frame)

    async def sync(self, timeout: float = 5.0) -> list[dict[str, Any]]:
        """Wait until the hub handled every frame sent so far; returns its error replies to them."""
        await self.send(SYNC_FRAME)
        self.syncs += 1
        replies = []
        while True:
            reply = await asyncio.wait_for(self.replies.get(), timeout)
            if reply.get("code") == "invalid_message" and "sync-barrier" in reply.get("message", ""):
                return replies
            replies.append(reply)

    async def close(self) -> None:
        # Closing a connection the hub already closed trips over asyncio's
        # finished transport (3.11): only close an open one.
        if self.connection is not None and self.connection.state is State.OPEN:
            await self.connection.close()
        if self._reader is not None:
            await asyncio.gather(self._reader, return_exceptions=True)


def stalled_agent(path: Path, token: str) -> socket.socket:
    """A raw connection that completes the handshake, says hello, then never reads again.

    Blocking; run it in a thread. Uses websockets' sans-I/O client to make the bytes.
    """
    protocol = ClientProtocol(parse_uri("ws://hub/"))
    request = protocol.connect()
    request.headers["Authorization"] = f"Bearer {token}"
    protocol.send_request(request)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(5)
    sock.connect(str(path))
    for chunk in protocol.data_to_send():
        sock.sendall(chunk)
    while protocol.handshake_exc is None and not protocol.events_received():
        data = sock.recv(65536)
        assert data, "the hub closed the stalled agent during the handshake"
        protocol.receive_data(data)
    assert protocol.handshake_exc is None, protocol.handshake_exc
    protocol.send_text(encode(Hello(device_id="dev1", agent_version="stalled")).encode())
    for chunk in protocol.data_to_send():
        sock.sendall(chunk)
    return sock
