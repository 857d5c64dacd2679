"""Agent events and command outcomes reach ``events`` in batches, on the real Postgres."""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy.ext.asyncio import create_async_engine

from agent.protocol import Event, encode
from backend.config import Settings
from backend.corral import Corral, _HubEvents
from backend.db import Database
from backend.db.database import asyncpg_connect_kwargs
from backend.devices.store import DeviceStore
from backend.hub.eventlog import TASK, EventLog
from backend.supervisor import Supervisor
from tests.integration.hub.fake_agent import FakeAgent, hub_settings_for, serve


@pytest.fixture
async def database(settings: Settings) -> AsyncIterator[Database]:
    database = await Database.open(settings)
    connection = await database.connect_raw()
    try:
        await connection.execute(
            "INSERT INTO devices (id, name, kind, state) VALUES ('dev1', 'dev1', 'browser', 'ready'),"
            " ('dev2', 'dev2', 'browser', 'ready')"
        )
    finally:
        await connection.close()
    yield database
    await database.close()


async def _rows(database: Database, query: str = "SELECT * FROM events ORDER BY id") -> list[asyncpg.Record]:
    connection = await database.connect_raw()
    try:
        return list(await connection.fetch(query))
    finally:
        await connection.close()


async def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.01)


async def test_rows_are_written_in_one_statement_per_batch(database: Database) -> None:
    supervisor = Supervisor()
    log = EventLog(database, supervisor, batch_rows=1000, interval=0.1)
    for n in range(2500):
        log.add("dev1", "agent", "log", message=f"line {n}", data={"n": n})
    log.start()
    try:
        await _until(lambda: log.written == 2500)
    finally:
        await log.stop()
    rows = await _rows(database, "SELECT message, data, xmin::text AS tx FROM events ORDER BY id")
    assert [row["message"] for row in rows] == [f"line {n}" for n in range(2500)]
    assert rows[2499]["data"] == '{"n": 2499}'
    # One statement (one transaction) per batch of at most 1,000 rows.
    assert len({row["tx"] for row in rows}) == 3
    assert log.dropped == 0


async def test_a_row_waits_at_most_about_one_interval(database: Database) -> None:
    supervisor = Supervisor()
    log = EventLog(database, supervisor, interval=0.1)
    log.start()
    try:
        started = time.monotonic()
        log.add("dev1", "agent", "state", message="one")
        await _until(lambda: log.written == 1)
        waited = time.monotonic() - started
        assert waited >= 0.09
        assert waited < 2.0
        assert supervisor.state(TASK) is not None
        assert supervisor.state(TASK).status == "running"  # type: ignore[union-attr]
    finally:
        await log.stop()
    assert supervisor.state(TASK).status == "finished"  # type: ignore[union-attr]


async def test_stop_writes_what_is_queued(database: Database) -> None:
    log = EventLog(database, Supervisor(), interval=60.0)
    log.start()
    for n in range(10):
        log.add("dev1", "agent", "log", message=str(n))
    await log.stop()
    assert [row["message"] for row in await _rows(database)] == [str(n) for n in range(10)]
    # And it starts again (a host that took its lock back).
    log.start()
    log.add("dev2", "agent", "log", message="again")
    await log.stop()
    assert [row["device_id"] for row in await _rows(database)][-1] == "dev2"


async def test_agent_events_and_commands_become_these_rows(database: Database) -> None:
    from backend.hub import CommandOutcome

    log = EventLog(database, Supervisor())
    log.start()
    log.agent_event("dev1", Event(kind="log", data={"level": "warning", "message": "disk full", "pct": 99}))
    log.agent_event("dev1", Event(kind="state", data={"level": "loud", "message": 7}))
    log.command("dev2", CommandOutcome("tap", True, None, 0.0123))
    log.command("dev2", CommandOutcome("assert", False, "no element matches 'Login'", 1.5))
    await log.stop()
    rows = [
        (r["device_id"], r["source"], r["level"], r["kind"], r["message"], r["data"])
        for r in await _rows(database)
    ]
    assert rows == [
        (
            "dev1",
            "agent",
            "warning",
            "log",
            "disk full",
            '{"pct": 99, "level": "warning", "message": "disk full"}',
        ),
        ("dev1", "agent", "info", "state", "", '{"level": "loud", "message": 7}'),
        (
            "dev2",
            "hub",
            "info",
            "command",
            "tap: ok in 12 ms",
            '{"ok": true, "name": "tap", "error": null, "duration_ms": 12.3}',
        ),
        (
            "dev2",
            "hub",
            "error",
            "command",
            "assert: failed after 1500 ms: no element matches 'Login'",
            '{"ok": false, "name": "assert", "error": "no element matches \'Login\'", "duration_ms": 1500.0}',
        ),
    ]


async def test_unstorable_text_is_made_storable_and_nothing_else_is_lost(database: Database) -> None:
    log = EventLog(database, Supervisor())
    log.start()
    log.add("dev1", "agent", "log", message="nul\x00 and \ud800 lone", data={"k\x00": ["v\x00", "\udfff"]})
    log.add("dev1", "agent", "log", message="x" * 10_000, data={"png": "A" * 20_000, "w": 1})
    log.add("gone", "agent", "log", message="a device that does not exist")
    log.add(None, "hub", "note", message="no device", data={"nan": float("nan")})
    await log.stop()
    rows = [(r["device_id"], r["message"], r["data"]) for r in await _rows(database)]
    assert rows == [
        ("dev1", "nul\ufffd and ? lone", '{"k\ufffd": ["v\ufffd", "?"]}'),
        ("dev1", "x" * 4096, '{"keys": ["png", "w"], "bytes": 20016, "truncated": true}'),
        # No foreign key (migration 0004): the hub names only devices it serves, and a
        # device row is never deleted, so a row is never refused for its device.
        ("gone", "a device that does not exist", None),
        (None, "no device", '{"nan": null}'),
    ]
    assert log.dropped == 0


