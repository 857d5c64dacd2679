"""DockerRuntime against the real daemon: the browser image, real containers, no network.

The image is built on first use (a cold build bootstraps Debian and takes a
minute or two) and reused afterwards while its inputs are unchanged.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path
from typing import Any

import docker
import pytest

from backend.config.settings import Settings
from backend.runtime.base import DeviceSpec
from backend.runtime.containers import owner_id
from backend.runtime.docker import DockerRuntime
from backend.runtime.exceptions import RuntimeUnavailable
from tests.require import missing

BOOT_TIMEOUT_S = 20.0

MakeDevice = Callable[..., Awaitable[DeviceSpec]]


async def rfb_greeting(socket_path: Path, timeout: float = BOOT_TIMEOUT_S) -> bytes:
    """The server's first 12 bytes over the unix socket, retrying until it answers."""
    deadline = time.monotonic() + timeout
    while True:
        try:
            reader, writer = await asyncio.open_unix_connection(str(socket_path))
        except OSError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.05)
            continue
        try:
            return await asyncio.wait_for(reader.readexactly(12), timeout)
        finally:
            writer.close()
            await writer.wait_closed()


@pytest.fixture(scope="session")
def data_dir() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="corral-rt-data-"))
    yield path
    shutil.rmtree(path, ignore_errors=True)


@pytest.fixture
def runtime_settings(data_dir: Path) -> Settings:
    return Settings(data_dir=data_dir, runtime_dir=Path("/tmp/corral-rt-unused"), device_network="none")


@pytest.fixture
async def runtime(runtime_settings: Settings) -> AsyncIterator[DockerRuntime]:
    runtime = DockerRuntime(runtime_settings)
    try:
        await runtime.ping()
    except RuntimeUnavailable as exc:
        await runtime.close()
        missing("docker", f"Docker daemon unreachable: {exc}")
    try:
        yield runtime
    finally:
        await runtime.close()


@pytest.fixture
async def make_device(runtime: DockerRuntime, runtime_settings: Settings) -> AsyncIterator[MakeDevice]:
    """Create devices with private runtime dirs; remove containers and dirs afterwards."""
    made: list[DeviceSpec] = []
    uid = runtime_settings.effective_device_uid

    async def make(name: str = "Test device", **env: str) -> DeviceSpec:
        device_id = f"t{uuid.uuid4().hex[:10]}"
        # Under /tmp and short: unix socket paths must stay below 108 bytes.
        runtime_dir = Path(tempfile.mkdtemp(prefix="crl-", dir="/tmp"))
        os.chmod(runtime_dir, 0o700)
        os.chown(runtime_dir, uid, uid)
        spec = DeviceSpec(
            device_id=device_id,
            name=name,
            kind="browser",
            runtime_dir=runtime_dir,
            env={"CORRAL_AGENT_TOKEN": "test-token", **env},
        )
        made.append(spec)
        return spec

    yield make
    for spec in made:
        await runtime.remove(spec.device_id)
        shutil.rmtree(spec.runtime_dir, ignore_errors=True)


def run_in(client: docker.DockerClient, container_id: str, command: list[str]) -> None:
    """Run *command* inside the container and wait for it (blocking)."""
    created = client.api.exec_create(container_id, command)
    client.api.exec_start(created["Id"])


def _inspect(client: docker.DockerClient, device_id: str) -> dict[str, Any]:
    attrs: dict[str, Any] = client.api.inspect_container(f"corral-{device_id}")
    return attrs


@pytest.mark.docker
async def test_image_is_cached_once_built(runtime: DockerRuntime) -> None:
    reference = await runtime.ensure_image("browser")
    messages: list[str] = []

    assert await runtime.ensure_image("browser", lambda _f, message: messages.append(message)) == reference
    assert reference == "corral/browser:latest"
    assert messages == ["corral/browser:latest is up to date"]


