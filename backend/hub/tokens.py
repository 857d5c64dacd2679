"""Signed, short-lived, per-device tokens.

A token binds a *purpose* (``agent`` for the hub, ``stream`` for a pane) to one
device and an expiry. It is ``v1.<purpose>.<device_id>.<expires>.<signature>``
where the signature is HMAC-SHA256 over everything before it, so a token for one
device or purpose never opens another. Verification is constant-time and pure.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import os
import re
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from backend.hub.exceptions import TokenError

__all__ = ["Purpose", "TokenClaims", "load_or_create_secret", "sign", "verify"]

Purpose = Literal["agent", "stream"]
_VERSION = "v1"
_DEVICE_ID = re.compile(r"^[a-z0-9][a-z0-9-]{0,62}$")
SECRET_BYTES = 32


@dataclass(frozen=True, slots=True)
class TokenClaims:
    purpose: Purpose
    device_id: str
    expires: int


def _signature(secret: bytes, body: str) -> str:
    digest = hmac.new(secret, body.encode(), hashlib.sha256).digest()
    return base64.urlsafe_b64encode(digest).rstrip(b"=").decode()


def sign(secret: bytes, purpose: Purpose, device_id: str, ttl: float, *, now: float | None = None) -> str:
    """Return a token for *device_id* valid for *ttl* seconds from *now*."""
    if not _DEVICE_ID.match(device_id):
        raise TokenError(f"invalid device id {device_id!r}")
    expires = int((time.time() if now is None else now) + ttl)
    body = f"{_VERSION}.{purpose}.{device_id}.{expires}"
    return f"{body}.{_signature(secret, body)}"


def verify(secret: bytes, token: str, purpose: Purpose, *, now: float | None = None) -> TokenClaims:
    """Check *token* and return its claims.

    Raises TokenError when the token is malformed, forged, for another purpose,
    or expired. Never raises anything else.
    """
    parts = token.split(".")
    if len(parts) != 5 or parts[0] != _VERSION:
        raise TokenError("malformed token")
    version, token_purpose, device_id, expires_text, signature = parts
    body = f"{version}.{token_purpose}.{device_id}.{expires_text}"
    if not hmac.compare_digest(_signature(secret, body), signature):
        raise TokenError("bad token signature")
    if token_purpose != purpose:
        raise TokenError(f"token is for {token_purpose!r}, not {purpose!r}")
    if not expires_text.isdigit() or not _DEVICE_ID.match(device_id):
        raise TokenError("malformed token")
    expires = int(expires_text)
    if expires < (time.time() if now is None else now):
        raise TokenError("token expired")
    return TokenClaims(purpose=purpose, device_id=device_id, expires=expires)


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
