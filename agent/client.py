"""The agent's connection to the hub: hello, answer commands, reconnect with backoff.

The agent runs inside a device container and reaches the hub only through the
unix socket in the device's runtime directory. It never imports ``backend``.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import random
import time
from collections.abc import Awaitable, Callable
from typing import Any

from websockets.asyncio.client import ClientConnection, unix_connect
from websockets.exceptions import ConnectionClosed, InvalidStatus, InvalidURI

from agent import __version__
from agent.protocol import (
    MAX_FRAME_BYTES,
    Command,
    ErrorMessage,
    Hello,
    ProtocolError,
    Result,
    decode,
    encode,
)

__all__ = ["AgentClient", "CommandHandler"]

log = logging.getLogger(__name__)

CommandHandler = Callable[[dict[str, Any]], Awaitable[Any]]


async def _ping(_args: dict[str, Any]) -> Any:
    return {"pong": time.time()}


class AgentClient:
    """Keeps one connection to the hub alive until :meth:`stop`.

    Backoff between attempts doubles from 0.1 s up to *max_backoff*, with jitter,
    and resets after a connection that got as far as hello.
    """

    def __init__(
        self,
        socket_path: str,
        device_id: str,
        token: str,
        *,
        capabilities: list[str] | None = None,
        max_backoff: float = 5.0,
    ) -> None:
        self._socket_path = socket_path
        self._device_id = device_id
        self._token = token
        self._capabilities = capabilities or ["ping"]
        self._max_backoff = max_backoff
        self._commands: dict[str, CommandHandler] = {"ping": _ping}
        self._stopping = asyncio.Event()
        self.connections = 0

    def register(self, name: str, handler: CommandHandler) -> None:
        self._commands[name] = handler

    def stop(self) -> None:
        self._stopping.set()

    async def run(self) -> None:
        backoff = 0.1
        while not self._stopping.is_set():
            try:
                async with unix_connect(
                    self._socket_path,
                    uri="ws://corral-hub/agent",
                    additional_headers={"Authorization": f"Bearer {self._token}"},
                    max_size=MAX_FRAME_BYTES,
                    ping_interval=10,
                    open_timeout=5,
                ) as connection:
                    self.connections += 1
                    backoff = 0.1
                    await self._serve(connection)
            except InvalidStatus as exc:
                log.error("hub refused the agent: HTTP %s", exc.response.status_code)
            except (OSError, ConnectionClosed, InvalidURI, TimeoutError) as exc:
                log.info("hub not reachable (%s); retrying", exc)
            if self._stopping.is_set():
                break
            delay = backoff * random.uniform(0.5, 1.0)
            backoff = min(self._max_backoff, backoff * 2)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._stopping.wait(), delay)

    async def _serve(self, connection: ClientConnection) -> None:
        hello = Hello(device_id=self._device_id, agent_version=__version__, capabilities=self._capabilities)
        await connection.send(encode(hello))
        stop = asyncio.ensure_future(self._stopping.wait())
        try:
            while True:
                receive = asyncio.ensure_future(connection.recv())
                done, _ = await asyncio.wait({receive, stop}, return_when=asyncio.FIRST_COMPLETED)
                if stop in done:
                    receive.cancel()
                    await connection.close()
                    return
                reply = await self._reply(receive.result())
                if reply is not None:
                    await connection.send(reply)
        finally:
            stop.cancel()

    async def _reply(self, frame: str | bytes) -> str | None:
        try:
            message = decode(frame)
        except ProtocolError as exc:
            log.warning("hub sent an invalid frame: %s", exc)
            return encode(ErrorMessage(code=exc.code, message=str(exc)))
        if isinstance(message, ErrorMessage):
            log.warning("hub reported %s: %s", message.code, message.message)
            return None
        if not isinstance(message, Command):
            return None
        handler = self._commands.get(message.name)
        if handler is None:
            return encode(Result(id=message.id, ok=False, error=f"unknown command {message.name!r}"))
        try:
            data = await handler(message.args)
        except Exception as exc:
            return encode(Result(id=message.id, ok=False, error=f"{type(exc).__name__}: {exc}"))
        return encode(Result(id=message.id, ok=True, data=data))
