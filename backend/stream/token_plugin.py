"""websockify token plugin: a stream token opens exactly one device's VNC socket.

websockify instantiates the plugin once with the ``--token-source`` string and
calls ``lookup(token)`` for each WebSocket upgrade, before it touches any target
socket. A ``(UNIX_TARGET, path)`` answer makes websockify connect to the unix
socket at *path*; ``None`` refuses the connection.

The source names the signing secret's *file* and the devices' runtime root, never
the secret itself, so nothing secret appears on a command line.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from backend.auth.exceptions import TokenError
from backend.auth.tokens import SECRET_BYTES, verify
from backend.config.paths import DevicePaths

if TYPE_CHECKING:
    from backend.config import Settings

__all__ = ["UNIX_TARGET", "PluginSource", "StreamTokenPlugin"]

UNIX_TARGET = "unix_socket"
"""The pseudo host websockify 0.13 reads as "the port is a unix socket path"."""

logger = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class PluginSource:
    """Where the plugin finds the secret and the device directories.

    ``devices_root / <device_id>`` must be the device's runtime directory, i.e.
    what ``Settings.device_dir(device_id)`` returns.
    """

    secret_path: Path
    devices_root: Path

    @classmethod
    def for_settings(cls, settings: Settings) -> PluginSource:
        """The source matching *settings*: its secret file and its device directories."""
        return cls(secret_path=settings.secret_path, devices_root=settings.devices_root)

    def encode(self) -> str:
        """The ``--token-source`` string (JSON, so any path survives)."""
        return json.dumps({"secret_path": str(self.secret_path), "devices_root": str(self.devices_root)})

    @classmethod
    def decode(cls, text: str) -> PluginSource:
        """Parse an ``encode()`` string. Raises ValueError when it is not one."""
        try:
            data = json.loads(text)
            return cls(secret_path=Path(data["secret_path"]), devices_root=Path(data["devices_root"]))
        except (TypeError, KeyError, json.JSONDecodeError) as exc:
            raise ValueError(f"not a stream token source: {text!r}") from exc


class StreamTokenPlugin:
    """Maps a valid ``stream`` token to its device's ``vnc.sock``.

    The secret is read once, at construction; a rotated secret needs a restart of
    the proxy. Raises ValueError (bad source) or OSError (unreadable secret) from
    the constructor, so a misconfigured proxy fails at start, not per connection.
    """

    def __init__(self, src: str) -> None:
        source = PluginSource.decode(src)
        self._secret = source.secret_path.read_bytes()
        if len(self._secret) < SECRET_BYTES:
            raise ValueError(f"signing secret {source.secret_path} is too short")
        self._devices_root = source.devices_root

    def lookup(self, token: str | None) -> tuple[str, str] | None:
        """Return ``(UNIX_TARGET, socket_path)`` for a valid token, else ``None``.

        Never raises: every refusal (missing, malformed, forged, expired, other
        purpose) is logged without the token and answered with ``None``.
        """
        if not token:
            logger.warning("refused a stream connection: no token")
            return None
        try:
            claims = verify(self._secret, token, ("view", "control"))
        except TokenError as exc:
            logger.warning("refused a stream connection: %s", exc)
            return None
        # verify() only accepts ids matching [a-z0-9][a-z0-9-]*, so the id is one
        # path component and cannot climb out of devices_root.
        return UNIX_TARGET, str(DevicePaths(self._devices_root / claims.device_id).vnc_socket)
