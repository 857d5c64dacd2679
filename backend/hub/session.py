"""One agent connection's protocol state, with no I/O (sans-I/O).

Feed each received frame to :meth:`AgentSession.receive`; it returns the frames to
send back and the message to act on. Commands are made by
:meth:`AgentSession.command`, which remembers their ids: a result completes a
command only if this session issued its id and it is still pending. The asyncio
server in :mod:`backend.hub.server` is a thin loop around it, so this logic is
tested without sockets.
"""

from __future__ import annotations

import secrets
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from agent.protocol import (
    MAX_FRAME_BYTES,
    Command,
    ErrorMessage,
    Event,
    Hello,
    ProtocolError,
    Result,
    decode,
    encode,
)

__all__ = ["COMMAND_ID_BYTES", "AgentSession", "CommandTooLarge", "Received"]

COMMAND_ID_BYTES = 16
"""Random bytes in a command id (22 base64url characters): ids cannot be guessed."""


class CommandTooLarge(ValueError):
    """The encoded command exceeds MAX_FRAME_BYTES (the agent would drop the connection)."""


@dataclass(frozen=True, slots=True)
class Received:
    replies: list[str] = field(default_factory=list)
    """Frames to send back, in order."""
    message: Hello | Event | Result | None = None
    """The valid message to act on, if any. A Result here completes a pending command."""


class AgentSession:
    """State of one agent connection for device *device_id*.

    Invalid frames are answered with an ``error`` message and counted
    (:attr:`invalid_frames`); the connection stays open. A ``hello`` for another
    device is refused the same way. A result whose id is not pending on this
    session (unknown, already answered, timed out, or another connection's) is
    not a protocol error (a late answer looks the same): it is dropped silently
    and counted in :attr:`stray_results`. Both counts are also added to *totals*
    (keys ``invalid_frames``, ``stray_results``) when given: the hub's per-device
    counts over all its connections.
    """

    def __init__(self, device_id: str, totals: Counter[str] | None = None) -> None:
        self.device_id = device_id
        self.hello: Hello | None = None
        self.invalid_frames = 0
        self.stray_results = 0
        self._totals = totals if totals is not None else Counter()
        self._pending: dict[str, str] = {}
        """Command id -> command name, for the commands sent and not yet answered."""

    @property
    def pending(self) -> dict[str, str]:
        """Ids (and names) of the commands waiting for their result; a copy."""
        return dict(self._pending)

    def command(self, name: str, args: dict[str, Any]) -> tuple[str, str]:
        """A new command with an unguessable id: ``(id, frame to send)``; now pending.

        Raises CommandTooLarge when the frame would exceed MAX_FRAME_BYTES
        (nothing is pending then), pydantic's ValidationError for a bad name.
        """
        command_id = secrets.token_urlsafe(COMMAND_ID_BYTES)
        frame = encode(Command(id=command_id, name=name, args=args))
        if len(frame.encode()) > MAX_FRAME_BYTES:
            raise CommandTooLarge(
                f"command {name!r} is {len(frame.encode())} bytes encoded; at most {MAX_FRAME_BYTES}"
            )
        self._pending[command_id] = name
        return command_id, frame

    def forget(self, command_id: str) -> None:
        """Stop waiting for *command_id* (timed out, cancelled): its result will be a stray."""
        self._pending.pop(command_id, None)

    def abandon(self) -> dict[str, str]:
        """Stop waiting for every pending command (the connection is gone); returns them (id -> name)."""
        pending, self._pending = self._pending, {}
        return pending

    def receive(self, frame: str | bytes) -> Received:
        try:
            message = decode(frame)
        except ProtocolError as exc:
            return self._refuse(exc.code, str(exc))
        if isinstance(message, Hello):
            if message.device_id != self.device_id:
                return self._refuse("wrong_device", "hello names another device than the token")
            self.hello = message
            return Received(message=message)
        if self.hello is None:
            return self._refuse("hello_required", "send hello first")
        if isinstance(message, Command):
            return self._refuse("unexpected_command", "agents do not send commands")
        if isinstance(message, ErrorMessage):
            return Received()
        if isinstance(message, Result) and self._pending.pop(message.id, None) is None:
            self.stray_results += 1
            self._totals["stray_results"] += 1
            return Received()
        return Received(message=message)

    def _refuse(self, code: str, text: str) -> Received:
        self.invalid_frames += 1
        self._totals["invalid_frames"] += 1
        return Received(replies=[encode(ErrorMessage(code=code, message=text[:4096]))])
