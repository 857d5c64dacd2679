"""The agent hub: one websockets server per device, on a unix socket.

Each device's agent reaches the hub only through ``hub.sock`` in the device's
private runtime directory (mounted into its container); no TCP. The connection
must also carry a session token derived from the device's credential
(``Authorization: Bearer …``), checked before the WebSocket handshake completes;
see :mod:`backend.auth.credentials`. The hub owns the credentials: it writes the
device's credential file when it starts serving the device (a new key on every
host start) and on :meth:`Hub.rotate_credential`, and revokes it (file removed,
tokens refused) in :meth:`Hub.close_device`.

One live connection per device. A new admitted connection replaces the live one
at once (the old one is closed in the background, never waited for), but at most
once per ``agent_replace_interval``: sooner, it is refused with HTTP 429, so two
holders of one credential cannot take turns without end.

A device is untrusted and can open connections to its ``hub.sock`` as fast as it
likes, so what it can cost the host is bounded per device:

- at most MAX_CONNECTIONS_PER_DEVICE connections of a device are open at once,
  counting those still in their handshake and those being retired; more are
  closed as they arrive (before any handshake), so a flood costs the host a
  known number of descriptors, and other devices nothing;
- a connection must complete its handshake within HANDSHAKE_TIMEOUT seconds;
- refusals are logged at most REFUSALS_LOGGED_PER_SECOND a second per device,
  the rest counted in one summary line, so a flood cannot fill the disk.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import time
from collections import Counter
from http import HTTPStatus
from pathlib import Path
from typing import Any

from websockets.asyncio.server import Server, ServerConnection, unix_serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from agent.protocol import MAX_FRAME_BYTES, Command, Event, Hello, Result, encode
from backend.auth.credentials import DeviceCredentials
from backend.auth.exceptions import TokenError
from backend.config import Settings, rundir
from backend.config.exceptions import RuntimeDirError
from backend.config.paths import AGENT_CREDENTIAL, HUB_SOCKET
from backend.hub.exceptions import HubError
from backend.hub.session import AgentSession

__all__ = [
    "ACCEPT_BACKLOG",
    "HANDSHAKE_TIMEOUT",
    "MAX_CONNECTIONS_PER_DEVICE",
    "REFUSALS_LOGGED_PER_SECOND",
    "Hub",
    "HubListener",
]

log = logging.getLogger(__name__)
_websockets_log = logging.getLogger(f"{__name__}.websockets")
# websockets logs every refused or failed handshake at INFO, unbounded; our own
# refusal lines (rate-limited) say the same once.
_websockets_log.setLevel(logging.WARNING)

RETIRE_TIMEOUT = 0.5
"""Seconds a replaced connection gets to finish its close handshake before it is aborted."""
HANDSHAKE_TIMEOUT = 3.0
"""Seconds a connection gets to complete its WebSocket handshake (an agent needs milliseconds)."""
MAX_CONNECTIONS_PER_DEVICE = 4
"""Connections of one device open at once: the live one, one replacing it, and a few in handshake."""
ACCEPT_BACKLOG = 8
"""Pending connections per device socket (the kernel's queue, and asyncio's accept batch)."""
REFUSALS_LOGGED_PER_SECOND = 5
"""Refusal log lines per device and second; the rest are counted in one summary line."""


class HubListener:
    """Callbacks the hub makes on the loop. Override what you need."""

    def on_hello(self, device_id: str, hello: Hello) -> None: ...

    def on_event(self, device_id: str, event: Event) -> None: ...

    def on_disconnect(self, device_id: str) -> None: ...

    def on_refused(self, device_id: str, reason: str) -> None: ...


class _RefusalLog:
    """Logs at most REFUSALS_LOGGED_PER_SECOND refusals of one device a second, then one summary."""

    def __init__(self, device_id: str) -> None:
        self._device_id = device_id
        self._window = -math.inf
        self._logged = 0
        self._unlogged = 0
        self._summary: asyncio.TimerHandle | None = None

    def warning(self, status: int, reason: str) -> None:
        now = time.monotonic()
        if now - self._window >= 1.0:
            self.flush()
            self._window, self._logged = now, 0
        if self._logged < REFUSALS_LOGGED_PER_SECOND:
            self._logged += 1
            log.warning("refused an agent of device %s (HTTP %d): %s", self._device_id, status, reason)
            return
        self._unlogged += 1
        if self._summary is None:
            # Said when the second ends, even if no refusal follows.
            delay = self._window + 1.0 - now
            self._summary = asyncio.get_running_loop().call_later(delay, self.flush)

    def flush(self) -> None:
        if self._summary is not None:
            self._summary.cancel()
            self._summary = None
        if self._unlogged:
            log.warning(
                "%d more agent connections of device %s refused in the last second (not logged one by one)",
                self._unlogged,
                self._device_id,
            )
            self._unlogged = 0


class _Gate:
    """One device's open connections, counted from arrival to close, and its refusal log."""

    def __init__(self, device_id: str) -> None:
        self.open = 0
        self.log = _RefusalLog(device_id)


