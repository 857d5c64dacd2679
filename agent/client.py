"""The agent's connection to the hub: hello, commands, events, reconnect with backoff.

The agent runs inside a device container and reaches the hub only through the
unix socket in the device's runtime directory. Before every attempt it reads the
device's credential file and derives a fresh session token from it (formats in
:mod:`agent.protocol`). It never imports ``backend``.

Commands: each ``command`` message runs in its own task, so several are in
flight at once (at most *max_in_flight*; more are refused at once). Arguments
are validated against :mod:`agent.commands` before the driver sees them; a bad
argument, an unknown or unsupported command name, or a failing driver all give
``ok=false`` with a one-line error. ``ping`` is answered here, even when the
driver is down. Commands still running when the connection drops are cancelled:
the hub has failed them already (``agent disconnected``).

Events: :meth:`AgentClient.emit` queues one, connected or not, in an
:class:`agent.events.EventBuffer`; they go out in order after ``hello``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Callable, Coroutine
from typing import Any

from pydantic import ValidationError
from websockets.asyncio.client import ClientConnection, unix_connect
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from agent import __version__
from agent.commands import COMMANDS, Ping, parse_command
from agent.drivers.base import Driver
from agent.events import DEFAULT_CAPACITY, EventBuffer
from agent.exceptions import AgentError
from agent.protocol import (
    MAX_FRAME_BYTES,
    Command,
    ErrorMessage,
    Event,
    Hello,
    ProtocolError,
    Result,
    decode,
    decode_credential,
    encode,
    session_token,
)

__all__ = ["DEFAULT_MAX_IN_FLIGHT", "AgentClient"]

log = logging.getLogger(__name__)

DEFAULT_MAX_IN_FLIGHT = 64
_Send = Callable[[str], Coroutine[Any, Any, None]]
_DRIVER_GRACE = 5.0
"""Seconds a driver may overrun a command's own timeout before the client gives up on it."""


