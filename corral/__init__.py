"""Corral from Python: drive the device farm from a script.

::

    import asyncio
    import corral

    async def main() -> None:
        async with corral.connect() as c:
            results = await c.run_flow("login-check.yaml", devices=["browser-1", "browser-2"])
            print([(r.device, r.state) for r in results])
            print(await c.device("browser-1").command("read_qr"))

    asyncio.run(main())

:func:`connect` opens the same backend the window and the ``corral`` command use
(``backend.api``): if a Corral host runs (the window, ``corral serve``), this
process is a client and the host carries out its runs; otherwise it hosts them
itself while the ``async with`` block lasts. See README.md, "Python".
"""

from backend.api import (
    COMMAND_NAMES,
    DEVICE_KINDS,
    CommandFailed,
    CorralError,
    DeviceInfo,
    Flow,
    FlowError,
    InvalidRun,
    Settings,
)
from corral.client import Client, DeviceHandle, RunResult, StepResult, connect

__all__ = [
    "COMMAND_NAMES",
    "DEVICE_KINDS",
    "Client",
    "CommandFailed",
    "CorralError",
    "DeviceHandle",
    "DeviceInfo",
    "Flow",
    "FlowError",
    "InvalidRun",
    "RunResult",
    "Settings",
    "StepResult",
    "connect",
]
