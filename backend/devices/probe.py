"""Does a device's VNC server answer? (An RFB greeting on its unix socket.)"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

__all__ = ["vnc_answers"]


async def vnc_answers(socket_path: Path, timeout: float = 1.0) -> bool:
    """True when *socket_path* accepts a connection and greets with ``RFB xxx.yyy``."""
    try:
        reader, writer = await asyncio.wait_for(asyncio.open_unix_connection(str(socket_path)), timeout)
    except (OSError, TimeoutError):
        return False
    try:
        greeting = await asyncio.wait_for(reader.readexactly(12), timeout)
    except (OSError, TimeoutError, asyncio.IncompleteReadError):
        return False
    finally:
        writer.close()
        with contextlib.suppress(OSError):
            await writer.wait_closed()
    return greeting.startswith(b"RFB ")