class AgentClient:
    """Keeps one connection to the hub alive until :meth:`stop`.

    *credential_path* is the device's credential file, re-read before every
    attempt. Backoff between attempts doubles from 0.1 s up to *max_backoff*,
    with jitter, and resets after a connection that got as far as hello; a hub
    that answers 429 (another connection of this device was admitted just now)
    is retried no sooner than its ``Retry-After``. Every refusal is logged with
    the hub's reason; :attr:`last_refusal` keeps the latest.

    *driver* runs the commands (its names are the ``hello`` capabilities);
    without one the agent answers ``ping`` only. The client does not start or
    stop the driver.
    """

    def __init__(
        self,
        socket_path: str,
        device_id: str,
        credential_path: str,
        *,
        driver: Driver | None = None,
        max_backoff: float = 5.0,
        event_capacity: int = DEFAULT_CAPACITY,
        max_in_flight: int = DEFAULT_MAX_IN_FLIGHT,
    ) -> None:
        self._socket_path = socket_path
        self._device_id = device_id
        self._credential_path = credential_path
        self._driver = driver
        self._supported = set(driver.commands) if driver is not None else {Ping.name}
        self._max_backoff = max_backoff
        self._max_in_flight = max_in_flight
        self._stopping = asyncio.Event()
        self._events = EventBuffer(event_capacity)
        self._events_waiting = asyncio.Event()
        self._in_flight: set[asyncio.Task[None]] = set()
        self.connections = 0
        self.last_refusal: str | None = None

    @property
    def capabilities(self) -> list[str]:
        """The command names announced in ``hello``."""
        return sorted(self._supported)

    @property
    def events(self) -> EventBuffer:
        """Events not sent yet (read-only use: tests and diagnostics)."""
        return self._events

    @property
    def in_flight(self) -> int:
        """Commands running now."""
        return len(self._in_flight)

    def emit(self, kind: str, data: dict[str, Any]) -> None:
        """Queue an event for the hub (kinds of :class:`agent.protocol.Event`). Never blocks.

        Raises ValueError for a kind the protocol does not know.
        """
        try:
            event = Event(kind=kind, data=data)  # type: ignore[arg-type]  # validated here
        except ValidationError as exc:
            raise ValueError(f"not an agent event: {exc.errors()[0]['msg']}") from exc
        self._events.append(event)
        self._events_waiting.set()

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        backoff = 0.1
        while not self._stopping.is_set():
            not_before = 0.0
            try:
                token = await self._session_token()
                async with unix_connect(
                    self._socket_path,
                    uri="ws://corral-hub/agent",
                    additional_headers={"Authorization": f"Bearer {token}"},
                    max_size=MAX_FRAME_BYTES,
                    ping_interval=10,
                    open_timeout=5,
                    close_timeout=1,
                ) as connection:
                    self.connections += 1
                    self.last_refusal = None
                    backoff = 0.1
                    await self._serve(connection)
            except InvalidStatus as exc:
                not_before = self._refused(exc)
            except _CredentialMissing as exc:
                log.info("%s; retrying", exc)
            except _CredentialUnavailable as exc:
                log.error("%s; retrying", exc)
            except (OSError, ConnectionClosed, InvalidURI, InvalidHandshake, TimeoutError) as exc:
                log.info("hub not reachable (%s); retrying", exc)
            if self._stopping.is_set():
                break
            delay = max(not_before, backoff * random.uniform(0.5, 1.0))
            backoff = min(self._max_backoff, backoff * 2)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)

    async def _session_token(self) -> str:
        try:
            data = await asyncio.to_thread(_read_small, self._credential_path)
        except FileNotFoundError as exc:
            # Normal while the host is down or has not served this device yet.
            raise _CredentialMissing(
                f"no agent credential at {self._credential_path} yet (the host writes it when it serves"
                " the device)"
            ) from exc
        except OSError as exc:
            raise _CredentialUnavailable(
                f"cannot read the agent credential {self._credential_path}: {exc.strerror or exc}"
                " (the host writes it when it provisions the device)"
            ) from exc
        try:
            credential = decode_credential(data)
        except ProtocolError as exc:
            raise _CredentialUnavailable(f"{self._credential_path}: {exc}") from exc
        if credential.device_id != self._device_id:
            raise _CredentialUnavailable(
                f"{self._credential_path} is for device {credential.device_id}, not {self._device_id}"
            )
        return session_token(credential)

    def _refused(self, exc: InvalidStatus) -> float:
        """Log the hub's refusal; return the least delay before the next attempt."""
        response = exc.response
        reason = response.body.decode(errors="replace").strip()[:300] if response.body else ""
        self.last_refusal = f"HTTP {response.status_code}: {reason or response.reason_phrase}"
        if response.status_code in (401, 403):
            log.error(
                "hub refused the agent (%s); re-reading %s before the next attempt",
                self.last_refusal,
                self._credential_path,
            )
            return 0.0
        if response.status_code == 429:
            log.warning("hub refused the agent for now (%s)", self.last_refusal)
            retry_after = response.headers.get("Retry-After", "")
            return float(retry_after) * random.uniform(1.0, 1.5) if retry_after.isdigit() else 0.0
        log.error("hub refused the agent (%s)", self.last_refusal)
        return 0.0

    async def _serve(self, connection: ClientConnection) -> None:
        hello = Hello(device_id=self._device_id, agent_version=__version__, capabilities=self.capabilities)
        send_lock = asyncio.Lock()

        async def send(frame: str) -> None:
            async with send_lock:
                await connection.send(frame)

        await send(encode(hello))
        stop = asyncio.ensure_future(self._stopping.wait())
        sender = asyncio.create_task(self._send_events(send), name="agent-events")
        try:
            while True:
                receive = asyncio.ensure_future(connection.recv())
                done, _ = await asyncio.wait({receive, stop, sender}, return_when=asyncio.FIRST_COMPLETED)
                if stop in done:
                    receive.cancel()
                    await connection.close()
                    return
                if sender in done:
                    receive.cancel()
                    sender.result()  # ConnectionClosed: reconnect
                    return
                self._dispatch(receive.result(), send)
        finally:
            stop.cancel()
            sender.cancel()
            tasks = [*self._in_flight, sender]
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)

    async def _send_events(self, send: _Send) -> None:
        """Send queued events in order until the connection closes."""
        while True:
            event = self._events.peek()
            if event is None:
                self._events_waiting.clear()
                await self._events_waiting.wait()
                continue
            await send(encode(event))
            self._events.pop(event)

    def _dispatch(self, frame: str | bytes, send: _Send) -> None:
        try:
            message = decode(frame)
        except ProtocolError as exc:
            log.warning("hub sent an invalid frame: %s", exc)
            self._spawn(send(encode(ErrorMessage(code=exc.code, message=str(exc)))))
            return
        if isinstance(message, ErrorMessage):
            log.warning("hub reported %s: %s", message.code, message.message)
            return
        if not isinstance(message, Command):
            return
        if len(self._in_flight) >= self._max_in_flight:
            error = f"{message.name}: the agent already runs {self._max_in_flight} commands; try again later"
            self._spawn(send(encode(Result(id=message.id, ok=False, error=error))))
            return
        self._spawn(self._execute(message, send))

    def _spawn(self, work: Coroutine[Any, Any, None]) -> None:
        task: asyncio.Task[None] = asyncio.create_task(work)
        self._in_flight.add(task)
        task.add_done_callback(self._in_flight.discard)

    async def _execute(self, message: Command, send: _Send) -> None:
        result = await self._result_of(message)
        frame = encode(result)
        if len(frame) > MAX_FRAME_BYTES:
            error = (
                f"{message.name}: the result ({len(frame)} bytes) exceeds the"
                f" {MAX_FRAME_BYTES}-byte frame limit"
            )
            frame = encode(Result(id=message.id, ok=False, error=error))
        with contextlib.suppress(ConnectionClosed):
            await send(frame)

    async def _result_of(self, message: Command) -> Result:
        name = message.name
        if name not in COMMANDS:
            return Result(id=message.id, ok=False, error=f"unknown command {name!r}")
        if name not in self._supported:
            if self._driver is None:
                error = f"command {name!r} is not supported by an agent without a driver"
            else:
                error = f"command {name!r} is not supported on {self._driver.kind} devices"
            return Result(id=message.id, ok=False, error=error)
        try:
            command = parse_command(name, message.args)
        except ValidationError as exc:
            return Result(id=message.id, ok=False, error=f"{name}: {_first_problem(exc)}")
        try:
            if isinstance(command, Ping) or self._driver is None:
                data: Any = {"pong": time.time()}
            else:
                async with asyncio.timeout(command.timeout + _DRIVER_GRACE):
                    data = await self._driver.run(command)
        except AgentError as exc:
            return Result(id=message.id, ok=False, error=str(exc))
        except TimeoutError:
            return Result(
                id=message.id, ok=False, error=f"{name}: did not finish within {command.timeout:g}s"
            )
        except Exception as exc:  # a driver bug: say what it was, keep serving
            log.exception("command %s failed unexpectedly", name)
            return Result(id=message.id, ok=False, error=f"{name}: {type(exc).__name__}: {exc}")
        return Result(id=message.id, ok=True, data=data)


def _first_problem(exc: ValidationError) -> str:
    """One line for the first thing wrong with a command's arguments."""
    first = exc.errors()[0]
    where = ".".join(str(part) for part in first["loc"]) or "arguments"
    message = first["msg"].removeprefix("Value error, ")
    return f"{where}: {message}"


class _CredentialUnavailable(Exception):
    """The credential file is unreadable or not a credential for this device."""


class _CredentialMissing(_CredentialUnavailable):
    """There is no credential file (yet)."""


def _read_small(path: str, limit: int = 4096) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(limit)
