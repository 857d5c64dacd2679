"""Errors of the agent hub.

HubError            the agent is not connected, did not answer, or refused a command
"""

from __future__ import annotations

from backend.exceptions import CorralError


class HubError(CorralError):
    """Agent hub error."""
