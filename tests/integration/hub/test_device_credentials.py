"""Agent credentials with real devices: real dockerd, real containers, real Postgres.

Before: the agent token was in the container's environment (``docker inspect``)
and lived 24 h; after that a restarted container's agent was refused forever
while its device said ``ready``, and a killed container took 64 s to recover.
"""

from __future__ import annotations

import asyncio
import json
import time
from collections.abc import AsyncIterator

import pytest
from docker import DockerClient
from sqlalchemy import select

from agent.protocol import decode_credential
from backend.config import Settings
from backend.corral import Corral
from backend.db.models import DeviceEvent

pytestmark = pytest.mark.docker

BUILD_AND_BOOT = 900.0  # a cold image build on a fresh machine takes minutes
SESSION_TTL = 20.0


@pytest.fixture
def short_ttl_settings(settings: Settings) -> Settings:
    return settings.model_copy(
        update={"agent_session_ttl": SESSION_TTL, "reconcile_interval": 0.5, "job_max_attempts": 1}
    )


@pytest.fixture
async def cleanup(docker_available: None) -> AsyncIterator[list[Corral]]:
    """Corrals a test started; at the end the last one removes every device, then all stop."""
    started: list[Corral] = []
    yield started
    if started:
        last = started[-1]
        ids = [d.id for d in await last.devices() if d.state != "removed"]
        if ids:
            await last.remove(ids)
            await last.wait_for(ids, {"removed"}, timeout=120)
    for corral in started:
        await corral.stop()


async def _state_changes(corral: Corral, device_id: str) -> list[DeviceEvent]:
    async with corral.database.session() as session:
        rows = await session.scalars(
            select(DeviceEvent)
            .where(DeviceEvent.device_id == device_id, DeviceEvent.kind == "state")
            .order_by(DeviceEvent.id)
        )
        return list(rows)


async def _recovery_started(corral: Corral, device_id: str) -> bool:
    return any(
        e.from_state == "failed" and e.to_state == "provisioning"
        for e in await _state_changes(corral, device_id)
    )


async def test_the_credential_is_a_private_file_never_in_the_environment(
    short_ttl_settings: Settings, cleanup: list[Corral], docker_client: DockerClient
) -> None:
    settings = short_ttl_settings
    corral = await Corral.start(settings, role="host", stream=False)
    cleanup.append(corral)
    (device,) = await corral.provision("browser", 1)
    (ready,) = await corral.wait_for([device.id], {"ready"}, timeout=BUILD_AND_BOOT)
    assert ready.state == "ready", ready.reason

    path = settings.device_paths(device.id).agent_credential
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.stat().st_uid == settings.effective_device_uid
    credential = decode_credential(path.read_bytes())
    assert credential.device_id == device.id
    assert credential.session_ttl == SESSION_TTL

    (container,) = docker_client.containers.list(filters={"label": f"corral.device={device.id}"})
    config = container.attrs["Config"]
    names = sorted(entry.split("=", 1)[0] for entry in config["Env"])
    assert not [name for name in names if "TOKEN" in name or "CRED" in name or "SECRET" in name], names
    inspected = json.dumps(container.attrs)
    assert credential.key not in inspected
    assert "AGENT_TOKEN" not in inspected
    # Nor on the agent's command line inside the device.
    top = container.top(ps_args="-eo pid,args")
    agent_lines = [" ".join(p) for p in top["Processes"] if "-m agent" in " ".join(p)]
    assert agent_lines and all(credential.key not in line for line in agent_lines)

    await corral.remove([device.id])
    await corral.wait_for([device.id], {"removed"}, timeout=60)
    assert not path.exists()


