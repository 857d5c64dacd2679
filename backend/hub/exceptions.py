"""Errors of the agent hub.

HubError
└── TokenError      a token is malformed, forged, for another purpose or expired
"""

from __future__ import annotations

from backend.exceptions import CorralError


class HubError(CorralError):
    """Agent hub error."""


class TokenError(HubError):
    """Token refused."""
