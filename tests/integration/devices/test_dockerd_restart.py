"""dockerd restarts under a ready device: the reconciler marks it and recovers it.

Policy (see backend/devices/reconciler.py): a device that should be up but whose
container is gone or stopped goes ``failed`` with the reason, then a provision job
restarts its container and waits for the agent, so it returns to ``ready``.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
from pathlib import Path
from typing import Any

import psutil
import pytest
from docker import DockerClient
from sqlalchemy import Row, text

from backend.config import Settings
from backend.corral import Corral
from backend.exceptions import CorralError
from backend.runtime.base import Runtime

pytestmark = [
    pytest.mark.docker,
    # When dockerd goes away, the docker SDK's pooled unix connections die with it
    # and are garbage-collected unclosed (a leak inside requests/urllib3, not ours).
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]


async def _restart_dockerd(runtime: Runtime) -> None:
    if Path("/run/systemd/system").is_dir():
        process = await asyncio.create_subprocess_exec("systemctl", "restart", "docker")
        assert await process.wait() == 0
        return
    daemons = [p for p in psutil.process_iter(["name", "cmdline"]) if p.info["name"] == "dockerd"]
    if len(daemons) != 1 or os.getuid() != 0:
        pytest.skip("dockerd is not ours to restart (no systemd, not root, or not exactly one dockerd)")
    (daemon,) = daemons
    cmdline = daemon.info["cmdline"]
    daemon.send_signal(signal.SIGTERM)
    await asyncio.to_thread(daemon.wait, 60)
    await asyncio.create_subprocess_exec(
        *cmdline, stdout=asyncio.subprocess.DEVNULL, stderr=asyncio.subprocess.DEVNULL, start_new_session=True
    )
    async with asyncio.timeout(60):
        while True:
            try:
                await runtime.ping()
                return
            except CorralError:
                await asyncio.sleep(0.3)


async def _events(corral: Corral, device_id: str) -> list[Row[Any]]:
    query = text("SELECT kind, to_state, message FROM device_events WHERE device_id = :id ORDER BY id")
    async with corral.database.session() as session:
        return list((await session.execute(query, {"id": device_id})).all())


async def test_ready_device_recovers_after_dockerd_restart(
    settings: Settings, docker_client: DockerClient
) -> None:
    settings = settings.model_copy(update={"reconcile_interval": 1.0})
    corral = await Corral.start(settings, role="host")
    try:
        (device,) = await corral.provision("browser", 1)
        (ready,) = await corral.wait_for([device.id], {"ready"}, timeout=600)
        assert ready.state == "ready", ready.reason

        await _restart_dockerd(corral.runtime)

        async with asyncio.timeout(120):
            while True:
                events = await _events(corral, device.id)
                current = await corral.device(device.id)
                if any(e.kind == "recover" for e in events) and current.state == "ready":
                    break
                await asyncio.sleep(0.5)
        assert any(e.to_state == "failed" and "container" in e.message for e in events)
        container = docker_client.containers.get(f"corral-{device.id}")
        assert container.status == "running"
    finally:
        ids = [d.id for d in await corral.devices()]
        await corral.remove(ids)
        await corral.wait_for(ids, {"removed"}, timeout=120)
        await corral.stop()
        # Collect the SDK's dead connections now, while their warnings are ignored.
        gc.collect()
