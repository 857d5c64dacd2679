"""Cancelling a running provision stops it and cleans up what it made."""

from __future__ import annotations

import asyncio

import pytest

from backend.corral import Corral

pytestmark = pytest.mark.docker


async def test_cancel_running_provision_cleans_up(corral: Corral) -> None:
    await corral.runtime.ensure_image("browser")
    (device,) = await corral.provision("browser", 1, env={"CORRAL_START_URL": "about:blank"})
    (job,) = [j for j in await corral.jobs() if j.device_id == device.id]
    async with asyncio.timeout(60):
        while (await corral.device(device.id)).state not in ("provisioning", "booting"):
            await asyncio.sleep(0.02)
    await corral.cancel_job(job.id)
    async with asyncio.timeout(60):
        while (current := next(j for j in await corral.jobs() if j.id == job.id)).state == "running":
            await asyncio.sleep(0.05)
    final = await corral.device(device.id)
    if current.state == "succeeded":
        pytest.skip("the device came up before the cancel was seen")
    assert current.state == "cancelled"
    assert (final.state, final.reason) == ("failed", "provisioning cancelled")
    assert await corral.runtime.find(device.id) is None
    assert not corral.settings.device_dir(device.id).exists()

    retried = await corral.retry_job(job.id)
    assert retried.state in ("queued", "running")
    async with asyncio.timeout(120):
        while (again := next(j for j in await corral.jobs() if j.id == job.id)).state in (
            "queued",
            "running",
        ):
            await asyncio.sleep(0.1)
    assert again.state == "succeeded", again.error
    assert (await corral.device(device.id)).state == "ready"
