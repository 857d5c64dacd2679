"""The reconciler on real components: a real dockerd, real Postgres, a host Corral.

Containers are "this installation's" when they carry the test Settings' owner
label (``corral.owner``); the sleeper containers made here carry it (or another
owner's, to be left alone) and run ``sleep`` in the browser image.
"""

from __future__ import annotations

import asyncio
import contextlib
import uuid
from collections.abc import AsyncIterator
from typing import Any

import docker.errors
import pytest
from docker import DockerClient
from docker.models.containers import Container
from sqlalchemy import text

from backend.config import Settings
from backend.corral import Corral
from backend.runtime.containers import LABEL_DEVICE, LABEL_OWNER, container_name, owner_id

pytestmark = pytest.mark.docker

FAILED_MESSAGES = ("container vanished", "container removing")
"""What the reconciler may see after `docker rm -f`: no container, or one still being
removed (the daemon takes a moment; a pass every 0.5 s can land in between)."""


@pytest.fixture
async def host(settings: Settings, docker_available: None) -> AsyncIterator[Corral]:
    """A host Corral reconciling every half second, parked devices kept for one hour."""
    fast = settings.model_copy(update={"reconcile_interval": 0.5, "parked_ttl_hours": 1.0})
    corral = await Corral.start(fast, role="host", stream=False)
    try:
        yield corral
    finally:
        ids = [d.id for d in await corral.devices()]
        if ids:
            await corral.remove(ids)
            await corral.wait_for(ids, {"removed"}, timeout=120)
        await corral.stop()


@pytest.fixture
async def sleepers(docker_client: DockerClient) -> AsyncIterator[list[Container]]:
    """Containers a test made with :func:`_sleeper`; force-removed at the end."""
    made: list[Container] = []
    yield made
    for container in made:
        with contextlib.suppress(docker.errors.NotFound):
            await asyncio.to_thread(container.remove, force=True)


async def _sleeper(
    client: DockerClient, made: list[Container], image: str, device_id: str, owner: str
) -> Container:
    """A container that looks like a device of *owner* (labels and name) and only sleeps."""
    container = await asyncio.to_thread(
        client.containers.run,
        image,
        entrypoint=["sleep", "600"],
        name=container_name(device_id),
        labels={LABEL_DEVICE: device_id, LABEL_OWNER: owner},
        network_mode="none",
        detach=True,
    )
    made.append(container)
    return container


async def _exists(client: DockerClient, container_id: str) -> bool:
    try:
        await asyncio.to_thread(client.containers.get, container_id)
    except docker.errors.NotFound:
        return False
    return True


async def _wait_gone(client: DockerClient, container_id: str, timeout: float) -> None:
    async with asyncio.timeout(timeout):
        while await _exists(client, container_id):
            await asyncio.sleep(0.2)


async def _events(corral: Corral, device_id: str) -> list[tuple[str, str | None, str]]:
    query = text("SELECT kind, to_state, message FROM device_events WHERE device_id = :id ORDER BY id")
    async with corral.database.session() as session:
        rows = (await session.execute(query, {"id": device_id})).all()
    return [(row.kind, row.to_state, row.message) for row in rows]


def _device_id(prefix: str) -> str:
    return f"{prefix}{uuid.uuid4().hex[:8]}"


async def test_an_orphan_container_is_removed_and_another_owners_is_not(
    host: Corral, docker_client: DockerClient, sleepers: list[Container]
) -> None:
    image = await host.runtime.ensure_image("browser")
    # The other installation's container first: once the orphan is gone, a pass
    # that listed both has run.
    foreign = await _sleeper(docker_client, sleepers, image, _device_id("foreign"), "0123456789abcdef")
    orphan_id = _device_id("orphan")
    orphan = await _sleeper(docker_client, sleepers, image, orphan_id, owner_id(host.settings))
    assert [i.device_id for i in await host.runtime.list()] == [orphan_id]

    await _wait_gone(docker_client, orphan.id, timeout=30)

    await asyncio.to_thread(foreign.reload)
    assert foreign.status == "running"
    assert await host.runtime.list() == []
    # An unknown device gets no row and no event.
    assert orphan_id not in [d.id for d in await host.devices(include_removed=True)]


async def test_a_vanished_container_fails_the_device_then_it_is_recovered(
    host: Corral, docker_client: DockerClient
) -> None:
    (device,) = await host.provision("browser", 1, env={"CORRAL_START_URL": "about:blank"})
    (ready,) = await host.wait_for([device.id], {"ready"}, timeout=300)
    assert (ready.state, ready.reason) == ("ready", None)
    before = await asyncio.to_thread(docker_client.containers.get, container_name(device.id))
    seen = len(await _events(host, device.id))

    await asyncio.to_thread(before.remove, force=True)

    def lifecycle(events: list[tuple[str, str | None, str]]) -> list[tuple[str, str | None]]:
        return [(kind, to_state) for kind, to_state, _ in events if kind in ("state", "recover")]

    async with asyncio.timeout(180):
        while ("state", "ready") not in lifecycle(after := (await _events(host, device.id))[seen:]):
            await asyncio.sleep(0.3)
    assert lifecycle(after) == [
        ("state", "failed"),
        ("recover", None),
        ("state", "provisioning"),
        ("state", "booting"),
        ("state", "ready"),
    ]
    messages = {(kind, to_state): message for kind, to_state, message in after}
    assert messages[("state", "failed")] in FAILED_MESSAGES
    assert messages[("recover", None)] == f"recovering: {messages[('state', 'failed')]}"
    current = await host.device(device.id)
    assert (current.state, current.reason) == ("ready", None)
    again = await asyncio.to_thread(docker_client.containers.get, container_name(device.id))
    assert again.id != before.id
    assert again.status == "running"
    recovery = [j for j in await host.jobs() if j.device_id == device.id]
    assert [(j.kind, j.state) for j in recovery] == [("provision", "succeeded"), ("provision", "succeeded")]


async def _insert_failed(host: Corral, device_id: str, minutes_ago: int) -> None:
    insert = text(
        "INSERT INTO devices (id, name, kind, state, reason, updated_at) "
        "VALUES (:id, :id, 'browser', 'failed', 'parked by the test', now() - make_interval(mins => :age))"
    )
    async with host.database.session() as session, session.begin():
        await session.execute(insert, {"id": device_id, "age": minutes_ago})


async def test_the_parked_ttl_removes_an_old_failed_device_and_keeps_a_young_one(
    host: Corral, docker_client: DockerClient, sleepers: list[Container]
) -> None:
    assert host.settings.parked_ttl_hours == 1.0
    old, young = _device_id("old"), _device_id("young")
    await _insert_failed(host, old, minutes_ago=120)
    await _insert_failed(host, young, minutes_ago=30)

    # (wait_for would return at once: the device is failed already.)
    async with asyncio.timeout(60):
        while (await host.device(old)).state != "removed":
            await asyncio.sleep(0.2)
    # Absence proved by a later pass: an orphan made now is gone only once a
    # pass that saw the young device (and left it) has run.
    image = await host.runtime.ensure_image("browser")
    marker = await _sleeper(docker_client, sleepers, image, _device_id("marker"), owner_id(host.settings))
    await _wait_gone(docker_client, marker.id, timeout=30)

    kept = await host.device(young)
    assert (kept.state, kept.reason) == ("failed", "parked by the test")
    jobs: list[Any] = await host.jobs()
    assert [(j.kind, j.device_id, j.state) for j in jobs] == [("remove", old, "succeeded")]
