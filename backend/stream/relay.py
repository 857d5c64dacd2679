"""The stream proxy process: ``python -m backend.stream.relay``.

One process, one asyncio loop, every pane: a WebSocket server (``websockets``)
on the inherited loopback listener relays each admitted pane to its device's
``vnc.sock``. One process is what makes the replay guard work (every token is
seen by the same :class:`Admission`) and what bounds a hostile local user:

- a request must complete its WebSocket handshake within HANDSHAKE_TIMEOUT
  seconds, or it is dropped;
- at most MAX_HANDSHAKES connections may be in their handshake at once, so a
  flood costs this process a known amount of memory and never a process per
  connection. A connection that arrives when they are all taken evicts the
  oldest one that has not sent its whole request yet (see ``_Handshakes``);
- an admitted connection holds at most a known amount of memory: a read
  buffer of READ_BUFFER bytes (``_DeviceLink``), the socket's write limit,
  CLIENT_MAX_MESSAGE x CLIENT_MAX_QUEUE of unread client messages, and the
  view filter's MAX_PENDING.

Contract with the parent (``backend.stream.proxy``):

- ``--listen-fd``: an already listening TCP socket on a loopback address,
  inherited from the parent, which keeps it (and its port) across restarts.
- ``--secret-file``: the signing secret's file (the secret never travels on a
  command line); ``--runtime-dir``: the devices' runtime root; ``--token-ttl``
  and ``--not-before``: see ``Admission`` (tokens issued before the previous
  relay died are refused, since its replay guard died with it).
- stdout: exactly one line, ``ready_line(port)``, once connections are served;
  afterwards stdout goes to stderr.
- stderr: whatever escapes logging (tracebacks); the parent forwards it.
- ``--log-file``: refusals (at most REFUSALS_LOGGED_PER_SECOND a second),
  closes for cause and errors, never a token; opened 0600 and never through a
  symlink (``backend.stream.logfile``).
- SIGTERM closes every stream and exits. The process also gets SIGTERM when its
  parent dies (Linux), so a killed app does not leave the port open.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import ctypes
import ipaddress
import logging
import os
import re
import signal
import socket
import sys
import time
from http import HTTPStatus
from pathlib import Path

from websockets import http11
from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response

from backend.config.exceptions import ConfigError
from backend.config.paths import VNC_SOCKET
from backend.config.rundir import connect_socket
from backend.stream.admission import Admission, Ticket
from backend.stream.exceptions import RfbViolation, StreamRefused
from backend.stream.logfile import open_private_log
from backend.stream.ready import ready_line
from backend.stream.rfb_filter import ViewFilter

__all__ = [
    "CLIENT_MAX_MESSAGE",
    "CLIENT_MAX_QUEUE",
    "CONNECT_TIMEOUT",
    "HANDSHAKE_TIMEOUT",
    "MAX_HANDSHAKES",
    "READ_BUFFER",
    "main",
]

logger = logging.getLogger("backend.stream.relay")

HANDSHAKE_TIMEOUT = 3.0
"""Seconds a connection gets to complete its WebSocket handshake."""
MAX_HANDSHAKES = 64
"""Connections allowed in their handshake at once; a new one evicts the oldest still sending its request."""
CONNECT_TIMEOUT = 5.0
"""Seconds to connect to a device's VNC socket."""
READ_BUFFER = 1 << 20
"""Most bytes read from a device and sent as one WebSocket message."""
CLIENT_MAX_MESSAGE = 1 << 20
"""Largest WebSocket message a pane may send (a clipboard paste in control)."""
CLIENT_MAX_QUEUE = 4
"""Pane messages received but not yet relayed before reading from the pane pauses."""
CLOSE_TIMEOUT = 1.0
REFUSALS_LOGGED_PER_SECOND = 10

_TOKEN_TEXT = re.compile(r"(token=)[^&\s'\"]+|v2\.[a-z]+\.[a-z0-9-]+\.\d+\.[A-Za-z0-9_-]+(\.[A-Za-z0-9_-]+)?")


# A handshake request may hold at most 32 lines of 4 KiB (noVNC sends ~10
# short headers): what a connection in its handshake can cost is known.
# websockets reads these module globals on every request.
http11.MAX_NUM_HEADERS = 32
http11.MAX_LINE_LENGTH = 4096


