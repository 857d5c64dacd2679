"""Database errors reach callers as the project's exceptions, translated in Database.session()."""

from __future__ import annotations

import pytest
from sqlalchemy import text

from backend.config import Settings
from backend.db import Database
from backend.db.exceptions import DatabaseError, DatabaseUnavailable
from backend.devices.exceptions import UnknownDevice
from backend.devices.store import DeviceStore


async def test_a_connection_lost_mid_session_is_database_unavailable(settings: Settings) -> None:
    database = await Database.open(settings)
    try:

        async def query_after_the_backend_was_terminated() -> None:
            async with database.session() as session:
                pid = await session.scalar(text("SELECT pg_backend_pid()"))
                async with database.engine.connect() as other:
                    await other.execute(text("SELECT pg_terminate_backend(:pid)"), {"pid": pid})
                await session.execute(text("SELECT 1"))

        with pytest.raises(DatabaseUnavailable, match="lost the connection to Postgres") as caught:
            await query_after_the_backend_was_terminated()
        assert caught.value.__cause__ is not None  # raised from the library's error
    finally:
        await database.close()


async def test_a_failing_statement_is_database_error_and_corral_errors_pass(settings: Settings) -> None:
    database = await Database.open(settings)
    try:
        with pytest.raises(DatabaseError, match=r"database error: .*no_such_table") as caught:
            async with database.session() as session:
                await session.execute(text("SELECT * FROM no_such_table"))
        assert not isinstance(caught.value, DatabaseUnavailable)
        # What a store raises on purpose comes through unchanged.
        with pytest.raises(UnknownDevice):
            await DeviceStore(database).get("nope")
    finally:
        await database.close()


async def test_a_channel_added_while_the_listen_connection_dies_leaves_no_unretrieved_error(
    settings: Settings,
) -> None:
    """A CLI that stops right after subscribing printed "Task exception was never retrieved"."""
    import asyncio
    import gc

    database = await Database.open(settings)
    unhandled: list[dict[str, object]] = []
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(lambda _loop, context: unhandled.append(context))
    try:
        database.on_notify("corral_test_first", lambda _c, _p: None)
        async with asyncio.timeout(10):
            while database._listener is None or database._listener.is_closed():
                await asyncio.sleep(0.01)
        listener = database._listener
        # The connection dies (Database.close, a Postgres restart) just after the next
        # channel was asked for, before its LISTEN ran.
        database.on_notify("corral_test_second", lambda _c, _p: None)
        pending = list(database._tasks)
        listener.terminate()
        await asyncio.wait(pending)  # waits without retrieving the outcome, as nobody did
        assert all(task.done() for task in pending)
        assert pending, "the second channel was added by a task of its own"
        del pending
        gc.collect()
        await asyncio.sleep(0)
        assert unhandled == []
    finally:
        loop.set_exception_handler(None)
        await database.close()
