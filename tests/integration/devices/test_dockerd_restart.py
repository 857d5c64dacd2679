"""dockerd restarts under a ready device: the reconciler marks it and recovers it.

Policy (see backend/devices/reconciler.py): a device that should be up but whose
container is gone or stopped goes ``failed`` with the reason, then a provision job
restarts its container and waits for the agent, so it returns to ``ready``.

The daemon restarted is a private one this test starts (tests/integration/devices/
dockerd.py), never the operator's. The device image is copied into it from the
main daemon (``docker save | docker load``, seconds) rather than built there.
"""

from __future__ import annotations

import asyncio
import gc
import time
from collections.abc import AsyncIterator

import docker
import pytest
from sqlalchemy import text

from backend.config import Settings
from backend.corral import Corral
from backend.runtime.containers import container_name
from backend.runtime.docker import DockerRuntime
from tests.integration.devices.dockerd import PrivateDockerd, can_run_dockerd, copy_image
from tests.require import missing

pytestmark = [
    pytest.mark.docker,
    # When dockerd goes away, the docker SDK's pooled unix connections die with it
    # and are garbage-collected unclosed (a leak inside requests/urllib3, not ours).
    pytest.mark.filterwarnings("ignore::ResourceWarning"),
    pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning"),
]

# A stopping daemon stops its containers (no live-restore): the entrypoint exits
# cleanly on SIGTERM, or is killed once the 2 s stop timeout runs out under load.
FAILED_REASONS = {"container exited with code 0", "container exited with code 137"}


@pytest.fixture
async def private_dockerd(settings: Settings, docker_available: None) -> AsyncIterator[PrivateDockerd]:
    """A started private daemon holding the browser image of the main daemon."""
    reason = can_run_dockerd()
    if reason is not None:
        missing("docker", reason)
    main = DockerRuntime(settings)
    try:
        ref = await main.ensure_image("browser")
    finally:
        await main.close()
    daemon = PrivateDockerd()
    try:
        await daemon.start()
        source, target = docker.from_env(timeout=300), daemon.client()
        try:
            started = time.monotonic()
            await asyncio.to_thread(copy_image, source, target, ref)
            print(f"copied {ref} into the private dockerd in {time.monotonic() - started:.1f}s")
        finally:
            source.close()
            target.close()
        yield daemon
    finally:
        await daemon.close()


async def _lifecycle(corral: Corral, device_id: str, after: int) -> list[tuple[str, str | None, str]]:
    query = text(
        "SELECT kind, to_state, message FROM device_events "
        "WHERE device_id = :id AND id > :after AND kind IN ('state', 'recover') ORDER BY id"
    )
    async with corral.database.session() as session:
        rows = (await session.execute(query, {"id": device_id, "after": after})).all()
    return [(row.kind, row.to_state, row.message) for row in rows]


async def _last_event_id(corral: Corral, device_id: str) -> int:
    query = text("SELECT coalesce(max(id), 0) FROM device_events WHERE device_id = :id")
    async with corral.database.session() as session:
        return int((await session.execute(query, {"id": device_id})).scalar_one())


async def test_ready_device_recovers_after_dockerd_restart(
    settings: Settings, private_dockerd: PrivateDockerd
) -> None:
    settings = settings.model_copy(update={"reconcile_interval": 1.0, "docker_host": private_dockerd.host})
    corral = await Corral.start(settings, role="host", stream=False)
    try:
        (device,) = await corral.provision("browser", 1, env={"CORRAL_START_URL": "about:blank"})
        (ready,) = await corral.wait_for([device.id], {"ready"}, timeout=120)
        assert (ready.state, ready.reason) == ("ready", None)
        before = await _last_event_id(corral, device.id)
        events: list[tuple[str, str | None, str]] = []

        await private_dockerd.stop()
        await private_dockerd.start()

        async with asyncio.timeout(90):
            while ("state", "ready") not in [(k, s) for k, s, _ in events]:
                await asyncio.sleep(0.3)
                events = await _lifecycle(corral, device.id, before)
        assert [(kind, state) for kind, state, _ in events] == [
            ("state", "failed"),
            ("recover", None),
            ("state", "provisioning"),
            ("state", "booting"),
            ("state", "ready"),
        ], events
        failed_reason = events[0][2]
        assert failed_reason in FAILED_REASONS
        assert events[1][2] == f"recovering: {failed_reason}"

        client = private_dockerd.client()
        try:
            container = await asyncio.to_thread(client.containers.get, container_name(device.id))
            assert container.status == "running"
        finally:
            client.close()
        assert (await corral.device(device.id)).state == "ready"
    finally:
        ids = [d.id for d in await corral.devices()]
        await corral.remove(ids)
        await corral.wait_for(ids, {"removed"}, timeout=120)
        await corral.stop()
        # Collect the SDK's dead connections now, while their warnings are ignored.
        gc.collect()
