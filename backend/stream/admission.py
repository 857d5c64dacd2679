"""Who may open a stream: the checks on a pane's request path, before any device socket is touched.

A pane asks for ``/devices/<device_id>?token=<token>``. It is admitted when the
token is a valid ``view`` or ``control`` token (see ``backend.auth.tokens``)
signed for that same device, not expired, and not used before. Pure apart from
the clock; the relay process keeps one :class:`Admission` for all its
connections, so its replay guard sees every token. A restarted relay starts
with an empty guard, so it also refuses tokens issued before *not_before* (a
whole second, just after the previous relay died or the app started): none of
those can be replayed to it. Tokens carry only their expiry, in whole seconds,
so this is exact when the issuer signs with a whole-second *token_ttl* and
never with a time before *not_before* (``StreamProxy.pane_url`` does both).
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import parse_qs, urlsplit

from backend.auth.exceptions import TokenError
from backend.auth.tokens import SECRET_BYTES, ReplayGuard, verify
from backend.stream.exceptions import StreamRefused

__all__ = ["DEVICES_PATH", "Admission", "Scope", "Ticket", "stream_path"]

Scope = Literal["view", "control"]
"""What a pane may do: watch (``view``, the proxy drops its input) or also send input (``control``)."""

DEVICES_PATH = "/devices/"
_PATH = re.compile(r"^/devices/([a-z0-9][a-z0-9-]{0,62})$")


def stream_path(device_id: str) -> str:
    """The request path that names *device_id*."""
    return f"{DEVICES_PATH}{device_id}"


@dataclass(frozen=True, slots=True)
class Ticket:
    """An admitted request: the device it may stream and with what scope."""

    device_id: str
    scope: Scope


class Admission:
    """Checks request paths against the signing secret and a replay guard.

    Raises ValueError from the constructor when the secret is too short, so a
    misconfigured relay fails at start, not per connection.
    """

    def __init__(self, secret: bytes, *, token_ttl: int = 0, not_before: int = 0) -> None:
        if len(secret) < SECRET_BYTES:
            raise ValueError("the signing secret is too short")
        self._secret = secret
        self._token_ttl = token_ttl
        self._not_before = not_before
        self._replays = ReplayGuard()

    def admit(self, target: str, *, now: float | None = None) -> Ticket:
        """The ticket for request target *target* (path and query).

        Raises StreamRefused, whose message never contains the token. The token
        is spent only when everything else holds: a token refused for a wrong
        path can still open its own device once.
        """
        url = urlsplit(target)
        match = _PATH.match(url.path)
        if match is None:
            raise StreamRefused("not a device stream path")
        tokens = parse_qs(url.query).get("token")
        if not tokens or not tokens[0]:
            raise StreamRefused("no token")
        if len(tokens) > 1:
            raise StreamRefused("more than one token")
        try:
            claims = verify(self._secret, tokens[0], ("view", "control"), now=now)
        except TokenError as exc:
            raise StreamRefused(str(exc)) from None
        if claims.device_id != match.group(1):
            raise StreamRefused(f"token for device {claims.device_id} used for device {match.group(1)}")
        # Signed at t < not_before: expires = int(t) + ttl <= not_before - 1 + ttl.
        # Signed at t >= not_before: expires >= not_before + ttl.
        if claims.expires - self._token_ttl < self._not_before:
            raise StreamRefused("token issued before this proxy started")
        try:
            self._replays.use(claims, now=now)
        except TokenError as exc:
            raise StreamRefused(str(exc)) from None
        scope: Scope = "control" if claims.purpose == "control" else "view"
        return Ticket(device_id=claims.device_id, scope=scope)