class _Connection(ServerConnection):
    """A pane's connection: reports when its handshake starts and ends, and holds its ticket."""

    relay: _Relay
    ticket: Ticket | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        super().connection_made(transport)
        self.relay.handshakes.started(self)

    def connection_lost(self, exc: Exception | None) -> None:
        self.relay.handshakes.ended(self)
        super().connection_lost(exc)


class _Handshakes:
    """The connections in their WebSocket handshake: at most MAX_HANDSHAKES, oldest first.

    When all are taken, a new connection evicts (aborts) the oldest one that has
    not sent its whole request, so a local user who keeps the slots full of
    half-sent requests keeps no pane out: a pane sends its request at once and
    is through its handshake in about a millisecond, and a flooder would have to
    open MAX_HANDSHAKES connections within that time to evict it. (Refusing the
    newcomer instead, as before, let 64 renewed half-sent requests keep every
    pane out.) A connection whose request has arrived is never evicted: its
    token is being, or has been, used, and it leaves within a turn of the loop.
    Only if every slot holds such a connection is the newcomer refused.
    """

    def __init__(self, refusals: _RefusalLog) -> None:
        self._connections: dict[_Connection, None] = {}  # insertion-ordered: the oldest first
        self._refusals = refusals

    def __len__(self) -> int:
        return len(self._connections)

    def started(self, connection: _Connection) -> None:
        """Count *connection* in, evicting the oldest half-sent one (or refusing it) when full."""
        if len(self._connections) >= MAX_HANDSHAKES:
            oldest = next((c for c in self._connections if c.request is None), None)
            if oldest is None:
                connection.transport.abort()
                self._refusals.warning(
                    "refused a stream connection: %d handshakes in progress", len(self._connections)
                )
                return
            del self._connections[oldest]
            oldest.transport.abort()
            self._refusals.warning(
                "dropped the oldest unfinished request: %d handshakes in progress", MAX_HANDSHAKES
            )
        self._connections[connection] = None

    def ended(self, connection: _Connection) -> None:
        """Count *connection* out (its handshake is done, or it closed); once is enough."""
        self._connections.pop(connection, None)


class _RefusalLog:
    """Logs at most REFUSALS_LOGGED_PER_SECOND refusals a second and counts the rest.

    Anyone on the host can make the relay refuse connections as fast as they
    can open them; that must not fill the disk.
    """

    def __init__(self) -> None:
        self._second = 0.0
        self._logged = 0
        self._unlogged = 0

    def warning(self, message: str, *args: object) -> None:
        now = time.monotonic()
        if now - self._second >= 1.0:
            if self._unlogged:
                logger.warning("%d more refusals in the last second were not logged", self._unlogged)
            self._second, self._logged, self._unlogged = now, 0, 0
        if self._logged < REFUSALS_LOGGED_PER_SECOND:
            self._logged += 1
            logger.warning(message, *args)
        else:
            self._unlogged += 1


