"""Does a device's VNC server answer? (An RFB greeting on its unix socket.)"""

from __future__ import annotations

import asyncio
import contextlib
from pathlib import Path

from backend.config import rundir
from backend.config.exceptions import RuntimeDirError

__all__ = ["vnc_answers"]


async def vnc_answers(socket_path: Path, timeout: float = 1.0) -> bool:
    """True when *socket_path* accepts a connection and greets with ``RFB xxx.yyy``.

    *socket_path* is a device's socket (``Settings.device_paths(id).vnc_socket``):
    the device may have put a symlink there (or swapped its directory's entry), so
    it is connected without following one (``rundir.connect_socket_at``); such a
    device does not answer.
    """
    try:
        sock = await asyncio.to_thread(rundir.connect_socket_at, socket_path, timeout)
    except (OSError, RuntimeDirError):
        return False
    try:
        reader, writer = await asyncio.open_unix_connection(sock=sock)
    except OSError:
        sock.close()
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