async def test_while_postgres_is_away_rows_are_bounded_counted_logged_and_kept(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    # A handle on a port where nothing listens: every connect fails, as when Postgres is down.
    away = Database("postgresql+asyncpg://corral@127.0.0.1:9/none", create_async_engine(database.url), None)
    supervisor = Supervisor(max_backoff=0.2)
    row_size = 200 + len("row 0000")
    log = EventLog(away, supervisor, max_bytes=100 * row_size, flush_timeout=0.5)  # room for 100 rows
    log.start()
    try:
        with caplog.at_level(logging.WARNING):
            started = time.monotonic()
            for n in range(150):
                log.add("dev1", "agent", "log", message=f"row {n:04d}")
            assert time.monotonic() - started < 0.5  # never waits for Postgres
            assert (log.queued, log.dropped) == (100, 50)
            await _until(lambda: supervisor.state(TASK).failures >= 1)  # type: ignore[union-attr]
            state = supervisor.state(TASK)
            assert state is not None and state.status in ("failing", "running")
            assert "DatabaseUnavailable" in (state.last_error or "")
            # Postgres is back: the 100 newest rows are written, in order.
            away.url = database.url
            await _until(lambda: log.written == 100)
    finally:
        await log.stop()
        await away.close()
    assert [r["message"] for r in await _rows(database)] == [f"row {n:04d}" for n in range(50, 150)]
    warnings = [r.getMessage() for r in caplog.records if "agent event rows" in r.getMessage()]
    assert warnings and warnings[0].startswith("dropped 50 agent event rows")


async def test_the_hub_listener_of_corral_persists_agent_events_and_commands(
    database: Database, short_tmp: Path
) -> None:
    settings = hub_settings_for(short_tmp)
    log = EventLog(database, Supervisor())
    log.start()
    listener = _HubEvents(DeviceStore(database), log)
    hub = await serve(settings, ["dev1"], listener)
    try:
        async with FakeAgent(settings, hub, "dev1") as agent:
            await agent.send(encode(Event(kind="log", data={"message": "page loaded"})))
            call = asyncio.create_task(hub.command("dev1", "open_url", {"url": "about:blank"}))
            await agent.answer((await agent.next_command()).id, data={"url": "about:blank"})
            await call
    finally:
        await hub.stop()
        await listener.stop()
        await log.stop()
    rows = [(r["source"], r["kind"], r["message"][:16]) for r in await _rows(database)]
    assert rows == [("agent", "log", "page loaded"), ("hub", "command", "open_url: ok in ")]


async def test_a_corral_host_runs_the_event_log_and_flushes_it_on_stop(
    settings: Settings, docker_available: None
) -> None:
    # A removed device: no hub socket, nothing for the reconciler to do, no container.
    setup = await Database.open(settings)
    connection = await setup.connect_raw()
    await connection.execute(
        "INSERT INTO devices (id, name, kind, state) VALUES ('gone1', 'g', 'browser', 'removed')"
    )
    await connection.close()
    await setup.close()
    corral = await Corral.start(settings, role="host", stream=False)
    try:
        health = await corral.health()
        assert [(t.name, t.status) for t in health.tasks if t.name == TASK] == [(TASK, "running")]
        with pytest.raises(Exception, match="agent disconnected"):
            await corral.hub.command("gone1", "ping", {})
    finally:
        await corral.stop()
    connection = await asyncpg.connect(**asyncpg_connect_kwargs(settings.database_url or ""))
    try:
        rows: list[Any] = await connection.fetch("SELECT device_id, source, kind, level FROM events")
    finally:
        await connection.close()
    assert [tuple(r) for r in rows] == [("gone1", "hub", "command", "error")]


async def test_rows_a_stop_could_not_write_are_kept_for_the_next_start(
    database: Database, caplog: pytest.LogCaptureFixture
) -> None:
    away = Database("postgresql+asyncpg://corral@127.0.0.1:9/none", create_async_engine(database.url), None)
    supervisor = Supervisor(max_backoff=0.2)
    log = EventLog(away, supervisor)
    try:
        for n in range(3):
            log.add("dev1", "agent", "log", message=f"kept {n}")
        log.start()
        await _until(lambda: supervisor.state(TASK).failures >= 1)  # type: ignore[union-attr]
        started = time.monotonic()
        with caplog.at_level(logging.WARNING):
            await log.stop(timeout=0.0)  # a host that lost its lock stops at once
        assert time.monotonic() - started < 1.0
        assert (log.queued, log.dropped, log.written) == (3, 0, 0)
        assert any(r.getMessage().startswith("3 agent event rows not written yet") for r in caplog.records)
        away.url = database.url  # Postgres is back, and so is the host
        log.start()
        await _until(lambda: log.written == 3)
    finally:
        await log.stop()
        await away.close()
    assert [r["message"] for r in await _rows(database)] == ["kept 0", "kept 1", "kept 2"]
