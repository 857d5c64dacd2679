"""The database handle: async engine, sessions, and a LISTEN connection.

:meth:`Database.open` starts the embedded server when no URL is configured,
migrates to head, and returns a ready handle. Change notifications (see
:mod:`backend.db.notify`) arrive through :meth:`Database.on_notify` on one
dedicated asyncpg connection, kept by the supervised task ``db-listener`` and
re-established if Postgres restarts.

This module is the boundary for database errors: :meth:`Database.session`,
:meth:`Database.ping` and :meth:`Database.connect_raw` raise only
:class:`~backend.db.exceptions.DatabaseUnavailable` (the connection is lost or
cannot be made) or :class:`~backend.db.exceptions.DatabaseError` (any other
SQLAlchemy or asyncpg error), never a library exception.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import asyncpg
from sqlalchemy import text
from sqlalchemy.engine import make_url
from sqlalchemy.exc import DBAPIError, SQLAlchemyError
from sqlalchemy.ext.asyncio import AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine

from backend.config import Settings
from backend.db import migrate
from backend.db.embedded import EmbeddedPostgres
from backend.db.exceptions import DatabaseError, DatabaseUnavailable
from backend.supervisor import Supervisor, run_steps

__all__ = ["LIBRARY_ERRORS", "Database", "NotifyHandler", "translate_error"]

log = logging.getLogger(__name__)

NotifyHandler = Callable[[str, str], None]
"""Called on the loop with (channel, payload) for every notification."""

LIBRARY_ERRORS = (SQLAlchemyError, asyncpg.PostgresError, asyncpg.InterfaceError, OSError)
"""What SQLAlchemy and asyncpg raise, and what a lost socket raises through them."""

_CONNECTION_ERRORS = (
    ConnectionError,
    asyncpg.PostgresConnectionError,  # SQLSTATE class 08
    asyncpg.exceptions.OperatorInterventionError,  # 57: terminated by an admin, shutting down
    asyncpg.InterfaceError,  # e.g. the connection was closed under the query
)
LISTENER_TASK = "db-listener"


def translate_error(exc: BaseException) -> DatabaseError:
    """The project's exception for a SQLAlchemy/asyncpg/socket error (``raise … from exc``)."""
    if _is_connection_error(exc):
        return DatabaseUnavailable(f"lost the connection to Postgres: {_first_line(exc)}")
    return DatabaseError(f"database error: {_first_line(exc)}")


