"""Background loops are supervised, failures show in health, and stop() stops everything."""

from __future__ import annotations

import asyncio
import os
import shutil
import tempfile
import time
from collections.abc import Awaitable, Callable, Iterator
from pathlib import Path
from typing import TypeVar

import asyncpg
import psutil
import pytest

from backend.config import Settings
from backend.corral import Corral
from backend.db.database import asyncpg_connect_kwargs
from backend.devices.reconciler import Reconciler
from backend.runtime.base import Instance
from backend.runtime.docker import DockerRuntime

T = TypeVar("T")


class FlakyRuntime(DockerRuntime):
    """The real Docker runtime, except that list() fails while ``failing`` and close() can fail."""

    def __init__(self, settings: Settings) -> None:
        super().__init__(settings)
        self.failing = False
        self.fail_close = False

    async def list(self) -> list[Instance]:
        if self.failing:
            raise RuntimeError("injected list failure")
        return await super().list()

    async def close(self) -> None:
        await super().close()
        if self.fail_close:
            raise RuntimeError("injected close failure")


async def _until(probe: Callable[[], Awaitable[T]], accept: Callable[[T], bool], timeout: float) -> T:
    deadline = time.monotonic() + timeout
    while True:
        value = await probe()
        if accept(value):
            return value
        assert time.monotonic() < deadline, f"condition not met within {timeout}s; last: {value}"
        await asyncio.sleep(0.05)


async def test_a_failing_reconciler_is_logged_shown_and_runs_again(
    settings: Settings, docker_available: None, caplog: pytest.LogCaptureFixture
) -> None:
    runtime = FlakyRuntime(settings)
    runtime.failing = True
    corral = await Corral.start(settings, role="host", stream=False, runtime=runtime)
    try:
        failing = await _until(corral.health, lambda h: not h.background_ok, 10)
        task = next(t for t in failing.tasks if t.name == Reconciler.TASK)
        assert task.status == "failing"
        assert task.last_error == "RuntimeError: injected list failure"
        assert "reconciler: failing (" in failing.background_message
        assert "RuntimeError: injected list failure" in failing.background_message
        logged = [r for r in caplog.records if "background task reconciler failed" in r.getMessage()]
        assert logged and logged[0].exc_info is not None  # with its traceback

        runtime.failing = False
        recovered = await _until(
            corral.health,
            lambda h: any(
                t.name == "reconciler"
                and t.status == "running"
                and t.last_ok_at is not None
                and t.last_error_at is not None
                and t.last_ok_at > t.last_error_at
                for t in h.tasks
            ),
            15,
        )
        assert recovered.background_ok
        task = next(t for t in recovered.tasks if t.name == "reconciler")
        assert task.failures >= 1  # the failure stays visible after it recovered
        assert recovered.role == "host"
    finally:
        await corral.stop()


async def _connections(url: str) -> int:
    """Other sessions on this test's database."""
    connection = await asyncpg.connect(**asyncpg_connect_kwargs(url))
    try:
        return int(
            await connection.fetchval(
                "SELECT count(*) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"
            )
        )
    finally:
        await connection.close()


async def test_stop_stops_everything_when_a_part_fails(settings: Settings, docker_available: None) -> None:
    url = settings.database_url or ""
    connection = await asyncpg.connect(**asyncpg_connect_kwargs(url))
    corral: Corral | None = None
    try:
        runtime = FlakyRuntime(settings)
        runtime.failing = True  # the reconciler must not touch the device below
        runtime.fail_close = True
        corral = await Corral.start(settings, role="client", stream=False)
        await corral.stop()
        # A device that was up: the host serves its hub socket.
        await connection.execute(
            "INSERT INTO devices (id, name, kind, state) VALUES ('d0stop', 'browser-1', 'browser', 'ready')"
        )
        corral = await Corral.start(settings, role="host", stream=False, runtime=runtime)
        hub_socket = settings.device_paths("d0stop").hub_socket
        assert hub_socket.exists()
        assert corral._reconciler is not None and corral._worker is not None

        async def broken_stop() -> None:
            raise RuntimeError("injected reconciler stop failure")

        corral._reconciler.stop = broken_stop  # type: ignore[method-assign]
        with pytest.raises(RuntimeError, match="injected reconciler stop failure"):
            await corral.stop()
    finally:
        await connection.close()

    # Everything after the failing step still stopped: the hub, the worker, every
    # task, every connection (worker pool, engine, LISTEN, host lock).
    assert not hub_socket.exists()
    assert corral.database.closed
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []
    assert await _until(lambda: _connections(url), lambda n: n == 0, 10) == 0


@pytest.fixture
def embedded_settings(short_tmp: Path) -> Iterator[Settings]:
    data = Path(tempfile.mkdtemp(prefix="corral-embedded-"))
    os.chmod(data, 0o755)  # as root, Postgres runs as its own user and must reach pgdata
    yield Settings(data_dir=data, runtime_dir=short_tmp / "run", device_network="none")
    shutil.rmtree(data, ignore_errors=True)


async def test_stop_stops_the_embedded_postgres_when_parts_fail(
    embedded_settings: Settings, docker_available: None
) -> None:
    runtime = FlakyRuntime(embedded_settings)
    runtime.fail_close = True
    corral = await Corral.start(embedded_settings, role="host", stream=False, runtime=runtime)
    pid_file = embedded_settings.pgdata_dir / "postmaster.pid"
    postmaster = int(pid_file.read_text().split()[0])
    assert psutil.pid_exists(postmaster)

    async def broken_stop() -> None:
        raise RuntimeError("injected hub stop failure")

    corral.hub.stop = broken_stop  # type: ignore[method-assign]
    with pytest.raises(RuntimeError, match="injected hub stop failure"):
        await corral.stop()
    # Shut down cleanly: its pid file is gone and the process ended (a zombie until reaped).
    assert not pid_file.exists()
    assert not psutil.pid_exists(postmaster) or psutil.Process(postmaster).status() == psutil.STATUS_ZOMBIE
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []
