"""A farm for flow tests: its own database, a `corral serve` host process, real browser devices.

Module-scoped: provisioning a browser device takes seconds, so the tests of one
module share their devices (each test starts its own runs and reads only those).
The devices run with ``--network none``; everything they load comes from the image.
"""

from __future__ import annotations

import contextlib
import json
import os
import shutil
import tempfile
import uuid
from collections.abc import AsyncIterator, Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from backend.config import Settings
from backend.corral import Corral
from tests.serve import Serve, corral


@dataclass
class Farm:
    settings: Settings
    devices: list[str]
    """Device names, ready."""
    host: Serve
    """The `corral serve` hosting now (tests that kill it put the next one here)."""


def farm_settings(pg_server: object, root: Path) -> Settings:
    name = f"t_{uuid.uuid4().hex[:10]}"
    pg_server.psql(f"CREATE DATABASE {name};")  # type: ignore[attr-defined]
    return Settings(
        database_url=str(pg_server.get_uri(database=name, driver="asyncpg")),  # type: ignore[attr-defined]
        data_dir=root / "data",
        runtime_dir=root / "run",
        device_network="none",
        job_lease_seconds=2.0,
        reconcile_interval=1.0,
    )


def provision(settings: Settings, count: int) -> list[str]:
    """Provision *count* browser devices through the CLI (the host running) and return their names."""
    result = corral(settings, "provision", "--kind", "browser", "--count", str(count), "--wait")
    assert result.returncode == 0, result.stdout + result.stderr
    listed = json.loads(corral(settings, "devices", "--json").stdout)
    assert [d["state"] for d in listed] == ["ready"] * len(listed), listed
    return [d["name"] for d in listed]


def teardown_farm(farm: Farm) -> None:
    """Remove the devices (through the farm's host, or as a temporary host), then stop the host."""
    removed = corral(farm.settings, "rm", "--all", "--wait")
    farm.host.stop()
    assert removed.returncode == 0, removed.stdout + removed.stderr


def host_env(settings: Settings) -> dict[str, str]:
    return {
        "CORRAL_JOB_LEASE_SECONDS": str(settings.job_lease_seconds),
        "CORRAL_RECONCILE_INTERVAL": str(settings.reconcile_interval),
    }


@contextlib.contextmanager
def make_farm(pg_server: object, count: int) -> Iterator[Farm]:
    """A database, a `corral serve` host and *count* ready browser devices; all removed after."""
    root = Path(tempfile.mkdtemp(prefix="crl-f-", dir="/tmp"))
    os.chmod(root, 0o711)
    settings = farm_settings(pg_server, root)
    farm = Farm(settings, [], Serve(settings, **host_env(settings)))
    try:
        farm.host.wait_for("host role taken")
        farm.devices = provision(settings, count)
        yield farm
    finally:
        teardown_farm(farm)
        shutil.rmtree(root, ignore_errors=True)


@pytest.fixture(scope="module")
def farm(pg_server: object, docker_available: None) -> Iterator[Farm]:
    with make_farm(pg_server, 2) as made:
        yield made


@pytest.fixture
async def client(farm: Farm) -> AsyncIterator[Corral]:
    """A client Corral on the farm's database (the farm's `corral serve` hosts)."""
    instance = await Corral.start(farm.settings, role="client", stream=False)
    try:
        yield instance
    finally:
        await instance.stop()