async def test_host_restart_and_kill_after_expiry_recover_within_5s(
    short_ttl_settings: Settings, cleanup: list[Corral], docker_client: DockerClient
) -> None:
    settings = short_ttl_settings
    first = await Corral.start(settings, role="host", stream=False)
    cleanup.append(first)
    (device,) = await first.provision("browser", 1)
    (ready,) = await first.wait_for([device.id], {"ready"}, timeout=BUILD_AND_BOOT)
    assert ready.state == "ready", ready.reason
    old_credential = settings.device_paths(device.id).agent_credential.read_bytes()
    ready_at = time.monotonic()

    # Not synchronisation: the point is that every session token issued so far
    # has expired before the host restarts and the container is killed.
    await asyncio.sleep(SESSION_TTL + 1 - (time.monotonic() - ready_at))

    await first.stop()
    cleanup.remove(first)
    second = await Corral.start(settings, role="host", stream=False)
    cleanup.append(second)
    # The new host rotated the credential; the running agent reads it and gets in.
    assert settings.device_paths(device.id).agent_credential.read_bytes() != old_credential
    await second.hub.wait_hello(device.id, timeout=30)
    (still,) = await second.devices()
    assert still.state == "ready"

    (container,) = docker_client.containers.list(filters={"label": f"corral.device={device.id}"})
    killed_at = time.monotonic()
    await asyncio.to_thread(container.kill)

    # The reconciler sees the dead container (failed) and queues a recovery,
    # which starts (failed -> provisioning) ...
    async with asyncio.timeout(30):
        while not await _recovery_started(second, device.id):
            await asyncio.sleep(0.05)
    # ... and brings the device back.
    (back,) = await second.wait_for([device.id], {"ready"}, timeout=60)
    kill_to_ready = time.monotonic() - killed_at
    assert back.state == "ready", back.reason

    changes = await _state_changes(second, device.id)
    recovery = [e for e in changes if e.from_state == "failed" and e.to_state == "provisioning"]
    back_up = [e for e in changes if e.from_state == "booting" and e.to_state == "ready"]
    assert len(recovery) == 1 and len(back_up) == 2, [(e.from_state, e.to_state, e.message) for e in changes]
    booting = [e for e in changes if e.from_state == "provisioning" and e.to_state == "booting"]
    provision_to_ready = (back_up[-1].at - recovery[0].at).total_seconds()
    figures = (
        f"recovery provision to ready {provision_to_ready:.2f}s"
        f" (container started after {(booting[-1].at - recovery[0].at).total_seconds():.2f}s,"
        f" screen and agent after {(back_up[-1].at - booting[-1].at).total_seconds():.2f}s more);"
        f" docker kill to ready {kill_to_ready:.2f}s"
    )
    print(figures)
    assert provision_to_ready < 5.0, figures
    # No attempt of the restarted agent was refused (before: its stale token was,
    # and the device came back only after a boot timeout and a second attempt).
    assert second.hub.refusal_since(device.id, killed_at) is None
    assert (await second.hub.command(device.id, "ping", {})).ok


async def test_an_agent_the_hub_refuses_keeps_its_device_from_ready(
    short_ttl_settings: Settings, cleanup: list[Corral], monkeypatch: pytest.MonkeyPatch
) -> None:
    settings = short_ttl_settings.model_copy(update={"boot_timeout": 15.0})
    corral = await Corral.start(settings, role="host", stream=False)
    cleanup.append(corral)
    await corral.runtime.ensure_image("browser")
    # The device's file is written, but the hub never installs the key: every
    # session token the real agent derives is refused.
    monkeypatch.setattr(corral.hub._credentials, "install", lambda device_id, key: None)
    (device,) = await corral.provision("browser", 1)
    (final,) = await corral.wait_for([device.id], {"ready"}, timeout=120)
    assert final.state == "failed"
    assert final.reason is not None
    assert "no agent (agent refused: device " in final.reason, final.reason
    assert "has no credential" in final.reason
    async with corral.database.session() as session:
        refusals = list(
            await session.scalars(
                select(DeviceEvent.message).where(
                    DeviceEvent.device_id == device.id, DeviceEvent.kind == "agent-refused"
                )
            )
        )
    # Coalesced: the first refusal at once, then a summary per 10 s window.
    assert refusals and refusals[0].startswith("agent refused: device ")
    assert len(refusals) <= 4, refusals
