"""The database handle: async engine, sessions, and a LISTEN connection.

:meth:`Database.open` starts the embedded server when no URL is configured,
migrates to head, and returns a ready handle. Change notifications (see
:mod:`backend.db.notify`) arrive through :meth:`listen` on one dedicated asyncpg
connection, which is re-established if Postgres restarts.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from backend.config import Settings
from backend.db import migrate
from backend.db.embedded import EmbeddedPostgres
from backend.db.exceptions import DatabaseUnavailable

__all__ = ["Database", "NotifyHandler"]

log = logging.getLogger(__name__)

NotifyHandler = Callable[[str, str], None]
"""Called on the loop with (channel, payload) for every notification."""


def asyncpg_connect_kwargs(url: str) -> dict[str, Any]:
    """Translate a SQLAlchemy URL into ``asyncpg.connect`` keyword arguments."""
    parsed = make_url(url)
    query = dict(parsed.query)
    host = query.pop("host", None) or parsed.host
    kwargs: dict[str, Any] = {
        "user": parsed.username,
        "password": parsed.password or None,
        "database": parsed.database,
        "host": host,
        "port": parsed.port,
    }
    return {k: v for k, v in kwargs.items() if v is not None}


class Database:
    """Owns the engine, the optional embedded server and the LISTEN connection."""

    def __init__(self, url: str, engine: AsyncEngine, embedded: EmbeddedPostgres | None) -> None:
        self.url = url
        self.engine = engine
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._embedded = embedded
        self._handlers: dict[str, list[NotifyHandler]] = {}
        self._listener: asyncpg.Connection | None = None
        self._listen_task: asyncio.Task[None] | None = None
        self._closing = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    @classmethod
    async def open(cls, settings: Settings, *, migrate_schema: bool = True) -> Database:
        """Connect (starting the embedded server if needed) and migrate to head.

        Raises DatabaseUnavailable when Postgres cannot be reached, MigrationError
        when the schema cannot be upgraded.
        """
        embedded = None
        url = settings.database_url
        if url is None:
            embedded = EmbeddedPostgres(settings.pgdata_dir)
            url = await embedded.start()
        engine = create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)
        database = cls(url, engine, embedded)
        try:
            await database.ping()
            if migrate_schema:
                await migrate.upgrade(url)
        except BaseException:
            await database.close()
            raise
        return database

    def session(self) -> AsyncSession:
        return self.sessions()

    async def ping(self) -> None:
        try:
            async with self.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except (OSError, asyncpg.PostgresError) as exc:
            raise DatabaseUnavailable(f"cannot reach Postgres: {exc}") from exc
        except Exception as exc:  # SQLAlchemy wraps driver errors in DBAPIError
            raise DatabaseUnavailable(f"cannot reach Postgres: {exc}") from exc

    async def connect_raw(self) -> asyncpg.Connection:
        """A plain asyncpg connection (for hot-path SQL); the caller closes it."""
        try:
            return await asyncpg.connect(**asyncpg_connect_kwargs(self.url))
        except (OSError, asyncpg.PostgresError) as exc:
            raise DatabaseUnavailable(f"cannot reach Postgres: {exc}") from exc

    def on_notify(self, channel: str, handler: NotifyHandler) -> None:
        """Call *handler* for notifications on *channel*. Starts the listener on first use."""
        self._handlers.setdefault(channel, []).append(handler)
        if self._listen_task is None:
            self._listen_task = asyncio.create_task(self._listen_forever(), name="db-listener")
        elif self._listener is not None and not self._listener.is_closed():
            task = asyncio.create_task(self._listener.add_listener(channel, self._dispatch))
            self._tasks.add(task)
            task.add_done_callback(self._tasks.discard)

    async def close(self) -> None:
        self._closing.set()
        if self._listen_task is not None:
            self._listen_task.cancel()
            await asyncio.gather(self._listen_task, return_exceptions=True)
        if self._listener is not None and not self._listener.is_closed():
            await self._listener.close(timeout=2)
        await self.engine.dispose()
        if self._embedded is not None:
            await self._embedded.stop()

    def _dispatch(self, connection: object, pid: int, channel: str, payload: str) -> None:
        for handler in self._handlers.get(channel, []):
            try:
                handler(channel, payload)
            except Exception:
                log.exception("notification handler for %s failed", channel)

    async def _listen_forever(self) -> None:
        delay = 0.2
        while not self._closing.is_set():
            lost = asyncio.Event()
            try:
                self._listener = await self.connect_raw()
                self._listener.add_termination_listener(lambda _c, lost=lost: lost.set())
                for channel in list(self._handlers):
                    await self._listener.add_listener(channel, self._dispatch)
                delay = 0.2
                # A reconnect may have missed notifications: tell handlers to resync.
                for channel in list(self._handlers):
                    self._dispatch(self._listener, 0, channel, "")
                await lost.wait()
                log.warning("lost the LISTEN connection to Postgres; reconnecting")
            except DatabaseUnavailable as exc:
                log.warning("LISTEN connection failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)
