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
  the rest counted in one summary line, so a flood cannot fill the disk;
- a connection's frames are read within a budget of frames and bytes a second
  (:mod:`backend.hub.pacing`), so a flood of frames cannot keep the loop busy.

Commands (:meth:`Hub.command`) belong to the connection they were sent on. Their
ids are random (:mod:`backend.hub.session`), and a result completes a command only
when it arrives on that same connection while the command is pending: a result
with any other id (unknown, late, another connection's or device's) is counted
(:meth:`Hub.stray_results`) and dropped. Many commands may be in flight at once.
When a connection ends (closed, dropped, replaced, keepalive lost, hub stopped),
every command pending on it fails at once with AgentDisconnected, not after its
timeout. Each finished command is reported to :meth:`HubListener.on_command`.

Keepalive: the hub pings every agent every *ping_interval* seconds and drops a
connection whose pong is *ping_timeout* seconds late (None: no pings; tests).
"""

from __future__ import annotations

import asyncio
import logging
import math
import time
from collections import Counter
from dataclasses import dataclass, field
from http import HTTPStatus
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from pydantic_core import PydanticSerializationError
from websockets.asyncio.server import Server, ServerConnection, unix_serve
from websockets.datastructures import Headers
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from agent.protocol import MAX_FRAME_BYTES, MAX_RESULT_BYTES, Event, Hello, Result
from backend.auth.credentials import DeviceCredentials
from backend.auth.exceptions import TokenError
from backend.config import Settings, rundir
from backend.config.exceptions import RuntimeDirError
from backend.config.paths import AGENT_CREDENTIAL, HUB_SOCKET
from backend.hub.exceptions import AgentDisconnected, CommandTimeout, HubError
from backend.hub.pacing import ReadPacing
from backend.hub.session import AgentSession, CommandTooLarge

__all__ = [
    "ACCEPT_BACKLOG",
    "HANDSHAKE_TIMEOUT",
    "MAX_CONNECTIONS_PER_DEVICE",
    "PING_INTERVAL",
    "PING_TIMEOUT",
    "RECEIVE_QUEUE",
    "REFUSALS_LOGGED_PER_SECOND",
    "CommandOutcome",
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
RECEIVE_QUEUE = 1
"""Frames websockets buffers per connection before it stops reading (its ``max_queue``)."""
PING_INTERVAL = 10.0
"""Seconds between keepalive pings to each agent."""
PING_TIMEOUT = 10.0
"""Seconds a pong may be late before the connection is dropped (its commands fail at once)."""


@dataclass(frozen=True, slots=True)
class CommandOutcome:
    """How one :meth:`Hub.command` ended, for :meth:`HubListener.on_command`."""

    name: str
    ok: bool
    """The agent answered and reported success."""
    error: str | None
    """The agent's error, or the hub's (not connected, disconnected, timed out)."""
    duration: float
    """Seconds from the call to its end."""


class HubListener:
    """Callbacks the hub makes on the loop. Override what you need; they must not block."""

    def on_hello(self, device_id: str, hello: Hello) -> None: ...

    def on_event(self, device_id: str, event: Event) -> None: ...

    def on_command(self, device_id: str, outcome: CommandOutcome) -> None: ...

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


@dataclass(eq=False)
class _Link:
    """One admitted connection: its protocol state and the callers waiting for its results."""

    connection: ServerConnection
    session: AgentSession
    waiting: dict[str, asyncio.Future[Result]] = field(default_factory=dict)
    ended: str | None = None
    """Why the connection ended (no command may be sent on it any more)."""

    def end(self, reason: str) -> None:
        """Fail every pending command at once with AgentDisconnected naming *reason*."""
        if self.ended is None:
            self.ended = reason
        # Only the live connection may send screenshot-sized results (see agent.protocol).
        self.connection.protocol.max_message_size = MAX_FRAME_BYTES
        pending = self.session.abandon()
        for command_id, future in list(self.waiting.items()):
            if not future.done():
                name = pending.get(command_id, "?")
                future.set_exception(
                    AgentDisconnected(
                        f"agent disconnected: {self.session.device_id}'s agent {reason} before "
                        f"answering {name!r}"
                    )
                )
        self.waiting.clear()


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

    def __init__(
        self,
        settings: Settings,
        listener: HubListener | None = None,
        *,
        ping_interval: float | None = PING_INTERVAL,
        ping_timeout: float | None = PING_TIMEOUT,
    ) -> None:
        self._settings = settings
        self._listener = listener or HubListener()
        self._ping = (ping_interval, ping_timeout)
        self._credentials = DeviceCredentials(settings.agent_session_ttl)
        self._servers: dict[str, Server] = {}
        self._links: dict[str, _Link] = {}
        """The live connection of each device (the newest admitted)."""
        self._hello_waiters: dict[str, list[asyncio.Future[Hello]]] = {}
        self._counts: dict[str, Counter[str]] = {}
        self._last_replaced: dict[str, float] = {}
        self._refusals: dict[str, tuple[float, str]] = {}
        self._gates: dict[str, _Gate] = {}
        self._retiring: set[asyncio.Task[None]] = set()
        self.replacements: Counter[str] = Counter()
        """Per device: live connections replaced by a newer one (for health and tests)."""

    def socket_path(self, device_id: str) -> Path:
        return self._settings.device_paths(device_id).hub_socket

    def is_connected(self, device_id: str) -> bool:
        link = self._links.get(device_id)
        return link is not None and link.session.hello is not None

    def invalid_frames(self, device_id: str) -> int:
        """Frames of the device's agents refused with an error reply, over all connections."""
        return self._counts.get(device_id, Counter())["invalid_frames"]

    def stray_results(self, device_id: str) -> int:
        """Results of the device's agents that completed nothing (unknown, late, or not this
        connection's id), over all connections."""
        return self._counts.get(device_id, Counter())["stray_results"]

    def pending_commands(self, device_id: str) -> int:
        """Commands sent to the device's live connection and not answered yet."""
        link = self._links.get(device_id)
        return len(link.waiting) if link is not None else 0

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
                # Raised to MAX_RESULT_BYTES for the live connection once it said
                # hello; see agent.protocol for the memory this bounds.
                max_size=MAX_FRAME_BYTES,
                max_queue=RECEIVE_QUEUE,
                # Over a unix socket compression saves nothing, and costs every
                # connection its zlib state (the memory of 1,000 idle agents).
                compression=None,
                ping_interval=self._ping[0],
                ping_timeout=self._ping[1],
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
        link = self._links.get(device_id)
        if link is not None:
            link.end("was closed by the hub (the device is no longer served)")
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
        link = self._links.get(device_id)
        if link is not None and link.session.hello is not None:
            return link.session.hello
        future: asyncio.Future[Hello] = asyncio.get_running_loop().create_future()
        self._hello_waiters.setdefault(device_id, []).append(future)
        try:
            return await asyncio.wait_for(future, timeout)
        finally:
            waiters = self._hello_waiters.get(device_id, [])
            if future in waiters:
                waiters.remove(future)

    async def command(self, device_id: str, name: str, args: dict[str, Any], timeout: float = 30.0) -> Result:
        """Send command *name* to the device's live agent and return its result.

        The result says whether the agent succeeded (``ok``, ``error``). Raises
        AgentDisconnected at once when no agent is connected, or as soon as the
        connection the command was sent on ends; CommandTimeout when no result
        came within *timeout* seconds (a result arriving later is dropped);
        HubError for a command that cannot be encoded (bad name, arguments that are
        not JSON, too large); nothing is sent then.
        Every call ends in one :meth:`HubListener.on_command`.
        """
        started = time.monotonic()
        result: Result | None = None
        error: str | None = None
        try:
            result = await self._command(device_id, name, args, timeout)
            error = result.error if not result.ok else None
            return result
        except HubError as exc:
            error = str(exc)
            raise
        except asyncio.CancelledError:
            error = "cancelled"
            raise
        finally:
            ok = result is not None and result.ok
            outcome = CommandOutcome(name, ok, error, time.monotonic() - started)
            try:
                self._listener.on_command(device_id, outcome)
            except Exception:
                log.exception("hub listener failed on a command of device %s", device_id)

    async def _command(self, device_id: str, name: str, args: dict[str, Any], timeout: float) -> Result:
        link = self._links.get(device_id)
        if link is None or link.session.hello is None or link.ended is not None:
            raise AgentDisconnected(
                f"agent disconnected: the agent of device {device_id} is not connected (not started "
                f"yet, or reconnecting); {name!r} was not sent"
            )
        try:
            command_id, frame = link.session.command(name, args)
        except (CommandTooLarge, ValidationError, PydanticSerializationError) as exc:
            raise HubError(f"cannot send {name!r} to device {device_id}: {exc}") from exc
        future: asyncio.Future[Result] = asyncio.get_running_loop().create_future()
        link.waiting[command_id] = future
        try:
            async with asyncio.timeout(timeout):
                await link.connection.send(frame)
                return await future
        except TimeoutError as exc:
            raise CommandTimeout(f"device {device_id} did not answer {name!r} within {timeout:g}s") from exc
        except ConnectionClosed as exc:
            link.end("dropped its connection")
            raise AgentDisconnected(
                f"agent disconnected: {device_id}'s agent dropped its connection before answering {name!r}"
            ) from exc
        finally:
            link.waiting.pop(command_id, None)
            link.session.forget(command_id)
            if future.done() and not future.cancelled():
                future.exception()  # retrieved: a failure raced with the timeout is not "never retrieved"

    def _authorize(self, device_id: str, request: Request) -> Response | None:
        header = request.headers.get("Authorization", "")
        token = header.removeprefix("Bearer ").strip()
        try:
            self._credentials.verify(device_id, token)
        except TokenError as exc:
            return self._refuse(device_id, HTTPStatus.UNAUTHORIZED, str(exc))
        if device_id in self._links:
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
        previous = self._links.get(device_id)
        link = _Link(connection, AgentSession(device_id, self._counts.setdefault(device_id, Counter())))
        self._links[device_id] = link
        if previous is not None:
            # A reconnecting agent replaces its stale connection. The old one is
            # closed in the background: a stalled peer must not delay the new one.
            log.info("a new agent connection of device %s replaces the live one", device_id)
            self.replacements[device_id] += 1
            previous.end("was replaced by a new connection")
            task = asyncio.create_task(_retire(previous.connection), name=f"hub-retire-{device_id}")
            self._retiring.add(task)
            task.add_done_callback(self._retiring.discard)
        pacing = ReadPacing()
        try:
            async for frame in connection:
                received = link.session.receive(frame)
                for reply in received.replies:
                    await connection.send(reply)
                self._dispatch(device_id, link, received.message)
                pause = pacing.spend(len(frame))
                if pause:
                    await asyncio.sleep(pause)  # a flooding device waits; see hub.pacing
        except ConnectionClosed:
            pass
        finally:
            link.end("dropped its connection")
            if self._links.get(device_id) is link:
                del self._links[device_id]
                self._listener.on_disconnect(device_id)

    def _dispatch(self, device_id: str, link: _Link, message: Hello | Event | Result | None) -> None:
        if isinstance(message, Hello):
            if link.ended is None:
                link.connection.protocol.max_message_size = MAX_RESULT_BYTES
            for future in self._hello_waiters.pop(device_id, []):
                if not future.done():
                    future.set_result(message)
            self._listener.on_hello(device_id, message)
        elif isinstance(message, Result):
            # The session passes on only results of commands pending on this link.
            pending = link.waiting.get(message.id)
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
