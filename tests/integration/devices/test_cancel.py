"""Cancelling a running provision stops it and cleans up what it made.

Deterministic: the runtime's ``create`` is held (a test-side wrapper on the real
DockerRuntime) until the cancel has been committed, then the real container is
made; the handler's next progress report reads the cancel and stops there.
"""

from __future__ import annotations

import asyncio

import pytest

from backend.corral import Corral
from backend.devices.exceptions import InvalidRequest
from backend.devices.states import DeviceState
from backend.runtime.base import DeviceSpec, Instance

pytestmark = pytest.mark.docker


class HeldCreate:
    """Wraps ``runtime.create``: the first call waits for :attr:`release`; later calls pass through."""

    def __init__(self, corral: Corral) -> None:
        self.real = corral.runtime.create
        self.entered = asyncio.Event()
        self.release = asyncio.Event()
        self.created: list[Instance] = []

    async def __call__(self, spec: DeviceSpec) -> Instance:
        if not self.entered.is_set():
            self.entered.set()
            await self.release.wait()
        instance = await self.real(spec)
        self.created.append(instance)
        return instance


async def _job_state(corral: Corral, job_id: int) -> str:
    return next(j for j in await corral.jobs() if j.id == job_id).state


async def test_cancel_running_provision_cleans_up(corral: Corral, monkeypatch: pytest.MonkeyPatch) -> None:
    await corral.runtime.ensure_image("browser")
    held = HeldCreate(corral)
    monkeypatch.setattr(corral.runtime, "create", held)
    (device,) = await corral.provision("browser", 1, env={"CORRAL_START_URL": "about:blank"})
    (job,) = [j for j in await corral.jobs() if j.device_id == device.id]

    async with asyncio.timeout(60):
        await held.entered.wait()
    assert (await corral.device(device.id)).state == "provisioning"
    assert await _job_state(corral, job.id) == "running"
    cancelled = await corral.cancel_job(job.id)
    assert cancelled.cancel_requested is True
    held.release.set()

    async with asyncio.timeout(60):
        while (state := await _job_state(corral, job.id)) == "running":
            await asyncio.sleep(0.05)
    assert state == "cancelled"
    # The container was made after the cancel, and removed again by the clean-up.
    (made,) = held.created
    assert made.device_id == device.id
    final = await corral.device(device.id)
    assert (final.state, final.reason) == ("failed", "provisioning cancelled")
    assert await corral.runtime.find(device.id) is None
    assert not corral.settings.device_dir(device.id).exists()

    retried = await corral.retry_job(job.id)
    assert retried.state in ("queued", "running")
    async with asyncio.timeout(120):
        while (state := await _job_state(corral, job.id)) in ("queued", "running"):
            await asyncio.sleep(0.1)
    again = next(j for j in await corral.jobs() if j.id == job.id)
    assert state == "succeeded", again.error
    assert (await corral.device(device.id)).state == "ready"
    assert len(held.created) == 2


async def test_cancelling_a_queued_provision_fails_its_device(settings) -> None:
    # No host runs, so the job stays queued; cancelling it must not leave the
    # device `requested` for ever (or, once a host runs, recovered by the reconciler).
    client = await Corral.start(settings, role="client", stream=False)
    try:
        (device,) = await client.provision("browser", 1)
        (job,) = [j for j in await client.jobs() if j.device_id == device.id]
        cancelled = await client.cancel_job(job.id)
        after = await client.device(device.id)
    finally:
        await client.stop()
    assert (cancelled.kind, cancelled.state) == ("provision", "cancelled")
    assert (after.state, after.reason) == ("failed", "provisioning cancelled")


async def test_a_job_of_a_removed_device_cannot_be_retried(settings) -> None:
    client = await Corral.start(settings, role="client", stream=False)
    try:
        (device,) = await client.provision("browser", 1)
        (job,) = [j for j in await client.jobs() if j.device_id == device.id]
        await client.cancel_job(job.id)
        await client.store.transition(device.id, DeviceState.REMOVED)
        with pytest.raises(InvalidRequest) as caught:
            await client.retry_job(job.id)
    finally:
        await client.stop()
    assert str(caught.value) == f"job {job.id} was for browser-1, which has been removed"