class _Relay:
    """Admits panes and pumps bytes between each and its device."""

    def __init__(self, admission: Admission, runtime_dir: Path) -> None:
        self._admission = admission
        self._runtime_dir = runtime_dir
        self._refusals = _RefusalLog()
        self.handshakes = _Handshakes(self._refusals)

    def process_request(self, connection: ServerConnection, request: Request) -> Response | None:
        """Admit the request or answer 403, before any device socket is touched."""
        assert isinstance(connection, _Connection)
        try:
            connection.ticket = self._admission.admit(request.path)
        except StreamRefused as exc:
            self._refusals.warning("refused a stream connection: %s", exc)
            return connection.respond(HTTPStatus.FORBIDDEN, "Forbidden\n")
        return None

    # -- an admitted pane ---------------------------------------------------------

    async def handle(self, connection: ServerConnection) -> None:
        assert isinstance(connection, _Connection)
        self.handshakes.ended(connection)
        ticket = connection.ticket
        assert ticket is not None
        try:
            device = await asyncio.to_thread(
                connect_socket, self._runtime_dir, ticket.device_id, VNC_SOCKET, CONNECT_TIMEOUT
            )
        except (ConfigError, OSError) as exc:
            logger.warning("device %s has no screen to stream: %s", ticket.device_id, exc)
            await connection.close(1011, "device unavailable")
            return
        loop = asyncio.get_running_loop()
        try:
            transport, device_link = await loop.create_unix_connection(_DeviceLink, sock=device)
        except OSError as exc:
            device.close()
            logger.warning("device %s has no screen to stream: %s", ticket.device_id, exc)
            await connection.close(1011, "device unavailable")
            return
        view_filter = ViewFilter() if ticket.scope == "view" else None
        pumps = {
            asyncio.create_task(_device_to_pane(device_link, connection), name="device-to-pane"),
            asyncio.create_task(_pane_to_device(connection, device_link, view_filter), name="pane-to-device"),
        }
        try:
            done, _ = await asyncio.wait(pumps, return_when=asyncio.FIRST_COMPLETED)
            for task in done:
                task.result()  # raises what ended the pump
        except RfbViolation as exc:
            logger.warning("closed a view stream of %s: %s", ticket.device_id, exc)
            await connection.close(1008, "view only")
        except (ConnectionClosed, OSError):
            pass
        finally:
            for task in pumps:
                task.cancel()
            await asyncio.gather(*pumps, return_exceptions=True)
            transport.close()
        await connection.close()


class _DeviceLink(asyncio.BufferedProtocol):
    """The device's VNC socket: what it writes gathers in one buffer; writes wait when it is full.

    The socket stays registered with the loop for its whole life and the
    transport reads straight into the buffer, so a screen update costs one
    wake-up of the pump, and everything that arrived before the pump ran goes
    out as one WebSocket message: a VNC server writes an update in several
    pieces, and one message per piece was ~9 wake-ups per update for this
    process, the browser's network service and the pane's JavaScript. Nothing
    waits for more data, so latency stays that of a plain read. At most
    READ_BUFFER bytes are held; reading pauses when they are.
    """

    def __init__(self) -> None:
        self._buffer = bytearray(READ_BUFFER)
        self._view = memoryview(self._buffer)
        self._size = 0
        self._eof = False
        self._paused = False
        self._readable = asyncio.Event()
        self._writable = asyncio.Event()
        self._writable.set()
        self._transport: asyncio.Transport | None = None

    # -- asyncio callbacks ------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        assert isinstance(transport, asyncio.Transport)
        self._transport = transport

    def get_buffer(self, sizehint: int) -> memoryview:
        return self._view[self._size :]

    def buffer_updated(self, nbytes: int) -> None:
        self._size += nbytes
        if self._size == READ_BUFFER and self._transport is not None:
            self._transport.pause_reading()
            self._paused = True
        self._readable.set()

    def eof_received(self) -> bool:
        self._eof = True
        self._readable.set()
        return False

    def connection_lost(self, exc: Exception | None) -> None:
        self._eof = True
        self._readable.set()
        self._writable.set()

    def pause_writing(self) -> None:
        self._writable.clear()

    def resume_writing(self) -> None:
        self._writable.set()

    # -- the pumps' side -----------------------------------------------------------

    async def wait_readable(self) -> memoryview:
        """Everything read so far (empty at end of stream); call consume() once it is sent."""
        while self._size == 0 and not self._eof:
            self._readable.clear()
            await self._readable.wait()
        return self._view[: self._size]

    def consume(self, size: int) -> None:
        """Forget the first *size* bytes (sent); keep what arrived meanwhile."""
        rest = self._size - size
        self._buffer[:rest] = self._buffer[size : self._size]  # same length: no resize of an exported buffer
        self._size = rest
        if self._paused and self._transport is not None:
            self._paused = False
            self._transport.resume_reading()

    async def write(self, data: bytes) -> None:
        """Write *data*; wait while the device is not reading. Raises ConnectionResetError once closed."""
        if self._transport is None or self._transport.is_closing():
            raise ConnectionResetError("the device closed its VNC socket")
        self._transport.write(data)
        await self._writable.wait()


async def _device_to_pane(device: _DeviceLink, connection: ServerConnection) -> None:
    while data := await device.wait_readable():
        # send() frames (copies) the bytes before its first pause: what the
        # device writes meanwhile lands after them in the buffer.
        await connection.send(data)
        device.consume(len(data))


