"""Job workers: claim, run handlers, heartbeat, retry, reap, release on stop.

One :class:`Worker` per process runs up to ``concurrency`` jobs at once as named
asyncio tasks. It wakes when the store says new work arrived (``NOTIFY`` on
Postgres) and polls only as a fallback. Leases are extended by a heartbeat; a
job whose worker died is requeued by the reaper of any live worker once its
lease expires. All I/O goes through a :class:`~backend.jobs.store.JobStore`.

Every claimed job is accounted for until the worker lets go of it: a claim in
flight always lands in the backlog, even when the claim loop is cancelled, and
:meth:`Worker.stop` hands back everything it still holds with the attempt undone.
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
from collections.abc import Awaitable, Callable, Coroutine, Sequence
from dataclasses import dataclass
from typing import Any

from backend.db import Database
from backend.jobs.context import Handler, JobContext
from backend.jobs.exceptions import JobCancelled, JobFailed, LeaseLost, StoreUnavailable, UnknownJobKind
from backend.jobs.postgres import PostgresJobStore
from backend.jobs.retry import backoff_delay
from backend.jobs.store import ClaimedJob, JobStore

__all__ = ["Handler", "JobContext", "Worker"]

log = logging.getLogger(__name__)

_SHUTDOWN_WRITE_ATTEMPTS = 3
"""Writes during stop() give up sooner: a lease that runs out recovers the job anyway."""


@dataclass(slots=True)
class _Slot:
    task: asyncio.Task[None]
    context: JobContext
    handler_done: bool = False
    """The handler returned or raised; only the outcome is left to write."""


class Worker:
    """Runs jobs of the kinds in *handlers* until :meth:`stop`.

    *store* is a :class:`~backend.jobs.store.JobStore`, or a Database for the
    Postgres one. With *kinds*, it claims only jobs of those kinds (so two workers
    can split the queue, each with its own concurrency); without, any job. At
    most *concurrency* handlers run at once. With *prefetch* > 0
    (batch mode, for many short jobs) the worker also holds up to that many
    claimed jobs in a local backlog and claims in batches, so one claim statement
    serves many jobs. Successes are always recorded in batches by one flusher task.
    """

    def __init__(
        self,
        store: JobStore | Database,
        handlers: dict[str, Handler],
        *,
        concurrency: int = 4,
        prefetch: int = 0,
        lease_seconds: float = 30.0,
        poll_seconds: float = 5.0,
        retry_base_seconds: float = 1.0,
        kinds: Sequence[str] | None = None,
    ) -> None:
        self._store: JobStore = PostgresJobStore(store) if isinstance(store, Database) else store
        self._handlers = handlers
        self._concurrency = concurrency
        self._prefetch = prefetch
        self._lease = lease_seconds
        self._poll = poll_seconds
        self._retry_base = retry_base_seconds
        self._kinds = None if kinds is None else tuple(kinds)
        self.name = f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:6]}"
        self._wake = asyncio.Event()
        self._flush = asyncio.Event()
        self._stopping = asyncio.Event()
        self._backlog: collections.deque[JobContext] = collections.deque()
        self._running: dict[int, _Slot] = {}
        self._succeeded: list[int] = []
        self._claiming: asyncio.Task[list[ClaimedJob]] | None = None
        self._claim_task: asyncio.Task[None] | None = None
        self._flush_task: asyncio.Task[None] | None = None
        self._heartbeat_task: asyncio.Task[None] | None = None
        # Bound once: every claimed job's context gets the same two callables.
        self._progress_writer = self._write_progress
        self._lose_callback = self._lose

    async def start(self) -> None:
        """Open the store and start claiming. Raises StoreUnavailable."""
        # Statements are short (claims, heartbeats, progress): a few connections
        # serve many handlers, which mostly wait on devices, not on this pool.
        await self._store.open(min(self._concurrency, 8) + 3, self._wake.set)
        self._claim_task = self._supervised("claim", self._claim_loop)
        self._flush_task = self._supervised("flush", self._flush_loop)
        self._heartbeat_task = self._supervised("heartbeat", self._heartbeat_loop)

    @property
    def stopping(self) -> bool:
        """True once :meth:`stop` has begun: nothing new is claimed or started."""
        return self._stopping.is_set()

    def _supervised(self, role: str, loop: Callable[[], Coroutine[Any, Any, None]]) -> asyncio.Task[None]:
        async def run() -> None:
            delay = 0.1
            while True:
                try:
                    await loop()
                    return
                except Exception:
                    # A bug in one pass must not end the loop for good: log, back off, go on.
                    log.exception("job worker %s loop failed; restarting in %.1fs", role, delay)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, 5.0)

        return asyncio.create_task(run(), name=f"jobs-{role}[{self.name}]")

    async def stop(self, grace: float = 10.0) -> None:
        """Stop claiming, give running jobs *grace* seconds, then cancel them.

        Every job this worker still holds when it returns has been handed back to
        the queue with its attempt undone: the backlog, a claim that was in flight,
        and handlers cancelled after *grace*. Jobs that ended are recorded first.
        Calling it again, or without a successful :meth:`start`, does nothing more.
        """
        if self._stopping.is_set():
            return
        self._stopping.set()
        self._wake.set()
        if self._claim_task is None:
            await self._store.close()
            return
        # 1. Claiming ends. A claim in flight completes and lands in the backlog.
        await self._end(self._claim_task, grace)
        if self._claiming is not None:
            await asyncio.wait({self._claiming}, timeout=grace)
        # 2. Jobs not started go back at once.
        backlog = [context.id for context in self._backlog]
        self._backlog.clear()
        if backlog:
            await self._record(
                "release",
                functools.partial(self._store.release, self.name, backlog),
                _SHUTDOWN_WRITE_ATTEMPTS,
            )
        # 3. Running jobs get the grace period, then are cancelled (each releases itself).
        tasks = [slot.task for slot in self._running.values()]
        if tasks:
            _, pending = await asyncio.wait(tasks, timeout=grace)
            for task in pending:
                task.cancel()
            await asyncio.gather(*pending, return_exceptions=True)
        # 4. The flusher is never cancelled mid-write (that would lose the ids it
        # holds): it drains what is left and returns once it sees _stopping.
        self._flush.set()
        await self._end(self._flush_task, grace)
        await self._end(self._heartbeat_task, 0)
        # 5. Whatever is still ours (a write above that failed, a claim cut off by
        # a cancelled stop of the claim loop) goes back too.
        await self._record(
            "release", functools.partial(self._store.release, self.name), _SHUTDOWN_WRITE_ATTEMPTS
        )
        await self._store.close()

    @staticmethod
    async def _end(task: asyncio.Task[None] | None, timeout: float) -> None:
        """Wait up to *timeout* for *task* to return, then cancel it."""
        if task is None:
            return
        if timeout > 0:
            await asyncio.wait({task}, timeout=timeout)
        task.cancel()
        await asyncio.gather(task, return_exceptions=True)

    # --- claiming --------------------------------------------------------------

    async def _claim_loop(self) -> None:
        low_water = max(1, self._prefetch // 2)
        while not self._stopping.is_set():
            self._wake.clear()
            want = self._concurrency + self._prefetch - len(self._running) - len(self._backlog)
            timeout = self._poll
            if want > 0 and len(self._backlog) < low_water:
                try:
                    claimed = len(await self._claim(want))
                except StoreUnavailable as exc:
                    log.warning("claiming jobs failed (%s); retrying", exc)
                    claimed, timeout = -1, 1.0
                if claimed == want:
                    continue
                if claimed == 0:
                    timeout = await self._idle_timeout()
            if self._stopping.is_set():
                return
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout)

    def _claim(self, want: int) -> asyncio.Future[list[ClaimedJob]]:
        """Start a claim whose result reaches the backlog even if the caller is cancelled."""
        claim = asyncio.ensure_future(self._store.claim(self.name, want, self._lease, self._kinds))
        self._claiming = claim
        claim.add_done_callback(self._on_claimed)
        return asyncio.shield(claim)

    def _on_claimed(self, claim: asyncio.Task[list[ClaimedJob]]) -> None:
        if self._claiming is claim:
            self._claiming = None
        if claim.cancelled() or claim.exception() is not None:
            return  # the claim loop logs it; nothing was claimed that we know of
        for job in claim.result():
            self._backlog.append(JobContext(job, self._progress_writer, self._lose_callback))
        self._fill()

    async def _idle_timeout(self) -> float:
        """Sleep until the next delayed job is due (a wake-up comes earlier)."""
        try:
            due = await self._store.next_run_after()
        except StoreUnavailable:
            return 1.0
        return self._poll if due is None else max(0.01, min(self._poll, due))

    def _fill(self) -> None:
        while self._backlog and len(self._running) < self._concurrency and not self._stopping.is_set():
            context = self._backlog.popleft()
            task = asyncio.create_task(self._run(context), name=f"job-{context.id}-{context.kind}")
            self._running[context.id] = _Slot(task, context)
            task.add_done_callback(functools.partial(self._on_done, context.id))

    def _on_done(self, job_id: int, _task: asyncio.Task[None]) -> None:
        self._running.pop(job_id, None)
        self._fill()
        self._wake.set()

    # --- running ---------------------------------------------------------------

    async def _run(self, context: JobContext) -> None:
        handler = self._handlers.get(context.kind)
        try:
            try:
                if handler is None:
                    raise UnknownJobKind(f"no handler for job kind {context.kind!r}")
                await handler(context)
            except asyncio.CancelledError:
                task = asyncio.current_task()
                # Our own cancel for a lost lease, not a shutdown: end it here.
                if context.lease_lost and (task is None or task.uncancel() == 0):
                    raise LeaseLost(f"job {context.id}: another worker holds it now") from None
                raise
            finally:
                self._handler_done(context.id)
            if context.lease_lost:
                raise LeaseLost(f"job {context.id}: another worker holds it now")
        except LeaseLost as exc:
            log.warning("%s; stopped its handler without recording anything", exc)
        except asyncio.CancelledError:
            # Shutdown: hand the job back, attempt undone, so the next worker resumes it at once.
            if not context.lease_lost:
                release = functools.partial(self._store.release, self.name, [context.id])
                await asyncio.shield(self._record("release", release, _SHUTDOWN_WRITE_ATTEMPTS))
            raise
        except Exception as exc:
            await self._failed(context, exc)
        else:
            self._succeeded.append(context.id)
            self._flush.set()

    def _handler_done(self, job_id: int) -> None:
        slot = self._running.get(job_id)
        if slot is not None:
            slot.handler_done = True

    async def _failed(self, context: JobContext, exc: Exception) -> None:
        if context.lease_lost:
            log.warning("job %s: lease lost; its outcome (%s) is not recorded", context.id, exc)
            return
        if isinstance(exc, JobCancelled):
            await self._record(
                "cancel", functools.partial(self._store.finish, context.id, self.name, "cancelled", None)
            )
            return
        message = str(exc) or type(exc).__name__
        if context.is_last_attempt or isinstance(exc, UnknownJobKind):
            if isinstance(exc, JobFailed):  # an outcome its caller reports, not a fault
                log.info("job %s (%s) failed: %s", context.id, context.kind, message)
            else:
                log.warning("job %s (%s) failed for good: %s", context.id, context.kind, message)
            write = functools.partial(self._store.finish, context.id, self.name, "failed", message)
            await self._record("failure", write)
            return
        delay = backoff_delay(context.attempt, base=self._retry_base)
        log.info("job %s attempt %s failed (%s); retry in %.1fs", context.id, context.attempt, message, delay)
        await self._record(
            "retry", functools.partial(self._store.retry, context.id, self.name, delay, message)
        )

    async def _write_progress(self, job_id: int, fraction: float, message: str) -> bool | None:
        return await self._store.set_progress(job_id, self.name, fraction, message)

    def _lose(self, job_id: int) -> None:
        """The store says another worker holds *job_id*: drop it or stop its handler."""
        slot = self._running.get(job_id)
        if slot is not None:
            if not slot.handler_done:
                slot.task.cancel(msg="lease lost")
            return
        for context in self._backlog:
            if context.id == job_id:
                self._backlog.remove(context)
                log.warning("job %s: lease lost before it started; left to its new owner", job_id)
                return

    async def _record(self, what: str, write: Callable[[], Awaitable[object]], attempts: int = 20) -> None:
        """Write a job's outcome, riding out a Postgres restart.

        If it still fails, the lease expires and the job runs again: handlers are
        idempotent, so the outcome is recomputed rather than lost.
        """
        delay = 0.1
        for attempt in range(attempts):
            try:
                await write()
                return
            except StoreUnavailable as exc:
                if attempt == attempts - 1:
                    log.error("could not record %s: %s", what, exc)
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
            await self._record("successes", functools.partial(self._store.finish_succeeded, ids, self.name))

    # --- heartbeat -------------------------------------------------------------

    async def _heartbeat_loop(self) -> None:
        """Every lease/3: extend our leases, see cancels and lost leases, requeue expired ones.

        So a job whose worker was killed runs again within about 1.33 x lease.
        """
        while True:
            await asyncio.sleep(self._lease / 3)
            await self.beat()

    async def beat(self) -> None:
        """One heartbeat pass (the heartbeat loop calls it every lease/3)."""
        held = [*self._running, *(context.id for context in self._backlog)]
        try:
            if await self._store.requeue_expired():
                self._wake.set()
            still_held = await self._store.heartbeat(self.name, held, self._lease) if held else {}
        except StoreUnavailable as exc:
            log.warning("job heartbeat failed: %s", exc)
            return
        for job_id in held:
            if job_id not in still_held:
                slot = self._running.get(job_id)
                if slot is not None:
                    slot.context.lose_lease()
                else:
                    self._lose(job_id)
            elif still_held[job_id] and (slot := self._running.get(job_id)) is not None:
                slot.context.cancel_requested = True
