"""The jobs table's one door for other packages: enqueue in the caller's transaction, cancel, read."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from backend.config import Settings
from backend.db import Database
from backend.jobs.manager import JobManager


class _Rollback(Exception):
    pass


async def _rows(database: Database) -> list[tuple[object, ...]]:
    async with database.session() as session:
        result = await session.execute(
            text("SELECT kind, device_id, state, cancel_requested, priority FROM jobs ORDER BY id")
        )
        return [tuple(row) for row in result]


async def test_enqueue_lives_and_dies_with_the_callers_transaction(settings: Settings) -> None:
    database = await Database.open(settings)
    manager = JobManager(database)
    try:

        async def enqueue_then_fail() -> None:
            async with database.session() as session, session.begin():
                manager.enqueue(session, "provision", payload={"kind": "browser"})
                raise _Rollback

        with pytest.raises(_Rollback):
            await enqueue_then_fail()
        assert await _rows(database) == []
        async with database.session() as session, session.begin():
            manager.enqueue(session, "provision", payload={"kind": "browser"}, priority=5, max_attempts=2)
        assert await _rows(database) == [("provision", None, "queued", False, 5)]
        (job,) = await manager.list()
        assert (job.payload, job.max_attempts, job.attempts) == ({"kind": "browser"}, 2, 0)
    finally:
        await database.close()


async def test_cancel_for_devices_stops_only_their_jobs_of_that_kind(settings: Settings) -> None:
    database = await Database.open(settings)
    manager = JobManager(database)
    try:
        async with database.session() as session, session.begin():
            await session.execute(
                text(
                    "INSERT INTO devices (id, name, kind, state) VALUES "
                    "('d1', 'browser-1', 'browser', 'provisioning'), ('d2', 'browser-2', 'browser', 'ready')"
                )
            )
            await session.execute(
                text(
                    "INSERT INTO jobs (kind, device_id, state, payload) VALUES "
                    "('provision', 'd1', 'queued', '{\"n\": 1}'), "
                    "('provision', 'd1', 'running', '{\"n\": 2}'), "
                    "('remove', 'd1', 'queued', '{}'), ('provision', 'd2', 'queued', '{\"n\": 3}')"
                )
            )
        assert await manager.open_device_ids() == {"d1", "d2"}
        async with database.session() as session, session.begin():
            await manager.cancel_for_devices(session, ["d1"], "provision")
            assert await manager.latest_payload(session, "d1", "provision") == {"n": 2}
            assert await manager.latest_payload(session, "d2", "remove") is None
        assert await _rows(database) == [
            ("provision", "d1", "cancelled", False, 0),
            ("provision", "d1", "running", True, 0),
            ("remove", "d1", "queued", False, 0),
            ("provision", "d2", "queued", False, 0),
        ]
    finally:
        await database.close()
