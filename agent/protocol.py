"""Wire formats between a device agent and the hub: messages and authentication.

Messages: one JSON text frame carries one message. Every message is a pydantic
model keyed by its ``type`` literal; :func:`decode` turns a frame into a model or
raises :class:`ProtocolError`, :func:`encode` does the reverse.

Frame sizes: a ``result`` may be up to :data:`MAX_RESULT_BYTES` (8 MiB), because
it carries screenshots as base64 PNG (a 1920x1080 page is 0.1-2 MB of PNG, a
noise-like full screen about 6 MB, x4/3 in base64). Every other message is at most
:data:`MAX_FRAME_BYTES` (1 MiB): :func:`decode` refuses a bigger one with
``frame_too_large``, and the agent reads no bigger frame from the hub. An agent
must not send a larger result (the hub closes the connection with 1009, and every
command pending on it fails); it reports a too-large screenshot as a failed result.

Memory on the host: the hub lets only a device's live connection, after its
hello, send frames of MAX_RESULT_BYTES; the others (at most 3 more per device:
one being replaced, the rest still in their handshake, which cannot send
messages) stay at MAX_FRAME_BYTES. websockets stops reading a connection once two
frames wait in its queue (the hub's ``max_queue`` is 1), so a connection holds
at most about five frames' worth: two queued, one arriving, one being decoded
and its parsed copy. Per device that is at most 5 x 8 MiB + 3 x 5 x 1 MiB =
55 MiB, reached only by a device that floods maximal frames on purpose; a normal
screenshot costs a few MB, once. Idle, a connection costs the hub about 18 KiB
(``bench/hub.py``; no compression: over a unix socket it saves nothing).

Authentication: the host writes the device's *credential* to
``/run/corral/agent.cred`` (:data:`CREDENTIAL_FILE`, 0600, owned by the device
uid; never in the container's environment). It is one JSON object,
``{"version": 1, "device_id": …, "key": <base64url of 32 random bytes>,
"session_ttl": <seconds>}``, read with :func:`decode_credential`. For every
connection the agent derives a *session token* from it (:func:`session_token`)::

    s1.<device_id>.<expires>.<nonce>.<base64url HMAC-SHA256(key, "s1.<device_id>.<expires>.<nonce>")>

and sends it as ``Authorization: Bearer <token>`` with the WebSocket handshake.
The hub (``backend.auth.credentials``) holds the same key, refuses a token that is
forged, expired, claims to live longer than the session TTL, or was used before,
and refuses every token once the host rotated or revoked the key.

Pure: no I/O here, so both sides (and their tests) share it without sockets.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import re
import secrets
import time
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, TypeAdapter, ValidationError

__all__ = [
    "CREDENTIAL_FILE",
    "CREDENTIAL_KEY_BYTES",
    "MAX_FRAME_BYTES",
    "MAX_RESULT_BYTES",
    "PROTOCOL_VERSION",
    "SESSION_TOKEN_VERSION",
    "Command",
    "Credential",
    "ErrorMessage",
    "Event",
    "Hello",
    "Message",
    "ProtocolError",
    "Result",
    "decode",
    "decode_credential",
    "encode",
    "encode_credential",
    "session_signature",
    "session_token",
]

PROTOCOL_VERSION = 1
MAX_FRAME_BYTES = 1 << 20
"""Largest message but a result, either way; the agent's transport refuses bigger frames."""
MAX_RESULT_BYTES = 8 << 20
"""Largest ``result`` frame (screenshots travel in results); see the module docstring."""


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
    """Parse one frame. Raises ProtocolError (never anything else) when it is not a message.

    A result may be up to MAX_RESULT_BYTES long, any other message up to
    MAX_FRAME_BYTES (``frame_too_large`` otherwise).
    """
    if isinstance(frame, bytes):
        raise ProtocolError("binary_frame", "binary frames are not part of the protocol")
    if len(frame) > MAX_RESULT_BYTES:
        raise ProtocolError("frame_too_large", f"frame exceeds {MAX_RESULT_BYTES} bytes")
    try:
        message = _adapter.validate_json(frame)
    except ValidationError as exc:
        first = exc.errors()[0]
        where = ".".join(str(part) for part in first["loc"]) or "frame"
        raise ProtocolError("invalid_message", f"{where}: {first['msg']}") from exc
    if len(frame) > MAX_FRAME_BYTES and not isinstance(message, Result):
        raise ProtocolError(
            "frame_too_large", f"a {message.type} frame exceeds {MAX_FRAME_BYTES} bytes (only results may)"
        )
    return message


# --- authentication ------------------------------------------------------------------

CREDENTIAL_FILE = "agent.cred"
"""The credential's name in the device's runtime directory (``/run/corral`` inside)."""
CREDENTIAL_KEY_BYTES = 32
SESSION_TOKEN_VERSION = "s1"
_DEVICE_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")


class Credential(_Message):
    """The content of :data:`CREDENTIAL_FILE`."""

    version: Literal[1] = 1
    device_id: str = Field(pattern=_DEVICE_ID.pattern)
    key: str = Field(min_length=43, max_length=128, pattern=r"^[A-Za-z0-9_-]+$")
    """base64url (no padding) of the random key."""
    session_ttl: float = Field(gt=0, le=3600)
    """How long a session token may live; the hub refuses longer ones."""

    @property
    def key_bytes(self) -> bytes:
        return _b64decode(self.key)


def _b64encode(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _b64decode(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def encode_credential(device_id: str, key: bytes, session_ttl: float) -> bytes:
    """The bytes of a credential file for *device_id* holding *key*."""
    credential = Credential(device_id=device_id, key=_b64encode(key), session_ttl=session_ttl)
    return (credential.model_dump_json() + "\n").encode()


def decode_credential(data: bytes) -> Credential:
    """Parse a credential file. Raises ProtocolError (never anything else) when it is not one."""
    try:
        credential = Credential.model_validate_json(data)
        key = credential.key_bytes
    except (ValidationError, binascii.Error, ValueError) as exc:
        raise ProtocolError("bad_credential", f"not a Corral agent credential: {exc}") from exc
    if len(key) < CREDENTIAL_KEY_BYTES:
        raise ProtocolError("bad_credential", "credential key is too short")
    return credential


def session_signature(key: bytes, body: str) -> str:
    """base64url HMAC-SHA256 of *body* under *key*: the last part of a session token."""
    return _b64encode(hmac.new(key, body.encode(), hashlib.sha256).digest())


def session_token(credential: Credential, *, now: float | None = None, nonce: str | None = None) -> str:
    """A new session token from *credential*, valid for its ``session_ttl`` from *now*.

    Each call makes a new random nonce unless *nonce* is given (tests); the hub
    admits each token once.
    """
    expires = int((time.time() if now is None else now) + credential.session_ttl)
    nonce = nonce if nonce is not None else secrets.token_urlsafe(16)
    body = f"{SESSION_TOKEN_VERSION}.{credential.device_id}.{expires}.{nonce}"
    return f"{body}.{session_signature(credential.key_bytes, body)}"
