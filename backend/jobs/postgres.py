"""The job store on Postgres: the named SQL of ``sql/queries.sql`` over an asyncpg pool.

The worker's hot path (claim, heartbeat, finish) runs here as hand-written SQL
on plain asyncpg connections, not through SQLAlchemy: one round trip each.
Every asyncpg or socket error leaves as
:class:`~backend.jobs.exceptions.StoreUnavailable`.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import Sequence
from typing import Any

import asyncpg

from backend.db import Database
from backend.db.database import asyncpg_connect_kwargs
from backend.db.notify import channel
from backend.jobs.exceptions import StoreUnavailable
from backend.jobs.queries import QUERIES
from backend.jobs.store import ClaimedJob, TerminalState, Wake

__all__ = ["PostgresJobStore"]

_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)
"""What a lost or restarting Postgres raises through asyncpg."""


class PostgresJobStore:
    """:class:`~backend.jobs.store.JobStore` on the ``jobs`` table of *database*."""

    def __init__(self, database: Database) -> None:
        self._database = database
        self._pool: asyncpg.Pool | None = None

    async def open(self, connections: int, wake: Wake) -> None:
        try:
            self._pool = await asyncpg.create_pool(
                **asyncpg_connect_kwargs(self._database.url), min_size=1, max_size=connections
            )
        except _ERRORS as exc:
            raise StoreUnavailable(f"cannot reach Postgres for the job worker: {exc}") from exc
        self._database.on_notify(channel("jobs"), lambda _channel, _payload: wake())

    async def close(self) -> None:
        """Close the pool; a connection stuck on a hung server is cut after 5 s."""
        if self._pool is not None:
            pool, self._pool = self._pool, None
            try:
                await asyncio.wait_for(pool.close(), 5.0)
            except TimeoutError:
                pool.terminate()

    async def claim(
        self, worker: str, limit: int, lease: float, kinds: Sequence[str] | None = None
    ) -> list[ClaimedJob]:
        rows = await self._fetch("claim_jobs", worker, limit, lease, None if kinds is None else list(kinds))
        return [
            ClaimedJob(
                id=row["id"],
                kind=row["kind"],
                device_id=row["device_id"],
                payload=_payload(row["payload"]),
                attempt=row["attempts"],
                max_attempts=row["max_attempts"],
            )
            for row in rows
        ]

    async def heartbeat(self, worker: str, job_ids: Sequence[int], lease: float) -> dict[int, bool]:
        rows = await self._fetch("heartbeat", list(job_ids), worker, lease)
        return {row["id"]: row["cancel_requested"] for row in rows}

    async def set_progress(self, job_id: int, worker: str, fraction: float, message: str) -> bool | None:
        rows = await self._fetch("set_progress", job_id, fraction, message, worker)
        return bool(rows[0]["cancel_requested"]) if rows else None

    async def finish(self, job_id: int, worker: str, state: TerminalState, error: str | None) -> None:
        await self._fetch("finish_job", job_id, worker, state, error)

    async def finish_succeeded(self, job_ids: Sequence[int], worker: str) -> None:
        await self._fetch("finish_succeeded", list(job_ids), worker)

    async def retry(self, job_id: int, worker: str, delay: float, error: str | None) -> None:
        await self._fetch("retry_job", job_id, worker, delay, error)

    async def release(self, worker: str, job_ids: Sequence[int] | None = None) -> list[int]:
        if job_ids is None:
            rows = await self._fetch("release_owned", worker)
        else:
            rows = await self._fetch("release_jobs", list(job_ids), worker)
        return [row["id"] for row in rows]

    async def requeue_expired(self) -> list[int]:
        return [row["id"] for row in await self._fetch("requeue_expired")]

    async def next_run_after(self) -> float | None:
        rows = await self._fetch("next_run_after")
        due = rows[0][0] if rows else None
        return None if due is None else float(due)

    async def _fetch(self, query: str, *args: object) -> list[asyncpg.Record]:
        if self._pool is None:
            raise StoreUnavailable("the job store is closed")
        try:
            rows: list[asyncpg.Record] = await self._pool.fetch(QUERIES[query], *args)
            return rows
        except _ERRORS as exc:
            raise StoreUnavailable(f"job store: {query} failed: {exc}") from exc


def _payload(value: Any) -> dict[str, Any]:
    """asyncpg returns jsonb as text unless a codec is set; accept both."""
    if isinstance(value, dict):
        return value
    decoded = json.loads(value) if isinstance(value, str) else {}
    return decoded if isinstance(decoded, dict) else {}
