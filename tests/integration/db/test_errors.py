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
