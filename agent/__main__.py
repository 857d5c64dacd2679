"""``corral-agent`` / ``python -m agent``: connect this device to its hub.

Reads CORRAL_DEVICE_ID, CORRAL_AGENT_TOKEN and CORRAL_HUB_SOCKET (default
/run/corral/hub.sock) from the environment.
"""

from __future__ import annotations

import asyncio
import logging
import os
import signal
import sys

from agent.client import AgentClient


def main() -> int:
    logging.basicConfig(level=logging.INFO, format="agent %(levelname)s %(message)s")
    try:
        device_id = os.environ["CORRAL_DEVICE_ID"]
        token = os.environ["CORRAL_AGENT_TOKEN"]
    except KeyError as exc:
        print(f"corral-agent: {exc.args[0]} is not set", file=sys.stderr)
        return 2
    client = AgentClient(os.environ.get("CORRAL_HUB_SOCKET", "/run/corral/hub.sock"), device_id, token)

    async def run() -> None:
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(sig, client.stop)
        await client.run()

    asyncio.run(run())
    return 0


if __name__ == "__main__":
    sys.exit(main())