@pytest.mark.docker
async def test_device_screen_answers_rfb_on_its_unix_socket(
    runtime: DockerRuntime, make_device: MakeDevice
) -> None:
    spec = await make_device()

    instance = await runtime.create(spec)

    assert instance.device_id == spec.device_id
    assert instance.status == "running"
    assert await rfb_greeting(spec.runtime_dir / "vnc.sock") == b"RFB 003.008\n"
    assert (spec.runtime_dir / "vnc.sock").stat().st_mode & 0o777 == 0o600


@pytest.mark.docker
async def test_container_contract(
    runtime: DockerRuntime,
    runtime_settings: Settings,
    make_device: MakeDevice,
    docker_client: docker.DockerClient,
) -> None:
    spec = await make_device(name="Contract")
    await runtime.create(spec)
    await rfb_greeting(spec.runtime_dir / "vnc.sock")
    attrs = _inspect(docker_client, spec.device_id)
    uid = runtime_settings.effective_device_uid

    # (plus the image's own labels, e.g. its content hash)
    assert (
        attrs["Config"]["Labels"].items()
        >= {
            "corral.device": spec.device_id,
            "corral.kind": "browser",
            "corral.name": "Contract",
            "corral.owner": owner_id(runtime_settings),
        }.items()
    )
    assert attrs["Config"]["User"] == f"{uid}:{uid}"
    assert attrs["HostConfig"]["NetworkMode"] == "none"
    assert not attrs["HostConfig"]["PortBindings"]
    assert not attrs["NetworkSettings"]["Ports"]
    assert attrs["HostConfig"]["CapDrop"] == ["ALL"]
    assert attrs["HostConfig"]["SecurityOpt"] == ["no-new-privileges"]
    assert "CORRAL_DEVICE_ID=" + spec.device_id in attrs["Config"]["Env"]
    # Every process in the container runs as the device uid, none as root.
    top = docker_client.api.top(attrs["Id"], ps_args="-eo pid,uid,comm")
    uids = {int(process[1]) for process in top["Processes"]}
    assert uids == {uid}
    assert (spec.runtime_dir / "vnc.sock").stat().st_uid == uid


@pytest.mark.docker
async def test_create_is_idempotent_and_restarts_a_stopped_device(
    runtime: DockerRuntime, make_device: MakeDevice, docker_client: docker.DockerClient
) -> None:
    spec = await make_device()
    first = await runtime.create(spec)
    again = await runtime.create(spec)
    assert again.instance_id == first.instance_id

    await asyncio.to_thread(docker_client.api.stop, first.instance_id, 5)
    stopped = await runtime.find(spec.device_id)
    assert stopped is not None
    assert stopped.status == "exited"
    assert stopped.exit_code == 0  # SIGTERM handled, not killed after the timeout

    revived = await runtime.create(spec)
    assert revived.instance_id == first.instance_id
    assert revived.status == "running"
    assert await rfb_greeting(spec.runtime_dir / "vnc.sock") == b"RFB 003.008\n"


@pytest.mark.docker
async def test_concurrent_creates_make_one_container(runtime: DockerRuntime, make_device: MakeDevice) -> None:
    spec = await make_device()

    first, second = await asyncio.gather(runtime.create(spec), runtime.create(spec))

    assert first.instance_id == second.instance_id
    assert [i.instance_id for i in await runtime.list() if i.device_id == spec.device_id] == [
        first.instance_id
    ]


@pytest.mark.docker
async def test_remove_leaves_no_container(runtime: DockerRuntime, make_device: MakeDevice) -> None:
    spec = await make_device()
    await runtime.create(spec)
    assert spec.device_id in {instance.device_id for instance in await runtime.list()}

    await runtime.remove(spec.device_id)
    await runtime.remove(spec.device_id)  # already gone: no error

    assert await runtime.find(spec.device_id) is None
    assert spec.device_id not in {instance.device_id for instance in await runtime.list()}
    assert await runtime.logs(spec.device_id) == ""