async def _pane_to_device(
    connection: ServerConnection, device: _DeviceLink, view_filter: ViewFilter | None
) -> None:
    async for message in connection:
        if isinstance(message, str):
            raise RfbViolation("a text message on an RFB stream")
        data = message if view_filter is None else view_filter.feed(message)
        if data:
            await device.write(data)


def _redact(match: re.Match[str]) -> str:
    return f"{match.group(1)}<redacted>" if match.group(1) else "<redacted>"


class _RedactingFilter(logging.Filter):
    """Blanks out anything that looks like a token, in case a message ever carries one."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.msg = _TOKEN_TEXT.sub(_redact, record.getMessage())
        record.args = None
        return True


async def _serve(listener: socket.socket, relay: _Relay) -> None:
    class Connection(_Connection):
        pass

    Connection.relay = relay
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    server: Server = await serve(
        relay.handle,
        sock=listener,
        create_connection=Connection,
        process_request=relay.process_request,
        open_timeout=HANDSHAKE_TIMEOUT,
        close_timeout=CLOSE_TIMEOUT,
        ping_interval=None,
        compression=None,
        max_size=CLIENT_MAX_MESSAGE,
        max_queue=CLIENT_MAX_QUEUE,
        server_header=None,
    )
    os.write(sys.stdout.fileno(), ready_line(listener.getsockname()[1]))
    # Nobody reads stdout after the ready line; send strays to stderr instead.
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())
    await stop.wait()
    server.close()
    with contextlib.suppress(TimeoutError):
        await asyncio.wait_for(server.wait_closed(), CLOSE_TIMEOUT * 2)


def _die_with_parent(parent_pid: int) -> None:
    if sys.platform != "linux":
        return
    pr_set_pdeathsig = 1
    ctypes.CDLL(None, use_errno=True).prctl(pr_set_pdeathsig, signal.SIGTERM)
    if os.getppid() != parent_pid:  # the parent died before prctl took effect
        sys.exit(0)


def _configure_logging(log_file: Path) -> None:
    handler = logging.StreamHandler(open_private_log(log_file))
    handler.setFormatter(logging.Formatter("%(asctime)s %(process)d %(levelname)s %(name)s: %(message)s"))
    handler.addFilter(_RedactingFilter())
    root = logging.getLogger()
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    # websockets logs every rejected or failed handshake at INFO: a flood would fill the disk.
    logging.getLogger("websockets").setLevel(logging.WARNING)


def _listener(listen_fd: int) -> socket.socket:
    """The inherited socket; exits unless it is an IPv4 loopback listener."""
    sock = socket.socket(fileno=listen_fd)
    host, port = sock.getsockname()[:2]
    if sock.family != socket.AF_INET or not ipaddress.ip_address(host).is_loopback:
        sys.exit(f"refusing to serve on {host}:{port}, not an IPv4 loopback address")
    sock.setblocking(False)
    return sock


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m backend.stream.relay")
    parser.add_argument("--listen-fd", type=int, required=True)
    parser.add_argument("--secret-file", type=Path, required=True)
    parser.add_argument("--runtime-dir", type=Path, required=True)
    parser.add_argument("--log-file", type=Path, required=True)
    parser.add_argument("--parent-pid", type=int, required=True)
    parser.add_argument("--token-ttl", type=int, required=True)
    parser.add_argument("--not-before", type=int, required=True)
    args = parser.parse_args(argv)

    _die_with_parent(args.parent_pid)
    listener = _listener(args.listen_fd)
    try:
        _configure_logging(args.log_file)
    except OSError as exc:
        print(f"cannot open the log file: {exc}", file=sys.stderr)
        return 2
    try:
        admission = Admission(
            args.secret_file.read_bytes(), token_ttl=args.token_ttl, not_before=args.not_before
        )
    except (ValueError, OSError) as exc:
        print(f"cannot use the signing secret {args.secret_file}: {exc}", file=sys.stderr)
        return 2
    asyncio.run(_serve(listener, _Relay(admission, args.runtime_dir)))
    return 0


if __name__ == "__main__":
    sys.exit(main())
