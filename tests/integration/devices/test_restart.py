"""Quitting stops embedded Postgres; devices keep running and come back on the next start."""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest
from docker import DockerClient

from backend.config import Settings
from backend.corral import Corral

pytestmark = pytest.mark.docker


@pytest.fixture
def embedded_settings(short_tmp: Path) -> Iterator[Settings]:
    data = Path(tempfile.mkdtemp(prefix="corral-embedded-"))
    os.chmod(data, 0o755)  # as root, Postgres runs as its own user and must reach pgdata
    yield Settings(data_dir=data, runtime_dir=short_tmp / "run", device_network="none")
    shutil.rmtree(data, ignore_errors=True)


def _postmaster_running(settings: Settings) -> bool:
    pid_file = settings.pgdata_dir / "postmaster.pid"
    return pid_file.exists() and psutil.pid_exists(int(pid_file.read_text().split()[0]))


async def test_quit_stops_postgres_and_devices_survive(
    embedded_settings: Settings, docker_client: DockerClient
) -> None:
    corral = await Corral.start(embedded_settings, role="host")
    try:
        (device,) = await corral.provision("browser", 1)
        (ready,) = await corral.wait_for([device.id], {"ready"}, timeout=600)
        assert ready.state == "ready", ready.reason
    finally:
        await corral.stop()
    assert not _postmaster_running(embedded_settings)
    (container,) = docker_client.containers.list(filters={"label": f"corral.device={device.id}"})
    assert container.status == "running"

    corral = await Corral.start(embedded_settings, role="host")
    try:
        (again,) = await corral.devices()
        assert (again.id, again.state) == (device.id, "ready")
        # The agent finds the new hub on its own.
        hello = await corral.hub.wait_hello(device.id, timeout=30)
        assert hello.device_id == device.id
        await corral.remove([device.id])
        await corral.wait_for([device.id], {"removed"}, timeout=60)
    finally:
        await corral.stop()
