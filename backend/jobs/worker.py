"""Job workers: claim with SKIP LOCKED, run handlers, heartbeat, retry, reap.

One :class:`Worker` per process runs up to ``concurrency`` jobs at once as named
asyncio tasks. It wakes on ``NOTIFY`` (see :mod:`backend.db.notify`) and polls
only as a fallback. Leases are extended by a heartbeat; a job whose worker died
is requeued by the reaper of any live worker once its lease expires.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import functools
import logging
import os
import socket
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

import asyncpg

from backend.db import Database
from backend.db.notify import channel
from backend.jobs.exceptions import JobCancelled, LeaseLost, UnknownJobKind
from backend.jobs.queries import QUERIES
from backend.jobs.retry import backoff_delay

__all__ = ["Handler", "JobContext", "Worker"]

log = logging.getLogger(__name__)

Handler = Callable[["JobContext"], Awaitable[None]]

DB_ERRORS = (OSError, asyncpg.PostgresError, asyncpg.InterfaceError)
"""What a lost or restarting Postgres raises through asyncpg."""


@dataclass
class JobContext:
    """What a handler sees of its job. Call :meth:`progress` at checkpoints."""

    id: int
    kind: str
    device_id: str | None
    payload: dict[str, Any]
    attempt: int
    max_attempts: int
    _pool: asyncpg.Pool = field(repr=False)
    cancel_requested: bool = False

    @property
    def is_last_attempt(self) -> bool:
        return self.attempt >= self.max_attempts

    async def progress(self, fraction: float, message: str) -> None:
        """Record progress; raises JobCancelled if the job was cancelled meanwhile."""
        try:
            cancelled = await self._pool.fetchval(
                QUERIES["set_progress"], self.id, max(0.0, min(1.0, fraction)), message
            )
        except DB_ERRORS as exc:
            # Progress is best effort: a Postgres restart must not fail the job.
            log.warning("job %s: could not record progress: %s", self.id, exc)
            cancelled = False
        self.checkpoint(bool(cancelled))

    def checkpoint(self, cancelled: bool = False) -> None:
        """Raise JobCancelled if a cancel was seen here or by the heartbeat."""
        self.cancel_requested = self.cancel_requested or cancelled
        if self.cancel_requested:
            raise JobCancelled()


class Worker:
    """Runs jobs of the kinds in *handlers* until :meth:`stop`.

    At most *concurrency* handlers run at once. With *prefetch* > 0 (batch mode,
    for many short jobs) the worker also holds up to that many claimed jobs in
    a local backlog and claims in batches, so one claim statement serves many
    jobs. Successes are always recorded in batches by one flusher task.
    """

    def __init__(
        self,
        database: Database,
        handlers: dict[str, Handler],
        *,
        concurrency: int = 4,
        prefetch: int = 0,
        lease_seconds: float = 30.0,
        poll_seconds: float = 5.0,
        retry_base_seconds: float = 1.0,
    ) -> None:
        self._database = database
        self._handlers = handlers
        self._concurrency = concurrency
        self._prefetch = prefetch
        self._lease = lease_seconds
        self._poll = poll_seconds
        self._retry_base = retry_base_seconds
        self.name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._pool: asyncpg.Pool | None = None
        self._wake = asyncio.Event()
        self._flush = asyncio.Event()
        self._stopping = asyncio.Event()
        self._backlog: collections.deque[JobContext] = collections.deque()
        self._running: dict[int, tuple[asyncio.Task[None], JobContext]] = {}
        self._succeeded: list[int] = []
        self._loops: list[asyncio.Task[None]] = []

    async def start(self) -> None:
        from backend.db.database import asyncpg_connect_kwargs

        self._pool = await asyncpg.create_pool(
            **asyncpg_connect_kwargs(self._database.url), min_size=1, max_size=self._concurrency + 3
        )
        self._database.on_notify(channel("jobs"), self._on_jobs_notify)
        self._loops = [
            asyncio.create_task(self._claim_loop(), name=f"jobs-claim[{self.name}]"),
            asyncio.create_task(self._flush_loop(), name=f"jobs-flush[{self.name}]"),
            asyncio.create_task(self._heartbeat_loop(), name=f"jobs-heartbeat[{self.name}]"),
        ]

    def _on_jobs_notify(self, _channel: str, _payload: str) -> None:
        self._wake.set()

    async def stop(self, grace: float = 10.0) -> None:
        """Stop claiming, give running jobs *grace* seconds, then cancel and release them.

        Jobs still in the backlog are handed back to the queue at once.
        """
        self._stopping.set()
        self._wake.set()
        for task in self._loops:
            if task.get_name().startswith(("jobs-claim", "jobs-heartbeat")):
                task.cancel()
        backlog = [context.id for context in self._backlog]
        self._backlog.clear()
        if backlog and self._pool is not None:
            await self._record("release_jobs", backlog, self.name, attempts=1)
        tasks = [task for task, _ in self._running.values()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        # The flusher is never cancelled mid-write (that would lose the ids it
        # holds): it drains what is left and returns once it sees _stopping.
        self._flush.set()
        await asyncio.gather(*self._loops, return_exceptions=True)
        if self._pool is not None:
            await self._pool.close()

    async def _claim_loop(self) -> None:
        assert self._pool is not None
        low_water = max(1, self._prefetch // 2)
        while not self._stopping.is_set():
            self._wake.clear()
            want = self._concurrency + self._prefetch - len(self._running) - len(self._backlog)
            timeout = self._poll
            if want > 0 and len(self._backlog) < low_water:
                try:
                    rows = await self._pool.fetch(QUERIES["claim_jobs"], self.name, want, self._lease)
                except DB_ERRORS as exc:
                    log.warning("claiming jobs failed (%s); retrying", exc)
                    rows = []
                    await asyncio.sleep(1.0)
                self._backlog.extend(self._context(row) for row in rows)
                self._fill()
                if rows and len(rows) == want:
                    continue
                if not rows:
                    timeout = await self._idle_timeout()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    async def _idle_timeout(self) -> float:
        """Sleep until the next delayed job is due (NOTIFY wakes us earlier)."""
        assert self._pool is not None
        try:
            due = await self._pool.fetchval(QUERIES["next_run_after"])
        except DB_ERRORS:
            return 1.0
        return self._poll if due is None else max(0.01, min(self._poll, float(due)))

    def _context(self, row: asyncpg.Record) -> JobContext:
        assert self._pool is not None
        payload = row["payload"]
        return JobContext(
            id=row["id"],
            kind=row["kind"],
            device_id=row["device_id"],
            payload=payload if isinstance(payload, dict) else _json(payload),
            attempt=row["attempts"],
            max_attempts=row["max_attempts"],
            _pool=self._pool,
        )

    def _fill(self) -> None:
        while self._backlog and len(self._running) < self._concurrency and not self._stopping.is_set():
            context = self._backlog.popleft()
            task = asyncio.create_task(self._run(context), name=f"job-{context.id}-{context.kind}")
            self._running[context.id] = (task, context)
            task.add_done_callback(functools.partial(self._on_done, context.id))

    def _on_done(self, job_id: int, _task: asyncio.Task[None]) -> None:
        self._running.pop(job_id, None)
        self._fill()
        self._wake.set()

    async def _run(self, context: JobContext) -> None:
        assert self._pool is not None
        handler = self._handlers.get(context.kind)
        try:
            if handler is None:
                raise UnknownJobKind(f"no handler for job kind {context.kind!r}")
            await handler(context)
        except JobCancelled:
            await self._record("finish_job", context.id, self.name, "cancelled", None)
        except LeaseLost:
            log.warning("job %s: lease lost; another worker owns it", context.id)
        except asyncio.CancelledError:
            # Shutdown: hand the job back so the next worker resumes it at once.
            await asyncio.shield(self._record("retry_job", context.id, self.name, 0, None, attempts=1))
            raise
        except Exception as exc:
            message = f"{type(exc).__name__}: {exc}" if not str(exc) else str(exc)
            if context.is_last_attempt or isinstance(exc, UnknownJobKind):
                log.warning("job %s (%s) failed for good: %s", context.id, context.kind, message)
                await self._record("finish_job", context.id, self.name, "failed", message)
            else:
                delay = backoff_delay(context.attempt, base=self._retry_base)
                log.info(
                    "job %s attempt %s failed (%s); retry in %.1fs",
                    context.id,
                    context.attempt,
                    message,
                    delay,
                )
                await self._record("retry_job", context.id, self.name, delay, message)
        else:
            self._succeeded.append(context.id)
            self._flush.set()

    async def _record(self, query: str, *args: object, attempts: int = 20) -> None:
        """Write a job's outcome, riding out a Postgres restart.

        If it still fails, the lease expires and the job runs again: handlers are
        idempotent, so the outcome is recomputed rather than lost.
        """
        assert self._pool is not None
        delay = 0.1
        for attempt in range(attempts):
            try:
                await self._pool.execute(QUERIES[query], *args)
                return
            except DB_ERRORS as exc:
                if attempt == attempts - 1:
                    log.error("could not record %s for job %s: %s", query, args[0], exc)
                    return
                await asyncio.sleep(delay)
                delay = min(delay * 2, 2.0)

    async def _flush_loop(self) -> None:
        """Record successes; whatever piles up during one write goes in the next."""
        while True:
            await self._flush.wait()
            self._flush.clear()
            await self._flush_succeeded()
            if self._stopping.is_set() and not self._running:
                await self._flush_succeeded()
                return

    async def _flush_succeeded(self) -> None:
        if self._succeeded:
            ids, self._succeeded = self._succeeded, []
            await self._record("finish_succeeded", ids, self.name)

    async def _heartbeat_loop(self) -> None:
        """Every lease/3: extend our leases, see cancels, and requeue others' expired leases.

        So a job whose worker was killed runs again within about 1.33 x lease.
        """
        assert self._pool is not None
        while True:
            await asyncio.sleep(self._lease / 3)
            try:
                if await self._pool.fetch(QUERIES["requeue_expired"]):
                    self._wake.set()
                held = [*self._running, *(context.id for context in self._backlog)]
                rows = await self._pool.fetch(QUERIES["heartbeat"], held, self.name, self._lease)
            except DB_ERRORS as exc:
                log.warning("job heartbeat failed: %s", exc)
                continue
            still_held = {row["id"]: row["cancel_requested"] for row in rows}
            for job_id in held:
                running = self._running.get(job_id)
                if running is None:
                    continue
                task, context = running
                if job_id not in still_held:
                    task.cancel()
                elif still_held[job_id]:
                    context.cancel_requested = True


def _json(value: Any) -> dict[str, Any]:
    import json

    decoded = json.loads(value) if isinstance(value, str) else {}
    return decoded if isinstance(decoded, dict) else {}