class _GatedConnection(ServerConnection):
    """A connection counted against its device's gate; closed at once when the gate is full."""

    hub: Hub
    device_id: str
    gate: _Gate
    counted = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        if self.gate.open >= MAX_CONNECTIONS_PER_DEVICE:
            self.transport.abort()
            self.hub._note_refusal(
                self.device_id,
                HTTPStatus.SERVICE_UNAVAILABLE,
                f"{self.gate.open} connections of this device already open (at most "
                f"{MAX_CONNECTIONS_PER_DEVICE}); closed on arrival",
            )
            return
        self.counted = True
        self.gate.open += 1

    def connection_lost(self, exc: Exception | None) -> None:
        if self.counted:
            self.counted = False
            self.gate.open -= 1
        super().connection_lost(exc)


class Hub:
    """Serves agents of many devices; see the module docstring.

    :meth:`listen` is idempotent. Commands to an agent are correlated by id;
    :meth:`command` raises HubError when the agent is not connected or times out.
    """

    def __init__(self, settings: Settings, listener: HubListener | None = None) -> None:
        self._settings = settings
        self._listener = listener or HubListener()
        self._credentials = DeviceCredentials(settings.agent_session_ttl)
        self._servers: dict[str, Server] = {}
        self._connections: dict[str, ServerConnection] = {}
        self._sessions: dict[str, AgentSession] = {}
        self._hello_waiters: dict[str, list[asyncio.Future[Hello]]] = {}
        self._pending: dict[str, asyncio.Future[Result]] = {}
        self._ids = itertools.count(1)
        self._last_replaced: dict[str, float] = {}
        self._refusals: dict[str, tuple[float, str]] = {}
        self._gates: dict[str, _Gate] = {}
        self._retiring: set[asyncio.Task[None]] = set()
        self.replacements: Counter[str] = Counter()
        """Per device: live connections replaced by a newer one (for health and tests)."""

    def socket_path(self, device_id: str) -> Path:
        return self._settings.device_paths(device_id).hub_socket

    def is_connected(self, device_id: str) -> bool:
        session = self._sessions.get(device_id)
        return session is not None and session.hello is not None

    def invalid_frames(self, device_id: str) -> int:
        session = self._sessions.get(device_id)
        return session.invalid_frames if session else 0

    def open_connections(self, device_id: str) -> int:
        """Connections of the device open now (in their handshake, live or being retired)."""
        gate = self._gates.get(device_id)
        return gate.open if gate is not None else 0

    def refusal_since(self, device_id: str, since: float) -> str | None:
        """Why the hub last refused an agent of *device_id*, if after *since* (``time.monotonic()``)."""
        refusal = self._refusals.get(device_id)
        return refusal[1] if refusal is not None and refusal[0] >= since else None

    async def rotate_credential(self, device_id: str) -> None:
        """Give the device a new credential: write its file (0600, device uid), then admit only it.

        The device's directory must exist. Connections already admitted stay; an
        agent re-reads the file when it reconnects. Raises RuntimeDirError when
        the file cannot be written safely (the old credential then stays valid).
        """
        key, data = self._credentials.new_file(device_id)
        await asyncio.to_thread(
            rundir.write_private_file,
            self._settings.runtime_dir,
            device_id,
            AGENT_CREDENTIAL,
            data,
            self._settings.effective_device_uid,
        )
        self._credentials.install(device_id, key)

    async def listen(self, device_id: str) -> Path:
        """Serve *device_id*'s agent on its socket (created 0600, owned by the device uid).

        Issues the device's credential first if this hub has none for it (so a
        new host rotates every device's credential). The device's directory must
        exist (``rundir.make_device_dir``); raises RuntimeDirError when it does not
        or when the socket or the credential cannot be made safely.
        """
        path = self.socket_path(device_id)
        if device_id in self._servers:
            return path
        if device_id not in self._credentials:
            await self.rotate_credential(device_id)
        uid = self._settings.effective_device_uid
        sock = rundir.bind_private_socket(self._settings.runtime_dir, device_id, HUB_SOCKET, uid)
        gate = self._gates.setdefault(device_id, _Gate(device_id))

        class Connection(_GatedConnection):
            pass

        Connection.hub, Connection.device_id, Connection.gate = self, device_id, gate
        try:
            server = await unix_serve(
                lambda connection: self._handle(device_id, connection),
                sock=sock,
                create_connection=Connection,
                process_request=lambda connection, request: self._authorize(device_id, request),
                open_timeout=HANDSHAKE_TIMEOUT,
                max_size=MAX_FRAME_BYTES,
                ping_interval=10,
                ping_timeout=10,
                close_timeout=RETIRE_TIMEOUT,
                logger=_websockets_log,
                # asyncio accepts up to *backlog* connections per loop iteration, and a
                # refused one holds its descriptor for a few iterations: keep it small.
                backlog=ACCEPT_BACKLOG,
            )
        except BaseException:
            sock.close()
            raise
        self._servers[device_id] = server
        return path

    async def close_device(self, device_id: str) -> None:
        """Stop serving the device: revoke its credential, close its connection, remove socket and file."""
        self._credentials.revoke(device_id)
        server = self._servers.pop(device_id, None)
        if server is not None:
            server.close()
            await server.wait_closed()
        self._last_replaced.pop(device_id, None)
        self._refusals.pop(device_id, None)
        gate = self._gates.pop(device_id, None)
        if gate is not None:
            gate.log.flush()
        for name in (HUB_SOCKET, AGENT_CREDENTIAL):
            # Whatever is at the name goes, even a tree the device made there;
            # the credential is revoked already, so a failure is only logged.
            try:
                await asyncio.to_thread(
                    rundir.remove_device_entry, self._settings.runtime_dir, device_id, name
                )
            except RuntimeDirError as exc:
                log.warning("could not remove %s of device %s: %s", name, device_id, exc)

    async def stop(self) -> None:
        for device_id in list(self._servers):
            await self.close_device(device_id)
        for task in list(self._retiring):
            task.cancel()
        await asyncio.gather(*self._retiring, return_exceptions=True)

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
            self._credentials.verify(device_id, token)
        except TokenError as exc:
            return self._refuse(device_id, HTTPStatus.UNAUTHORIZED, str(exc))
        if device_id in self._connections:
            now = time.monotonic()
            interval = self._settings.agent_replace_interval
            since = now - self._last_replaced.get(device_id, -math.inf)
            if since < interval:
                return self._refuse(
                    device_id,
                    HTTPStatus.TOO_MANY_REQUESTS,
                    f"another agent of this device connected {since:.1f}s ago; "
                    f"a connection is replaced at most every {interval:g}s",
                    retry_after=interval - since,
                )
            # Counted here, not in the handler: two connections admitted at once
            # must not both pass as the first replacement.
            self._last_replaced[device_id] = now
        return None

    def _refuse(
        self, device_id: str, status: HTTPStatus, reason: str, *, retry_after: float | None = None
    ) -> Response:
        self._note_refusal(device_id, status, reason)
        return _refusal(status, reason, retry_after)

    def _note_refusal(self, device_id: str, status: HTTPStatus, reason: str) -> None:
        """Log (rate-limited), remember and report a refused connection of the device."""
        gate = self._gates.get(device_id)
        if gate is not None:
            gate.log.warning(status.value, reason)
        else:  # the device was closed while its connection was in its handshake
            log.warning("refused an agent of device %s (HTTP %d): %s", device_id, status.value, reason)
        self._refusals[device_id] = (time.monotonic(), reason)
        self._listener.on_refused(device_id, reason)

    async def _handle(self, device_id: str, connection: ServerConnection) -> None:
        previous = self._connections.get(device_id)
        session = AgentSession(device_id)
        self._sessions[device_id] = session
        self._connections[device_id] = connection
        if previous is not None:
            # A reconnecting agent replaces its stale connection. The old one is
            # closed in the background: a stalled peer must not delay the new one.
            self.replacements[device_id] += 1
            task = asyncio.create_task(_retire(previous), name=f"hub-retire-{device_id}")
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
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


async def _retire(connection: ServerConnection) -> None:
    """Close a replaced connection; abort it if the peer does not answer the close in time."""
    try:
        async with asyncio.timeout(RETIRE_TIMEOUT):
            await connection.close(code=1008, reason="replaced by a new connection")
    except TimeoutError:
        connection.transport.abort()


def _refusal(status: HTTPStatus, reason: str, retry_after: float | None) -> Response:
    body = f"{reason}\n".encode()
    headers = Headers([("Content-Type", "text/plain"), ("Content-Length", str(len(body)))])
    if retry_after is not None:
        headers["Retry-After"] = str(max(1, math.ceil(retry_after)))
    return Response(status.value, status.phrase, headers, body)
