"""Errors of token signing and checking.

AuthError
└── TokenError      a token is malformed, forged, for another purpose, expired or replayed
"""

from __future__ import annotations

from backend.exceptions import CorralError


class AuthError(CorralError):
    """Authentication error."""


class TokenError(AuthError):
    """Token refused."""
