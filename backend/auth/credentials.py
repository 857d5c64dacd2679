"""Per-device agent credentials (the host's side) and the session tokens derived from them.

Each device has one long-lived random key, its *credential*. The host keeps the
keys in memory only and gives each device its own as a 0600 file in the device's
runtime directory (the hub writes it; the format and the session-token format
are in :mod:`agent.protocol`, shared with the agent). The agent derives a
short-lived, single-use session token from it for every connection; this module
checks those tokens.

- *Rotation* (:meth:`DeviceCredentials.issue` again) replaces the key: tokens from
  the old one are refused from then on. The host rotates on every start (a fresh
  registry has no keys) and at every provision attempt.
- *Revocation* (:meth:`DeviceCredentials.revoke`) forgets the key: every token of
  the device is refused until a new key is issued.

A connection already admitted is not affected by either; the hub closes it when
it stops serving the device.
"""

from __future__ import annotations

import hmac
import re
import secrets
import time
from dataclasses import dataclass

from agent.protocol import (
    CREDENTIAL_KEY_BYTES,
    SESSION_TOKEN_VERSION,
    encode_credential,
    session_signature,
)
from backend.auth.exceptions import TokenError
from backend.auth.tokens import ReplayGuard, TokenClaims

__all__ = ["CLOCK_SLACK", "DeviceCredentials", "SessionClaims"]

CLOCK_SLACK = 5.0
"""Seconds a token's expiry may exceed now + TTL (whole-second rounding, a slow agent)."""
_NONCE = re.compile(r"^[A-Za-z0-9_-]{16,64}$")


@dataclass(frozen=True, slots=True)
class SessionClaims:
    device_id: str
    expires: int
    nonce: str


class DeviceCredentials:
    """The credentials of the devices this host serves, in memory.

    *session_ttl* is the longest a session token may live (``agent_session_ttl``).
    Not thread-safe: use it from the event loop.
    """

    def __init__(self, session_ttl: float) -> None:
        self._session_ttl = session_ttl
        self._keys: dict[str, bytes] = {}
        self._replays = ReplayGuard()

    def __contains__(self, device_id: str) -> bool:
        return device_id in self._keys

    def new_file(self, device_id: str) -> tuple[bytes, bytes]:
        """A new random key for *device_id* and the credential file that carries it.

        Nothing changes until :meth:`install` with the key: write the file first,
        then install, so no agent is handed a key the hub does not know yet.
        """
        key = secrets.token_bytes(CREDENTIAL_KEY_BYTES)
        return key, encode_credential(device_id, key, self._session_ttl)

    def install(self, device_id: str, key: bytes) -> None:
        """Make *key* the device's credential; tokens from any earlier key are refused from now on."""
        self._keys[device_id] = key

    def revoke(self, device_id: str) -> None:
        """Forget the device's credential: all its tokens are refused until a new one is installed."""
        self._keys.pop(device_id, None)

    def verify(self, device_id: str, token: str, *, now: float | None = None) -> SessionClaims:
        """Admit *token* for one connection of *device_id*, or raise TokenError saying why.

        Refused: malformed, for another device, no credential (revoked or never
        issued), forged or from a rotated key, expired, living longer than the
        session TTL, or used before. Never raises anything else.
        """
        current = time.time() if now is None else now
        parts = token.split(".")
        if len(parts) != 5 or parts[0] != SESSION_TOKEN_VERSION:
            raise TokenError("malformed session token")
        version, token_device, expires_text, nonce, signature = parts
        if token_device != device_id:
            raise TokenError(f"session token is for device {token_device[:64]!r}, not {device_id!r}")
        key = self._keys.get(device_id)
        if key is None:
            raise TokenError(f"device {device_id} has no credential (revoked, or the host restarted)")
        body = f"{version}.{token_device}.{expires_text}.{nonce}"
        if not hmac.compare_digest(session_signature(key, body), signature):
            raise TokenError("bad session token signature (forged, or from a rotated credential)")
        if not expires_text.isdigit() or not _NONCE.match(nonce):
            raise TokenError("malformed session token")
        expires = int(expires_text)
        if expires < current:
            raise TokenError("session token expired")
        if expires > current + self._session_ttl + CLOCK_SLACK:
            raise TokenError(f"session token lives longer than the session TTL ({self._session_ttl:.0f}s)")
        self._replays.use(TokenClaims("agent", device_id, expires, nonce), now=current)
        return SessionClaims(device_id=device_id, expires=expires, nonce=nonce)
