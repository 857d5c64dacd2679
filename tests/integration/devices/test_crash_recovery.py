"""SIGKILL the host in the middle of provisioning; the next start finishes the work."""

from __future__ import annotations

import asyncio
import os
import signal
import sys

import pytest

from backend.config import Settings
from backend.corral import Corral

pytestmark = pytest.mark.docker

TRANSITIONAL = {"requested", "provisioning", "booting", "stopping"}
TERMINAL = {"succeeded", "failed", "cancelled"}


async def _serve(settings: Settings) -> asyncio.subprocess.Process:
    env = {
        **os.environ,
        "CORRAL_DATABASE_URL": str(settings.database_url),
        "CORRAL_DATA_DIR": str(settings.data_dir),
        "CORRAL_RUNTIME_DIR": str(settings.runtime_dir),
        "CORRAL_DEVICE_NETWORK": "none",
        "CORRAL_JOB_LEASE_SECONDS": "2",
        "CORRAL_JOB_CONCURRENCY": "4",
    }
    process = await asyncio.create_subprocess_exec(
        sys.executable, "-m", "backend.cli", "serve", env=env, stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    line = await asyncio.wait_for(process.stdout.readline(), 60)
    assert b"serving" in line, line
    return process


async def test_sigkill_mid_provision_then_restart(settings: Settings, docker_available: None) -> None:
    client = await Corral.start(settings, role="client", stream=False)
    host = await _serve(settings)
    try:
        await client.runtime.ensure_image("browser")
        devices = await client.provision("browser", 8)
        ids = [d.id for d in devices]
        # Kill once some devices are up and others are still on their way.
        async with asyncio.timeout(120):
            while True:
                states = [d.state for d in await client.devices()]
                if "ready" in states and TRANSITIONAL & set(states):
                    break
                await asyncio.sleep(0.1)
        host.send_signal(signal.SIGKILL)
        await host.wait()

        host = await _serve(settings)
        final = await client.wait_for(ids, {"ready"}, timeout=240)
        # Every device comes up: the kill costs an attempt at most, never the device.
        assert sorted((d.id, d.state, d.reason) for d in final) == sorted((i, "ready", None) for i in ids)
        # A job whose success the killed host had not yet recorded runs again once
        # its lease expires, finds its device up, and succeeds.
        async with asyncio.timeout(60):
            jobs = await client.jobs()
            while {j.state for j in jobs} - TERMINAL:
                await asyncio.sleep(0.2)
                jobs = await client.jobs()
        assert {j.state for j in jobs} <= TERMINAL, [(j.id, j.state) for j in jobs]
        assert all(j.attempts <= j.max_attempts for j in jobs)

        # Exactly one running container per device, none the database does not know.
        containers = await client.runtime.list()
        assert sorted((c.device_id, c.status) for c in containers) == sorted((i, "running") for i in ids)
    finally:
        if host.returncode is None:
            await client.remove([d.id for d in await client.devices()])
            await client.wait_for([d.id for d in await client.devices()], {"removed"}, timeout=120)
            host.send_signal(signal.SIGTERM)
            await host.wait()
        await client.stop()
