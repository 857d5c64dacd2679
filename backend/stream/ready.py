"""The ready line: how the proxy process tells StreamProxy that it serves.

The process writes ``ready_line(port)`` to its stdout once, right before it
starts accepting connections; StreamProxy compares it byte for byte. Kept apart
from ``relay`` so the app never imports the relay's dependencies.
"""

from __future__ import annotations

__all__ = ["ready_line"]


def ready_line(port: int) -> bytes:
    """The exact line (newline included) announcing that *port* is served."""
    return f"READY {port}\n".encode()