@pytest.mark.docker
async def test_other_installations_do_not_see_the_device(
    runtime: DockerRuntime, make_device: MakeDevice, tmp_path: Path
) -> None:
    spec = await make_device()
    await runtime.create(spec)
    other = DockerRuntime(Settings(data_dir=tmp_path / "other", device_network="none"))
    try:
        assert await other.find(spec.device_id) is None
        assert spec.device_id not in {instance.device_id for instance in await other.list()}
        await other.remove(spec.device_id)  # not its device: nothing happens
    finally:
        await other.close()

    assert await runtime.find(spec.device_id) is not None


@pytest.mark.docker
async def test_logs_tell_what_happened(runtime: DockerRuntime, make_device: MakeDevice) -> None:
    spec = await make_device()
    await runtime.create(spec)
    await rfb_greeting(spec.runtime_dir / "vnc.sock")

    deadline = time.monotonic() + BOOT_TIMEOUT_S
    while "Xvnc ready" not in (logs := await runtime.logs(spec.device_id, tail=200)):
        assert time.monotonic() < deadline, logs
        await asyncio.sleep(0.1)


@pytest.mark.docker
async def test_device_stops_with_an_error_when_xvnc_dies(
    runtime: DockerRuntime, make_device: MakeDevice, docker_client: docker.DockerClient
) -> None:
    spec = await make_device()
    instance = await runtime.create(spec)
    await rfb_greeting(spec.runtime_dir / "vnc.sock")

    await asyncio.to_thread(run_in, docker_client, instance.instance_id, ["pkill", "-KILL", "-x", "Xvnc"])
    result = await asyncio.to_thread(docker_client.api.wait, instance.instance_id, int(BOOT_TIMEOUT_S))

    assert result["StatusCode"] != 0
    found = await runtime.find(spec.device_id)
    assert found is not None
    assert found.status == "exited"
    assert "Xvnc exited" in await runtime.logs(spec.device_id)


@pytest.mark.docker
async def test_a_dying_agent_is_restarted_and_the_screen_stays(
    runtime: DockerRuntime, make_device: MakeDevice, docker_client: docker.DockerClient
) -> None:
    spec = await make_device()
    instance = await runtime.create(spec)
    await rfb_greeting(spec.runtime_dir / "vnc.sock")

    def agent_pids() -> set[str]:
        top = docker_client.api.top(instance.instance_id, ps_args="-eo pid,args")
        return {process[0] for process in top["Processes"] if "-m agent" in process[1]}

    deadline = time.monotonic() + BOOT_TIMEOUT_S
    while not (before := await asyncio.to_thread(agent_pids)):
        assert time.monotonic() < deadline, "the agent never started"
        await asyncio.sleep(0.2)
    await asyncio.to_thread(
        run_in, docker_client, instance.instance_id, ["pkill", "-KILL", "-f", "python -m agent"]
    )

    while not (after := await asyncio.to_thread(agent_pids)) or after == before:
        assert time.monotonic() < deadline, "the agent was not restarted"
        await asyncio.sleep(0.2)
    assert await rfb_greeting(spec.runtime_dir / "vnc.sock") == b"RFB 003.008\n"
    assert "agent exited" in await runtime.logs(spec.device_id)


async def test_unreachable_daemon_raises_runtime_unavailable_with_a_hint(tmp_path: Path) -> None:
    runtime = DockerRuntime(
        Settings(data_dir=tmp_path, docker_host="unix:///nonexistent.sock")
    )  # must not fail
    spec = DeviceSpec(device_id="x", name="x", kind="browser", runtime_dir=tmp_path)

    with pytest.raises(RuntimeUnavailable, match="systemctl start docker") as caught:
        await runtime.ping()
    assert "unix:///nonexistent.sock" in str(caught.value)
    with pytest.raises(RuntimeUnavailable, match="systemctl start docker"):
        await runtime.create(spec)
    await runtime.close()
