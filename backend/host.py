"""The host lock: which Corral process is the host, and noticing at once when that changes.

Election is a session-level Postgres advisory lock (:data:`HOST_LOCK_KEY`) held
on one dedicated connection whose ``application_name`` names the holder
(``corral-host <hostname>:<pid>``), so any client can ask who the host is
(:func:`find_host`) without taking anything.

The lock lives exactly as long as that connection. :meth:`HostLock.watch`
returns as soon as the connection is closed (``pg_terminate_backend``, a
Postgres restart: asyncpg's termination callback) or stops answering a probe
(a half-open TCP connection to an external server).

Fencing: Postgres frees the lock the moment the connection dies, while this
process learns of it a moment later and needs a moment more to stop its host
work. So the host also holds an exclusive ``flock`` on ``host.lock`` in the
runtime directory, taken after the advisory lock and released only after host
work has stopped; the next host waits for it. Two processes therefore never
serve the same hub sockets at once, and the kernel drops the flock if the
process dies.

The host also publishes the state of its background tasks in ``host.json`` in
the runtime directory (:func:`publish_tasks`), so ``corral doctor``, a client,
can show them (:func:`published_tasks`).
"""

from __future__ import annotations

import asyncio
import contextlib
import dataclasses
import fcntl
import json
import logging
import os
import socket
import uuid
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

import asyncpg
from sqlalchemy import text

from backend.config.exceptions import RuntimeDirError
from backend.db import Database
from backend.db.database import LIBRARY_ERRORS, translate_error
from backend.types import TaskState

__all__ = ["HOST_LOCK_KEY", "HostInfo", "HostLock", "find_host", "publish_tasks", "published_tasks"]

log = logging.getLogger(__name__)

HOST_LOCK_KEY = 0x636F7272616C  # "corral"
_LOCK_FILE = "host.lock"
_STATUS_FILE = "host.json"
_FLOCK_POLL = 0.05
_APP_PREFIX = "corral-host "

_HOLDER_SQL = text(
    """
    SELECT a.pid, a.application_name, a.backend_start
    FROM pg_locks l JOIN pg_stat_activity a ON a.pid = l.pid
    WHERE l.locktype = 'advisory' AND l.granted
      AND l.database = (SELECT oid FROM pg_database WHERE datname = current_database())
      AND l.classid = :classid AND l.objid = :objid AND l.objsubid = 1
    """
)


@dataclass(frozen=True, slots=True)
class HostInfo:
    """Who holds the host lock, as Postgres sees it."""

    name: str
    """``<hostname>:<pid>`` of the host process (from its application_name)."""
    backend_pid: int
    """The Postgres backend of its lock connection (what ``pg_terminate_backend`` takes)."""
    since: datetime
    """When its lock connection was opened."""

    def describe(self) -> str:
        return f"{self.name} (since {self.since.astimezone():%Y-%m-%d %H:%M:%S})"


async def find_host(database: Database) -> HostInfo | None:
    """The current host, or None when no process holds the lock. Takes no lock, writes nothing."""
    async with database.session() as session:
        row = (
            await session.execute(
                _HOLDER_SQL, {"classid": HOST_LOCK_KEY >> 32, "objid": HOST_LOCK_KEY & 0xFFFFFFFF}
            )
        ).first()
    if row is None:
        return None
    name = str(row.application_name).removeprefix(_APP_PREFIX) or "unknown process"
    return HostInfo(name=name, backend_pid=int(row.pid), since=row.backend_start)


