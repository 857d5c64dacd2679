"""Signed per-device tokens and the replay guard, shared by the hub and the stream proxy."""

from backend.auth.exceptions import AuthError, TokenError
from backend.auth.tokens import Purpose, ReplayGuard, TokenClaims, load_or_create_secret, sign, verify

__all__ = [
    "AuthError",
    "Purpose",
    "ReplayGuard",
    "TokenClaims",
    "TokenError",
    "load_or_create_secret",
    "sign",
    "verify",
]
