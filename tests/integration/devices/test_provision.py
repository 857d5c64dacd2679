"""Provision real browser devices in Docker, end to end."""

from __future__ import annotations

import asyncio
import subprocess

import pytest
from docker import DockerClient
from websockets.asyncio.client import connect
from websockets.exceptions import ConnectionClosed, InvalidStatus

from backend.auth import tokens
from backend.corral import Corral
from tests.rfb import first_update

pytestmark = pytest.mark.docker

BUILD_AND_BOOT = 900.0  # a cold image build on a fresh machine takes minutes


async def _refused(url: str) -> bool:
    """True when the proxy turns *url* away without a single RFB byte."""
    try:
        async with connect(url, subprotocols=["binary"], open_timeout=5) as ws:
            await asyncio.wait_for(ws.recv(), 5)
    except (InvalidStatus, ConnectionClosed):
        return True
    return False


async def test_provision_two_stream_and_remove(corral: Corral, docker_client: DockerClient) -> None:
    created = await corral.provision("browser", 2)
    final = await corral.wait_for([d.id for d in created], {"ready"}, timeout=BUILD_AND_BOOT)
    assert [d.state for d in final] == ["ready", "ready"], [d.reason for d in final]

    client = docker_client
    for device in final:
        (container,) = client.containers.list(filters={"label": f"corral.device={device.id}"})
        assert container.attrs["HostConfig"]["NetworkMode"] == "none"
        assert not container.attrs["NetworkSettings"]["Ports"]
        assert container.attrs["Config"]["User"].split(":")[0] not in ("", "0", "root")
        # Nothing inside the device listens on TCP either (state 0A = LISTEN).
        tcp = container.exec_run(["cat", "/proc/net/tcp", "/proc/net/tcp6"]).output.decode()
        assert not [line for line in tcp.splitlines()[1:] if line.split()[3:4] == ["0A"]]

        width, height = await first_update(corral.pane_url(device.id))
        assert width > 0 and height > 0

    # The only TCP listener of ours is the stream proxy, on loopback.
    listeners = (
        await asyncio.to_thread(subprocess.run, ["ss", "-Hltnp"], capture_output=True, text=True)
    ).stdout
    ours = [line for line in listeners.splitlines() if f":{corral.stream_port} " in line]
    assert ours
    assert all("127.0.0.1:" in line for line in ours)
    assert "Xvnc" not in listeners

    secret = tokens.load_or_create_secret(corral.settings.secret_path)
    device_id = final[0].id
    base = f"ws://127.0.0.1:{corral.stream_port}/devices/{device_id}"
    refused = [
        base,
        f"{base}?token={tokens.sign(secret, 'view', device_id, -1)}",
        f"{base}?token={tokens.sign(b'f' * 32, 'view', device_id, 60)}",
        f"{base}?token={tokens.sign(secret, 'agent', device_id, 60)}",
    ]
    for url in refused:
        assert await _refused(url), url

    await corral.remove([d.id for d in final])
    removed = await corral.wait_for([d.id for d in final], {"removed"}, timeout=60)
    assert [d.state for d in removed] == ["removed", "removed"]
    assert await corral.runtime.list() == []
    assert not any(corral.settings.device_dir(d.id).exists() for d in final)


async def test_container_dying_while_booting_retries_then_fails_with_reason(corral: Corral) -> None:
    (device,) = await corral.provision("browser", 1, env={"CORRAL_SCREEN": "not-a-geometry"})
    (final,) = await corral.wait_for([device.id], {"ready"}, timeout=BUILD_AND_BOOT)
    assert final.state == "failed"
    assert final.reason
    assert "exited" in final.reason or "did not come up" in final.reason
    async with corral.database.session() as session:
        from sqlalchemy import text

        attempts = await session.scalar(
            text("SELECT attempts FROM jobs WHERE device_id = :id AND kind = 'provision'"), {"id": device.id}
        )
    assert attempts == 3
    assert await corral.runtime.find(device.id) is None
