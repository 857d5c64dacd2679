"""Signed, short-lived, per-device tokens.

A token binds a *purpose* to one device, an expiry and a random nonce:

- ``agent``: an agent's hub connection;
- ``view``: a pane that may watch a device's screen (the stream proxy drops its input);
- ``control``: a pane that may also send keys, pointer events and the clipboard.

It is ``v2.<purpose>.<device_id>.<expires>.<nonce>.<signature>`` where the
signature is HMAC-SHA256 over everything before it, so a token for one device or
purpose never opens another. The nonce makes every token distinct, so a server
can refuse a replay with :class:`ReplayGuard`. Verification is constant-time and
pure.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import secrets
import time
from collections.abc import Collection
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, get_args

from backend.auth.exceptions import TokenError

__all__ = [
    "PURPOSES",
    "SECRET_BYTES",
    "Purpose",
    "ReplayGuard",
    "TokenClaims",
    "load_or_create_secret",
    "sign",
    "verify",
]

Purpose = Literal["agent", "view", "control"]
PURPOSES: tuple[Purpose, ...] = get_args(Purpose)
_VERSION = "v2"
_DEVICE_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")
SECRET_BYTES = 32


@dataclass(frozen=True, slots=True)
class TokenClaims:
    purpose: Purpose
    device_id: str
    expires: int
    nonce: str


def _signature(secret: bytes, body: str) -> str:
    digest = hmac.new(secret, body.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def sign(
    secret: bytes,
    purpose: Purpose,
    device_id: str,
    ttl: float,
    *,
    now: float | None = None,
    nonce: str | None = None,
) -> str:
    """Return a token for *device_id* valid for *ttl* seconds from *now*.

    Each call makes a new random nonce unless *nonce* is given (tests).
    Raises TokenError for an id no token can name or an unknown purpose.
    """
    if not _DEVICE_ID.match(device_id):
        raise TokenError(f"invalid device id {device_id!r}")
    if purpose not in PURPOSES:
        raise TokenError(f"unknown token purpose {purpose!r}")
    nonce = nonce if nonce is not None else secrets.token_urlsafe(16)
    if not _NONCE.match(nonce):
        raise TokenError("invalid nonce")
    expires = int((time.time() if now is None else now) + ttl)
    body = f"{_VERSION}.{purpose}.{device_id}.{expires}.{nonce}"
    return f"{body}.{_signature(secret, body)}"


def verify(
    secret: bytes,
    token: str,
    purposes: Purpose | Collection[Purpose],
    *,
    now: float | None = None,
) -> TokenClaims:
    """Check *token* and return its claims.

    *purposes* is the purpose (or the purposes) the caller accepts. Raises
    TokenError when the token is malformed, forged, for another purpose, or
    expired. Never raises anything else. Replays are the caller's to refuse
    (see :class:`ReplayGuard`).
    """
    accepted = {purposes} if isinstance(purposes, str) else set(purposes)
    parts = token.split(".")
    if len(parts) != 6 or parts[0] != _VERSION:
        raise TokenError("malformed token")
    version, token_purpose, device_id, expires_text, nonce, signature = parts
    body = f"{version}.{token_purpose}.{device_id}.{expires_text}.{nonce}"
    if not hmac.compare_digest(_signature(secret, body), signature):
        raise TokenError("bad token signature")
    if token_purpose not in accepted:
        wanted = " or ".join(repr(p) for p in sorted(accepted))
        raise TokenError(f"token is for {token_purpose!r}, not {wanted}")
    if not expires_text.isdigit() or not _DEVICE_ID.match(device_id) or not _NONCE.match(nonce):
        raise TokenError("malformed token")
    expires = int(expires_text)
    if expires < (time.time() if now is None else now):
        raise TokenError("token expired")
    return TokenClaims(purpose=token_purpose, device_id=device_id, expires=expires, nonce=nonce)


class ReplayGuard:
    """Remembers the nonces of tokens already used until they expire.

    Call :meth:`use` once per admitted connection, after :func:`verify`; it
    raises TokenError for a nonce seen before. Memory is bounded by the number
    of tokens issued within one TTL; expired nonces are dropped as it goes.
    """

    def __init__(self) -> None:
        self._seen: dict[str, int] = {}

    def use(self, claims: TokenClaims, *, now: float | None = None) -> None:
        current = time.time() if now is None else now
        if len(self._seen) > 1024:
            self._seen = {n: e for n, e in self._seen.items() if e >= current}
        if claims.nonce in self._seen:
            raise TokenError("token already used")
        self._seen[claims.nonce] = claims.expires

    def __len__(self) -> int:
        return len(self._seen)


def load_or_create_secret(path: Path) -> bytes:
    """Read the signing secret at *path*, creating it (mode 0600) on first use."""
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        path.parent.mkdir(parents=True, exist_ok=True)
        data = os.urandom(SECRET_BYTES)
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
    if len(data) < SECRET_BYTES:
        raise TokenError(f"signing secret {path} is too short; delete it to make a new one")
    return data