def _is_connection_error(exc: BaseException) -> bool:
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, _CONNECTION_ERRORS) or (
            isinstance(current, OSError) and not isinstance(current, TimeoutError)
        ):
            return True
        orig = getattr(current, "orig", None)
        current = orig if isinstance(orig, BaseException) else current.__cause__
    return False


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

    def __init__(
        self,
        url: str,
        engine: AsyncEngine,
        embedded: EmbeddedPostgres | None,
        supervisor: Supervisor | None = None,
    ) -> None:
        self.url = url
        self.engine = engine
        self.sessions = async_sessionmaker(engine, expire_on_commit=False)
        self._embedded = embedded
        self._handlers: dict[str, list[NotifyHandler]] = {}
        self._listener: asyncpg.Connection | None = None
        self._supervisor = supervisor or Supervisor()
        self._listening = False
        self._closing = asyncio.Event()
        self._tasks: set[asyncio.Task[None]] = set()

    @staticmethod
    def exists(settings: Settings) -> bool:
        """False only while the embedded cluster has not been made (reads only).

        Commands that only read then have nothing to read and make nothing.
        """
        return settings.database_url is not None or EmbeddedPostgres.exists(settings.pgdata_dir)

    @classmethod
    async def open(
        cls, settings: Settings, *, migrate_schema: bool = True, supervisor: Supervisor | None = None
    ) -> Database:
        """Connect (starting the embedded server if needed) and migrate to head.

        The LISTEN task runs under *supervisor* (a private one if None). Raises
        DatabaseUnavailable when Postgres cannot be reached, MigrationError when
        the schema cannot be upgraded.
        """
        embedded = None
        url = settings.database_url
        if url is None:
            embedded = EmbeddedPostgres(settings.pgdata_dir)
            url = await embedded.start()
        engine = create_async_engine(url, pool_size=10, max_overflow=10, pool_pre_ping=True)
        database = cls(url, engine, embedded, supervisor)
        try:
            await database.ping()
            if migrate_schema:
                await migrate.upgrade(url)
        except BaseException:
            await database.close()
            raise
        return database

    @contextlib.asynccontextmanager
    async def session(self) -> AsyncIterator[AsyncSession]:
        """``async with database.session() as session``: an ORM session whose library
        errors (in the body, or on commit) come out translated (see :func:`translate_error`).

        Errors the body raises on purpose (CorralError) pass through unchanged.
        """
        try:
            async with self.sessions() as session:
                yield session
        except TimeoutError:
            raise
        except LIBRARY_ERRORS as exc:
            raise translate_error(exc) from exc

    async def ping(self) -> None:
        try:
            async with self.engine.connect() as connection:
                await connection.execute(text("SELECT 1"))
        except (*LIBRARY_ERRORS, TimeoutError) as exc:
            raise DatabaseUnavailable(f"cannot reach Postgres: {_first_line(exc)}") from exc

    async def connect_raw(self, *, application_name: str | None = None) -> asyncpg.Connection:
        """A plain asyncpg connection (for hot-path SQL); the caller closes it.

        *application_name* shows in ``pg_stat_activity`` (the host lock names its holder so).
        """
        settings = {"application_name": application_name} if application_name else None
        try:
            return await asyncpg.connect(**asyncpg_connect_kwargs(self.url), server_settings=settings)
        except (*LIBRARY_ERRORS, TimeoutError) as exc:
            raise DatabaseUnavailable(f"cannot reach Postgres: {_first_line(exc)}") from exc

    def on_notify(self, channel: str, handler: NotifyHandler) -> None:
        """Call *handler* for notifications on *channel*. Starts the listener on first use."""
        self._handlers.setdefault(channel, []).append(handler)
        if not self._listening:
            self._listening = True
            self._supervisor.spawn(LISTENER_TASK, self._listen_forever)
        elif self._listener is not None and not self._listener.is_closed():
            task = asyncio.create_task(self._listener.add_listener(channel, self._dispatch))
            self._tasks.add(task)
            task.add_done_callback(self._listener_added)

    def _listener_added(self, task: asyncio.Task[None]) -> None:
        self._tasks.discard(task)
        if not task.cancelled() and (exc := task.exception()) is not None:
            # The LISTEN connection went away (closing, Postgres restarting): the
            # listener loop LISTENs on every channel again when it reconnects.
            log.debug("LISTEN on a new channel failed (%s); the listener adds it when it reconnects", exc)

    async def close(self) -> None:
        """Stop listening, close every connection, stop the embedded server if unused.

        Every step runs even if one fails; then the first failure is raised.
        """
        self._closing.set()
        await run_steps(
            "closing the database",
            [
                ("the LISTEN task", lambda: self._supervisor.stop(LISTENER_TASK)),
                ("the LISTEN connection", self._close_listener),
                ("the connection pool", self.engine.dispose),
                ("the embedded Postgres", self._stop_embedded),
            ],
        )

    @property
    def closed(self) -> bool:
        return self._closing.is_set()

    async def _close_listener(self) -> None:
        if self._listener is not None and not self._listener.is_closed():
            try:
                await self._listener.close(timeout=2)
            except (*LIBRARY_ERRORS, TimeoutError):
                self._listener.terminate()

    async def _stop_embedded(self) -> None:
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
            except (DatabaseUnavailable, *LIBRARY_ERRORS) as exc:
                log.warning("LISTEN connection failed (%s); retrying in %.1fs", exc, delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, 5.0)


def _first_line(exc: BaseException) -> str:
    lines = str(getattr(exc, "orig", None) or exc).strip().splitlines()
    return lines[0] if lines else type(exc).__name__