class HostLock:
    """Take, watch and release the host lock (see the module docstring).

    Not reentrant: :meth:`acquire` once, then :meth:`watch` until it returns,
    then :meth:`release`.
    """

    def __init__(
        self,
        database: Database,
        runtime_dir: Path,
        *,
        probe_interval: float = 5.0,
        probe_timeout: float = 10.0,
    ) -> None:
        self._database = database
        self._lock_file = runtime_dir / _LOCK_FILE
        self._probe_interval = probe_interval
        self._probe_timeout = probe_timeout
        self._connection: asyncpg.Connection | None = None
        self._lost = asyncio.Event()
        self._fd: int | None = None
        self.name = f"{socket.gethostname()}:{os.getpid()}"

    @property
    def held(self) -> bool:
        return self._fd is not None and not self._lost.is_set()

    async def acquire(self, *, wait: bool) -> bool:
        """Take the lock; with *wait*, wait as long as another process holds it.

        Returns False (without *wait*) when another process is the host. Raises
        DatabaseUnavailable when Postgres cannot be reached, RuntimeDirError when
        the lock file cannot be opened.
        """
        if self._fd is not None:
            raise RuntimeError("the host lock is already held")
        connection = await self._database.connect_raw(application_name=f"{_APP_PREFIX}{self.name}"[:63])
        try:
            lost = asyncio.Event()
            connection.add_termination_listener(lambda _connection: lost.set())
            got = await self._lock_on(connection, wait=wait)
            if got:
                await self._take_flock()
            else:
                await connection.close(timeout=2)
        except BaseException:
            connection.terminate()
            raise
        if got:
            self._connection, self._lost = connection, lost
        return got

    async def _lock_on(self, connection: asyncpg.Connection, *, wait: bool) -> bool:
        try:
            if await connection.fetchval("SELECT pg_try_advisory_lock($1)", HOST_LOCK_KEY):
                return True
            if not wait:
                return False
            holder = await find_host(self._database)
            log.warning(
                "another Corral is the host (%s); waiting for it to stop",
                holder.describe() if holder else "unknown",
            )
            await connection.fetchval("SELECT pg_advisory_lock($1)", HOST_LOCK_KEY)
            return True
        except TimeoutError:
            raise
        except LIBRARY_ERRORS as exc:
            raise translate_error(exc) from exc

    async def watch(self) -> str:
        """Return (a reason, for the log) once the lock is lost; never returns while it is held."""
        connection = self._connection
        if connection is None:
            return "the host lock was not held"
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._lost.wait(), self._probe_interval)
            if self._lost.is_set() or connection.is_closed():
                self._lost.set()
                return "its Postgres connection was closed"
            try:
                await asyncio.wait_for(connection.fetchval("SELECT 1"), self._probe_timeout)
            except (*LIBRARY_ERRORS, TimeoutError) as exc:
                self._lost.set()
                return f"its Postgres connection stopped answering ({type(exc).__name__}: {exc})"

    async def release(self) -> None:
        """Release the flock, then the Postgres lock (closing its connection). Idempotent."""
        fd, self._fd = self._fd, None
        if fd is not None:
            # Closing the descriptor drops the flock.
            os.close(fd)
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed():
            try:
                await connection.close(timeout=2)
            except (*LIBRARY_ERRORS, TimeoutError):
                connection.terminate()

    async def _take_flock(self) -> None:
        # The runtime root is ours and writable by no one else (rundir.ensure_root),
        # so the file cannot be planted; O_NOFOLLOW all the same.
        try:
            fd = os.open(self._lock_file, os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
        except OSError as exc:
            raise RuntimeDirError(f"cannot open the host lock file {self._lock_file}: {exc}") from exc
        try:
            waited = False
            while True:
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    if not waited:
                        log.info("host lock taken; waiting for the previous host to stop its work")
                        waited = True
                    # A short poll rather than a blocking flock in a thread: it can be
                    # cancelled, and it only lasts while the previous host stops.
                    await asyncio.sleep(_FLOCK_POLL)
        except BaseException:
            os.close(fd)
            raise
        self._fd = fd


def publish_tasks(runtime_dir: Path, host: str, tasks: list[TaskState] | None) -> None:
    """Write (or with None, remove) ``host.json``: *host*'s task states. Blocking: use a thread."""
    path = runtime_dir / _STATUS_FILE
    if tasks is None:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(path)
        return
    data = {
        "host": host,
        "tasks": [
            {k: v.isoformat() if isinstance(v, datetime) else v for k, v in dataclasses.asdict(t).items()}
            for t in tasks
        ],
    }
    temporary = runtime_dir / f".{_STATUS_FILE}.{os.getpid()}.{uuid.uuid4().hex[:8]}"
    fd = os.open(temporary, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "w") as file:
        json.dump(data, file)
    os.replace(temporary, path)


def published_tasks(runtime_dir: Path, host: str) -> list[TaskState] | None:
    """The task states *host* published here, or None (another machine's host, or none yet)."""
    try:
        with open(runtime_dir / _STATUS_FILE, encoding="utf-8") as file:
            data = json.load(file)
    except (OSError, ValueError):
        return None
    if not isinstance(data, dict) or data.get("host") != host:
        return None
    try:
        tasks = []
        for item in data["tasks"]:
            for key in ("last_error_at", "last_ok_at"):
                if item.get(key):
                    item[key] = datetime.fromisoformat(item[key])
            tasks.append(TaskState(**item))
    except (KeyError, TypeError, ValueError, AttributeError):
        return None
    return tasks
