"""Where a device's files are, on the host and inside its container: spelled once here.

Each device has a private runtime directory on the host,
``<runtime_dir>/devices/<device_id>``, bind-mounted at :data:`CONTAINER_RUN_DIR`
inside its container. Its sockets and files have the same names on both sides.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

__all__ = ["AGENT_CREDENTIAL", "CONTAINER_RUN_DIR", "DEVICES_DIR", "HUB_SOCKET", "VNC_SOCKET", "DevicePaths"]

CONTAINER_RUN_DIR = "/run/corral"
"""Where the device's host runtime directory appears inside its container."""
DEVICES_DIR = "devices"
"""The folder of device directories inside the runtime directory."""
VNC_SOCKET = "vnc.sock"
"""The device's screen: RFB over a unix socket, served by Xvnc in the container."""
HUB_SOCKET = "hub.sock"
"""The hub's socket for the device's agent, served by the host."""
AGENT_CREDENTIAL = "agent.cred"
"""The device's agent credential (0600, written by the host; ``agent.protocol.CREDENTIAL_FILE``)."""


@dataclass(frozen=True, slots=True)
class DevicePaths:
    """The host-side paths of one device, from ``Settings.device_paths(device_id)``."""

    dir: Path

    @property
    def vnc_socket(self) -> Path:
        return self.dir / VNC_SOCKET

    @property
    def hub_socket(self) -> Path:
        return self.dir / HUB_SOCKET

    @property
    def agent_credential(self) -> Path:
        return self.dir / AGENT_CREDENTIAL
