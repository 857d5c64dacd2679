"""``corral-agent`` / ``python -m agent``: connect this device to its hub.

Reads from the environment CORRAL_DEVICE_ID, CORRAL_HUB_SOCKET (default
/run/corral/hub.sock) and CORRAL_AGENT_CREDENTIAL (default
/run/corral/agent.cred). The credential is a file the host writes and rotates;
it is never passed in the environment. The agent re-reads it before every
connection attempt, so a rotation needs no restart.

CORRAL_AGENT_DRIVER names the device kind whose driver runs the commands
(default ``browser``: the agent starts and owns the device's Chromium, see
:mod:`agent.drivers.browser`); ``none`` answers ``ping`` only.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys
from typing import Any

from agent.client import AgentClient
from agent.drivers import driver_for
from agent.protocol import CREDENTIAL_FILE

__all__ = ["DEFAULT_CREDENTIAL", "DEFAULT_HUB_SOCKET", "main"]

DEFAULT_HUB_SOCKET = "/run/corral/hub.sock"
DEFAULT_CREDENTIAL = f"/run/corral/{CREDENTIAL_FILE}"


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="agent %(levelname)s %(message)s")
    try:
        device_id = os.environ["CORRAL_DEVICE_ID"]
    except KeyError as exc:
        print(f"corral-agent: {exc.args[0]} is not set", file=sys.stderr)
        return 2
    kind = os.environ.get("CORRAL_AGENT_DRIVER", "browser")
    client: AgentClient | None = None

    def emit(event_kind: str, data: dict[str, Any]) -> None:
        # The driver emits only once started, when the client exists.
        if client is not None:
            client.emit(event_kind, data)

    try:
        driver = None if kind == "none" else driver_for(kind, emit)
    except ValueError as exc:
        print(f"corral-agent: {exc}", file=sys.stderr)
        return 2
    client = AgentClient(
        os.environ.get("CORRAL_HUB_SOCKET", DEFAULT_HUB_SOCKET),
        device_id,
        os.environ.get("CORRAL_AGENT_CREDENTIAL", DEFAULT_CREDENTIAL),
        driver=driver,
    )

    async def run(client: AgentClient) -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, client.stop)
        try:
            if driver is not None:
                await driver.start()
            await client.run()
        finally:
            if driver is not None:
                await driver.stop()

    asyncio.run(run(client))
    return 0


if __name__ == "__main__":
    sys.exit(main())
