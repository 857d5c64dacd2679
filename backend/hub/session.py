"""One agent connection's protocol state, with no I/O (sans-I/O).

Feed each received frame to :meth:`AgentSession.receive`; it returns the frames to
send back and the message to act on. The asyncio server in :mod:`backend.hub.server`
is a thin loop around it, so this logic is tested without sockets.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agent.protocol import (
    Command,
    ErrorMessage,
    Event,
    Hello,
    ProtocolError,
    Result,
    decode,
    encode,
)

__all__ = ["AgentSession", "Received"]


@dataclass(frozen=True, slots=True)
class Received:
    replies: list[str] = field(default_factory=list)
    """Frames to send back, in order."""
    message: Hello | Event | Result | None = None
    """The valid message to act on, if any."""


class AgentSession:
    """State of one agent connection for device *device_id*.

    Invalid frames are answered with an ``error`` message and counted; the
    connection stays open. A ``hello`` for another device is refused the same way.
    """

    def __init__(self, device_id: str) -> None:
        self.device_id = device_id
        self.hello: Hello | None = None
        self.invalid_frames = 0

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
        return Received(message=message)

    def _refuse(self, code: str, text: str) -> Received:
        self.invalid_frames += 1
        return Received(replies=[encode(ErrorMessage(code=code, message=text[:4096]))])
