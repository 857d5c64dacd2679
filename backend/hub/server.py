"""The agent hub: one websockets server per device, on a unix socket.

Each device's agent reaches the hub only through ``hub.sock`` in the device's
private runtime directory (mounted into its container); no TCP. The connection
must also carry the device's signed agent token (``Authorization: Bearer …``),
checked before the WebSocket handshake completes.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import os
from http import HTTPStatus
from pathlib import Path
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, unix_serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from agent.protocol import MAX_FRAME_BYTES, Command, Event, Hello, Result, encode
from backend.auth import tokens
from backend.auth.exceptions import TokenError
from backend.config import Settings, rundir
from backend.config.exceptions import RuntimeDirError
from backend.config.paths import HUB_SOCKET
from backend.hub.exceptions import HubError
from backend.hub.session import AgentSession

__all__ = ["Hub", "HubListener"]

log = logging.getLogger(__name__)


class HubListener:
    """Callbacks the hub makes on the loop. Override what you need."""

    def on_hello(self, device_id: str, hello: Hello) -> None: ...

    def on_event(self, device_id: str, event: Event) -> None: ...

    def on_disconnect(self, device_id: str) -> None: ...


class Hub:
    """Serves agents of many devices; see the module docstring.

    :meth:`listen` is idempotent. Commands to an agent are correlated by id;
    :meth:`command` raises HubError when the agent is not connected or times out.
    """

    def __init__(self, settings: Settings, secret: bytes, listener: HubListener | None = None) -> None:
        self._settings = settings
        self._secret = secret
        self._listener = listener or HubListener()
        self._servers: dict[str, Server] = {}
        self._connections: dict[str, ServerConnection] = {}
        self._sessions: dict[str, AgentSession] = {}
        self._hello_waiters: dict[str, list[asyncio.Future[Hello]]] = {}
        self._pending: dict[str, asyncio.Future[Result]] = {}
        self._ids = itertools.count(1)

    def agent_token(self, device_id: str) -> str:
        return tokens.sign(self._secret, "agent", device_id, self._settings.agent_token_ttl)

    def socket_path(self, device_id: str) -> Path:
        return self._settings.device_paths(device_id).hub_socket

    def is_connected(self, device_id: str) -> bool:
        session = self._sessions.get(device_id)
        return session is not None and session.hello is not None

    def invalid_frames(self, device_id: str) -> int:
        session = self._sessions.get(device_id)
        return session.invalid_frames if session else 0

    async def listen(self, device_id: str) -> Path:
        """Serve *device_id*'s agent on its socket (created 0600, owned by the device uid).

        The device's directory must exist (``rundir.make_device_dir``); raises
        RuntimeDirError when it does not or when the socket cannot be made safely.
        """
        path = self.socket_path(device_id)
        if device_id in self._servers:
            return path
        uid = self._settings.effective_device_uid
        sock = rundir.bind_private_socket(self._settings.runtime_dir, device_id, HUB_SOCKET, uid)
        server = await unix_serve(
            lambda connection: self._handle(device_id, connection),
            sock=sock,
            process_request=lambda connection, request: self._authorize(device_id, request),
            max_size=MAX_FRAME_BYTES,
            ping_interval=10,
            ping_timeout=10,
        )
        self._servers[device_id] = server
        return path

    async def close_device(self, device_id: str) -> None:
        server = self._servers.pop(device_id, None)
        if server is not None:
            server.close()
            await server.wait_closed()
        with (
            contextlib.suppress(FileNotFoundError, RuntimeDirError),
            rundir.open_device_dir(self._settings.runtime_dir, device_id) as dir_fd,
        ):
            os.unlink(HUB_SOCKET, dir_fd=dir_fd)

    async def stop(self) -> None:
        for device_id in list(self._servers):
            await self.close_device(device_id)

    async def wait_hello(self, device_id: str, timeout: float) -> Hello:
        """Wait until the device's agent has said hello (at once if it already has)."""
        session = self._sessions.get(device_id)
        if session is not None and session.hello is not None:
            return session.hello
        future: asyncio.Future[Hello] = asyncio.get_running_loop().create_future()
        self._hello_waiters.setdefault(device_id, []).append(future)
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            waiters = self._hello_waiters.get(device_id, [])
            if future in waiters:
                waiters.remove(future)

    async def command(self, device_id: str, name: str, args: dict[str, Any], timeout: float = 30.0) -> Result:
        connection = self._connections.get(device_id)
        if connection is None or not self.is_connected(device_id):
            raise HubError(f"the agent of device {device_id} is not connected")
        command_id = f"c{next(self._ids)}"
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        self._pending[command_id] = future
        try:
            await connection.send(encode(Command(id=command_id, name=name, args=args)))
            return await asyncio.wait_for(future, timeout)
        except TimeoutError as exc:
            raise HubError(f"device {device_id} did not answer {name!r} within {timeout:.0f}s") from exc
        except ConnectionClosed as exc:
            raise HubError(f"the agent of device {device_id} disconnected") from exc
        finally:
            self._pending.pop(command_id, None)

    def _authorize(self, device_id: str, request: Request) -> Response | None:
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ").strip()
        try:
            claims = tokens.verify(self._secret, token, "agent")
        except TokenError as exc:
            return _refusal(HTTPStatus.UNAUTHORIZED, str(exc))
        if claims.device_id != device_id:
            return _refusal(HTTPStatus.FORBIDDEN, "token is for another device")
        return None

    async def _handle(self, device_id: str, connection: ServerConnection) -> None:
        previous = self._connections.get(device_id)
        if previous is not None:
            # A reconnecting agent replaces its stale connection.
            await previous.close(code=1008, reason="replaced by a new connection")
        session = AgentSession(device_id)
        self._sessions[device_id] = session
        self._connections[device_id] = connection
        try:
            async for frame in connection:
                received = session.receive(frame)
                for reply in received.replies:
                    await connection.send(reply)
                self._dispatch(device_id, received.message)
        except ConnectionClosed:
            pass
        finally:
            if self._connections.get(device_id) is connection:
                del self._connections[device_id]
                del self._sessions[device_id]
                self._listener.on_disconnect(device_id)

    def _dispatch(self, device_id: str, message: Hello | Event | Result | None) -> None:
        if isinstance(message, Hello):
            for future in self._hello_waiters.pop(device_id, []):
                if not future.done():
                    future.set_result(message)
            self._listener.on_hello(device_id, message)
        elif isinstance(message, Result):
            pending = self._pending.get(message.id)
            if pending is not None and not pending.done():
                pending.set_result(message)
        elif isinstance(message, Event):
            self._listener.on_event(device_id, message)


def _refusal(status: HTTPStatus, reason: str) -> Response:
    body = f"{reason}\n".encode()
    headers = Headers([("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    return Response(status.value, status.phrase, headers, body)
