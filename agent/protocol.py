"""Wire messages between a device agent and the hub.

One JSON text frame carries one message. Every message is a pydantic model keyed
by its ``type`` literal; :func:`decode` turns a frame into a model or raises
:class:`ProtocolError`, :func:`encode` does the reverse. Pure: no I/O here, so
both sides (and their tests) share it without sockets.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

__all__ = [
    "MAX_FRAME_BYTES",
    "PROTOCOL_VERSION",
    "Command",
    "ErrorMessage",
    "Event",
    "Hello",
    "Message",
    "ProtocolError",
    "Result",
    "decode",
    "encode",
]

PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 1 << 20
"""Largest frame either side accepts; bigger ones are refused by the transport."""


class ProtocolError(ValueError):
    """A frame that is not a valid message. ``code`` goes into the error reply."""

    def __init__(self, code: str, message: str) -> None:
        super().__init__(message)
        self.code = code


class _Message(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Hello(_Message):
    type: Literal["hello"] = "hello"
    device_id: str = Field(min_length=1, max_length=64)
    agent_version: str = Field(max_length=64)
    protocol: int = PROTOCOL_VERSION
    capabilities: list[str] = Field(default_factory=list, max_length=64)


class Command(_Message):
    type: Literal["command"] = "command"
    id: str = Field(min_length=1, max_length=64)
    name: str = Field(min_length=1, max_length=64)
    args: dict[str, Any] = Field(default_factory=dict)


class Result(_Message):
    type: Literal["result"] = "result"
    id: str = Field(min_length=1, max_length=64)
    ok: bool
    data: Any = None
    error: str | None = None


class Event(_Message):
    type: Literal["event"] = "event"
    kind: Literal["log", "state", "screenshot", "metric"]
    data: dict[str, Any] = Field(default_factory=dict)


class ErrorMessage(_Message):
    type: Literal["error"] = "error"
    code: str = Field(max_length=64)
    message: str = Field(max_length=4096)


Message = Annotated[Hello | Command | Result | Event | ErrorMessage, Field(discriminator="type")]
_adapter: TypeAdapter[Message] = TypeAdapter(Message)


def encode(message: Hello | Command | Result | Event | ErrorMessage) -> str:
    """Serialise *message* as one JSON text frame."""
    return message.model_dump_json()


def decode(frame: str | bytes) -> Hello | Command | Result | Event | ErrorMessage:
    """Parse one frame. Raises ProtocolError (never anything else) when it is not a message."""
    if isinstance(frame, bytes):
        raise ProtocolError("binary_frame", "binary frames are not part of the protocol")
    if len(frame) > MAX_FRAME_BYTES:
        raise ProtocolError("frame_too_large", f"frame exceeds {MAX_FRAME_BYTES} bytes")
    try:
        return _adapter.validate_json(frame)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "frame"
        raise ProtocolError("invalid_message", f"{where}: {first['msg']}") from exc
