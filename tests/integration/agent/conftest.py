"""A real browser device for the agent's tests: real dockerd, the real image, ``--network none``."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import pytest
from docker import DockerClient
from docker.models.containers import Container

from backend.corral import Corral
from tests.integration.devices.conftest import corral  # noqa: F401  (the fixture, reused)

BUILD_AND_BOOT = 900.0  # a cold image build on a fresh machine takes minutes
TEST_PAGES = "file:///opt/corral/start/test"
BROWSER_START = 60.0
HUB_TIMEOUT = 90.0  # longer than any command's own timeout here: the agent's answer is under test


@dataclass
class Device:
    """One ready browser device and the ways a test reaches it."""

    corral: Corral
    id: str
    container: Container

    async def command(self, name: str, **args: Any) -> Any:
        """Run *name* through the hub; return its data. Fails the test with the agent's error."""
        result = await self.corral.hub.command(self.id, name, args, timeout=HUB_TIMEOUT)
        assert result.ok, f"{name} {args}: {result.error}"
        return result.data

    async def error(self, name: str, **args: Any) -> str:
        """Run *name*, which must fail; return the agent's one-line error."""
        result = await self.corral.hub.command(self.id, name, args, timeout=HUB_TIMEOUT)
        assert not result.ok, f"{name} {args} should have failed, got {result.data}"
        return result.error or ""

    def exec(self, *argv: str) -> str:
        """Run *argv* in the container as the device's user (blocking; tests call it in a thread)."""
        code, output = self.container.exec_run(list(argv))
        assert code == 0, output.decode(errors="replace")
        return str(output.decode(errors="replace"))


@pytest.fixture
async def device(corral: Corral, docker_client: DockerClient) -> Device:  # noqa: F811
    (created,) = await corral.provision("browser", 1)
    (final,) = await corral.wait_for([created.id], {"ready"}, timeout=BUILD_AND_BOOT)
    assert final.state == "ready", final.reason
    (container,) = docker_client.containers.list(filters={"label": f"corral.device={final.id}"})
    device = Device(corral, final.id, container)
    # "ready" is the agent's hello; Chromium comes up a few seconds later (more on a loaded
    # machine), and each test's first command should not spend its own timeout on that.
    await device.command("eval_script", script="document.readyState", timeout=BROWSER_START)
    return device
