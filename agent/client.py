"""The agent's connection to the hub: hello, answer commands, reconnect with backoff.

The agent runs inside a device container and reaches the hub only through the
unix socket in the device's runtime directory. Before every attempt it reads the
device's credential file and derives a fresh session token from it (formats in
:mod:`agent.protocol`). It never imports ``backend``.
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
from websockets.exceptions import ConnectionClosed, InvalidHandshake, InvalidStatus, InvalidURI

from agent import __version__
from agent.protocol import (
    MAX_FRAME_BYTES,
    Command,
    ErrorMessage,
    Hello,
    ProtocolError,
    Result,
    decode,
    decode_credential,
    encode,
    session_token,
)

__all__ = ["AgentClient", "CommandHandler"]

log = logging.getLogger(__name__)

CommandHandler = Callable[[dict[str, Any]], Awaitable[Any]]


async def _ping(_args: dict[str, Any]) -> Any:
    return {"pong": time.time()}


class AgentClient:
    """Keeps one connection to the hub alive until :meth:`stop`.

    *credential_path* is the device's credential file, re-read before every
    attempt. Backoff between attempts doubles from 0.1 s up to *max_backoff*,
    with jitter, and resets after a connection that got as far as hello; a hub
    that answers 429 (another connection of this device was admitted just now)
    is retried no sooner than its ``Retry-After``. Every refusal is logged with
    the hub's reason; :attr:`last_refusal` keeps the latest.
    """

    def __init__(
        self,
        socket_path: str,
        device_id: str,
        credential_path: str,
        *,
        capabilities: list[str] | None = None,
        max_backoff: float = 5.0,
    ) -> None:
        self._socket_path = socket_path
        self._device_id = device_id
        self._credential_path = credential_path
        self._capabilities = capabilities or ["ping"]
        self._max_backoff = max_backoff
        self._commands: dict[str, CommandHandler] = {"ping": _ping}
        self._stopping = asyncio.Event()
        self.connections = 0
        self.last_refusal: str | None = None

    def register(self, name: str, handler: CommandHandler) -> None:
        self._commands[name] = handler

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


class _CredentialUnavailable(Exception):
    """The credential file is unreadable or not a credential for this device."""


class _CredentialMissing(_CredentialUnavailable):
    """There is no credential file (yet)."""


def _read_small(path: str, limit: int = 4096) -> bytes:
    with open(path, "rb") as handle:
        return handle.read(limit)
