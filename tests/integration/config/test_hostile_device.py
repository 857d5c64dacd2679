"""What one device leaves in its directory never stops the host, nor its own removal.

A real host (Postgres, Docker, the hub on real unix sockets). The device is the
device uid (10001), entered with ``setpriv`` and given its directory as a
descriptor, as a container sees it through its bind mount; shapes a device cannot
make itself (its directory replaced) are made as root.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
from collections.abc import AsyncIterator, Awaitable, Callable, Iterator
from pathlib import Path

import pytest
from sqlalchemy import select

from backend.config import Settings, rundir
from backend.corral import Corral
from backend.db import Database
from backend.db.models import Device, DeviceEvent
from backend.runtime.base import ProgressCallback
from backend.runtime.docker import DockerRuntime
from backend.runtime.exceptions import DeviceRuntimeError

DEVICE_UID = 10001
StartHost = Callable[[], Awaitable[tuple[Corral, "HeldRuntime"]]]


@pytest.fixture(autouse=True)
def _as_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("plays the device uid with setpriv: needs root")


class HeldRuntime(DockerRuntime):
    """The real Docker runtime, except that image checks wait for the test and remove() can fail.

    A recovery provision would otherwise build the device image (minutes); the
    test lets it fail once its checks are done.
    """

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.release = asyncio.Event()
        self.fail_remove = False

    async def ensure_image(
        self, kind: str, progress: ProgressCallback | None = None, *, force: bool = False
    ) -> str:
        await self.release.wait()
        raise DeviceRuntimeError("image held by the test")

    async def remove(self, device_id: str) -> None:
        if self.fail_remove:
            raise DeviceRuntimeError("Docker refused to remove the container (injected)")
        await super().remove(device_id)


@pytest.fixture
def device_settings(settings: Settings) -> Settings:
    return settings.model_copy(update={"device_uid": DEVICE_UID, "job_max_attempts": 1})


@pytest.fixture
async def devices(device_settings: Settings, docker_available: None) -> list[str]:
    """Two devices the last host left ``provisioning``, each with its directory."""
    database = await Database.open(device_settings)
    try:
        async with database.session() as session, session.begin():
            session.add_all(
                Device(id=d, name=d, kind="browser", state="provisioning") for d in ("dev-a", "dev-b")
            )
    finally:
        await database.close()
    for device_id in ("dev-a", "dev-b"):
        rundir.make_device_dir(device_settings.runtime_dir, device_id, DEVICE_UID)
    return ["dev-a", "dev-b"]


@pytest.fixture
async def host(device_settings: Settings, devices: list[str]) -> AsyncIterator[StartHost]:
    """A function that starts the host (after the test planted what it wants)."""
    started: list[tuple[Corral, HeldRuntime]] = []

    async def start() -> tuple[Corral, HeldRuntime]:
        runtime = HeldRuntime(device_settings)
        corral = await Corral.start(device_settings, role="host", stream=False, runtime=runtime)
        started.append((corral, runtime))
        return corral, runtime

    yield start
    for corral, runtime in started:
        runtime.release.set()
        await corral.stop()


@pytest.fixture
def victim() -> Iterator[Path]:
    path = Path(tempfile.mkdtemp(prefix="crl-victim-", dir="/tmp"))
    (path / "data").write_bytes(b"root's data")
    yield path
    shutil.rmtree(path)


def _as_device(settings: Settings, device_id: str, script: str) -> None:
    """Run *script* as the device uid with ``fd`` its directory (the container's /run/corral)."""
    fd = os.open(settings.device_dir(device_id), os.O_RDONLY | os.O_DIRECTORY)
    try:
        result = subprocess.run(
            [
                *("setpriv", f"--reuid={DEVICE_UID}", f"--regid={DEVICE_UID}", "--clear-groups", "--"),
                *(sys.executable, "-I", "-c", f"import os\nfd = {fd}\n" + textwrap.dedent(script)),
            ],
            pass_fds=(fd,),
            capture_output=True,
            timeout=120,
            check=False,
        )
    finally:
        os.close(fd)
    assert result.returncode == 0, result.stderr.decode()


_DIRS_AT_OUR_NAMES = """
    for name in ("agent.cred", "hub.sock"):
        os.mkdir(name, dir_fd=fd)
        inner = os.open(name, os.O_RDONLY | os.O_DIRECTORY, dir_fd=fd)
        os.mkdir("x", dir_fd=inner)
        os.close(inner)
"""

_DEEP = """
    here = os.dup(fd)
    for _ in range(3000):
        os.mkdir("d", dir_fd=here)
        inner = os.open("d", os.O_RDONLY | os.O_DIRECTORY, dir_fd=here)
        os.close(here)
        here = inner
    os.symlink("/etc", "etc", dir_fd=here)
"""


def _served(settings: Settings, device_id: str) -> None:
    paths = settings.device_paths(device_id)
    socket_info, credential_info = paths.hub_socket.lstat(), paths.agent_credential.lstat()
    assert stat.S_ISSOCK(socket_info.st_mode) and socket_info.st_uid == DEVICE_UID
    assert stat.S_ISREG(credential_info.st_mode) and credential_info.st_uid == DEVICE_UID


async def _events(corral: Corral, device_id: str) -> list[tuple[str, str | None, str]]:
    async with corral.database.session() as session:
        rows = await session.scalars(
            select(DeviceEvent).where(DeviceEvent.device_id == device_id).order_by(DeviceEvent.id)
        )
        return [(event.kind, event.to_state, event.message) for event in rows]


async def test_directories_a_device_made_at_our_names_do_not_stop_the_host(
    device_settings: Settings, host: StartHost
) -> None:
    """Before: `corral serve` exited with "cannot write agent.cred … Is a directory" on every retry."""
    _as_device(device_settings, "dev-a", _DIRS_AT_OUR_NAMES)
    corral, _ = await host()
    assert corral.is_host
    for device_id in ("dev-a", "dev-b"):
        _served(device_settings, device_id)
        device = await corral.device(device_id)
        assert (device.state, device.reason) == ("provisioning", None)


async def test_a_device_the_host_cannot_serve_fails_alone_and_is_recovered(
    device_settings: Settings, host: StartHost, victim: Path
) -> None:
    """Before: one device's RuntimeDirError stopped all host work (Corral.start raised it)."""
    device_dir = device_settings.device_dir("dev-b")
    shutil.rmtree(device_dir)
    device_dir.symlink_to(victim)  # what no device can do itself: the strongest failure
    corral, _ = await host()
    assert corral.is_host
    _served(device_settings, "dev-a")
    assert (await corral.device("dev-a")).state == "provisioning"
    failed = await corral.device("dev-b")
    expected = (
        f"cannot serve its hub socket: {device_dir} is not a directory (a symlink or a file); "
        f"remove it (rm -rf {device_dir}) or point CORRAL_RUNTIME_DIR at a directory of your own"
    )
    assert (failed.state, failed.reason) == ("failed", expected)
    events = await _events(corral, "dev-b")
    assert ("state", "failed", expected) in events
    assert ("recover", None, f"recovering: {expected}") in events
    assert [job.kind for job in await corral.jobs() if job.device_id == "dev-b"] == ["provision"]
    assert os.listdir(victim) == ["data"]
    assert (victim / "data").read_bytes() == b"root's data"


async def test_a_device_that_buried_its_directory_is_removed(
    device_settings: Settings, host: StartHost
) -> None:
    """Before: RecursionError in shutil.rmtree; the device stayed `stopping`, "not removed: None"."""
    _as_device(device_settings, "dev-a", _DIRS_AT_OUR_NAMES + _DEEP)
    corral, _ = await host()
    await corral.remove(["dev-a"])
    try:
        (final,) = await corral.wait_jobs_done(["dev-a"], timeout=60)
    finally:
        # What is left would break the fixtures' clean-up (shutil.rmtree).
        left = device_settings.device_dir("dev-a")
        await asyncio.to_thread(subprocess.run, ["rm", "-rf", "--one-file-system", str(left)], check=True)
    assert (final.state, final.reason) == ("removed", None)
    assert not device_settings.device_dir("dev-a").exists()
    _served(device_settings, "dev-b")


async def test_a_removal_that_fails_says_why_on_the_device(
    device_settings: Settings, host: StartHost
) -> None:
    corral, runtime = await host()
    runtime.fail_remove = True
    await corral.remove(["dev-a"])
    (final,) = await corral.wait_jobs_done(["dev-a"], timeout=60)
    assert (final.state, final.reason) == (
        "failed",
        "removal failed: Docker refused to remove the container (injected)",
    )
