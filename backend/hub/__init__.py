"""Agent hub: per-device unix-socket WebSocket servers; agents authenticate with
session tokens from their device credential (backend.auth.credentials)."""

from agent.protocol import Event as AgentEvent
from backend.hub.exceptions import AgentDisconnected, CommandTimeout, HubError
from backend.hub.server import CommandOutcome, Hub, HubListener

__all__ = [
    "AgentDisconnected",
    "AgentEvent",
    "CommandOutcome",
    "CommandTimeout",
    "Hub",
    "HubError",
    "HubListener",
]
