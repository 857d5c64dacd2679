"""Errors of the agent hub.

HubError                the agent is not connected, did not answer, or refused a command
├── AgentDisconnected   no agent is connected, or its connection dropped before it answered
└── CommandTimeout      the agent did not answer within the command's timeout
"""

from __future__ import annotations

from backend.exceptions import CorralError

__all__ = ["AgentDisconnected", "CommandTimeout", "HubError"]


class HubError(CorralError):
    """Agent hub error."""


class AgentDisconnected(HubError):
    """agent disconnected: the device's agent is not connected (it may be restarting)."""


class CommandTimeout(HubError):
    """The device's agent did not answer in time."""
