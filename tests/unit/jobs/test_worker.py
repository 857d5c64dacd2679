"""The worker's logic on the in-memory job store: retry, backoff, cancel, lease loss, stop."""

from __future__ import annotations

import asyncio
import itertools
import logging
from collections.abc import Callable, Sequence

import pytest

from backend.flows.runs_errors import RunFailed
from backend.jobs.context import JobContext
from backend.jobs.exceptions import StoreUnavailable
from backend.jobs.memory import InMemoryJobStore
from backend.jobs.store import ClaimedJob
from backend.jobs.worker import Worker


async def _until(condition: Callable[[], bool], timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():
            await asyncio.sleep(0.001)


async def test_runs_a_job_and_records_its_success() -> None:
    store = InMemoryJobStore()
    seen: list[tuple[int, str | None, dict[str, object], int]] = []

    async def handler(job: JobContext) -> None:
        await job.progress(0.5, "half")
        seen.append((job.id, job.device_id, job.payload, job.attempt))

    worker = Worker(store, {"noop": handler}, concurrency=2, poll_seconds=30)
    await worker.start()
    try:
        job_id = store.enqueue("noop", device_id="d1", payload={"a": 1})
        await _until(lambda: store.jobs[job_id].state == "succeeded")
    finally:
        await worker.stop()
    assert seen == [(1, "d1", {"a": 1}, 1)]
    job = store.jobs[job_id]
    assert (job.attempts, job.progress, job.progress_message, job.lease_owner) == (1, 1.0, "done", None)
    assert store.closed


async def test_failing_handler_retries_with_backoff_then_fails() -> None:
    store = InMemoryJobStore()
    times: list[float] = []

    async def handler(job: JobContext) -> None:
        times.append(asyncio.get_running_loop().time())
        raise ValueError(f"boom {job.attempt}")

    worker = Worker(store, {"bad": handler}, concurrency=1, retry_base_seconds=0.2, poll_seconds=30)
    await worker.start()
    try:
        job_id = store.enqueue("bad", max_attempts=3)
        await _until(lambda: store.jobs[job_id].state == "failed")
    finally:
        await worker.stop()
    job = store.jobs[job_id]
    assert (job.attempts, job.error, job.lease_owner) == (3, "boom 3", None)
    first_gap, second_gap = (b - a for a, b in itertools.pairwise(times))
    # Backoff with base 0.2 s: 0.1-0.2 s after attempt 1, 0.2-0.4 s after attempt 2;
    # the worker wakes when a retry is due, not at its 30 s poll (slack for a busy machine).
    assert 0.1 <= first_gap < 2.0
    assert 0.2 <= second_gap < 2.0


async def test_an_error_without_a_message_is_named_by_its_type() -> None:
    store = InMemoryJobStore()

    async def handler(_job: JobContext) -> None:
        raise KeyError

    worker = Worker(store, {"bad": handler}, concurrency=1)
    await worker.start()
    try:
        job_id = store.enqueue("bad", max_attempts=1)
        await _until(lambda: store.jobs[job_id].state == "failed")
    finally:
        await worker.stop()
    assert store.jobs[job_id].error == "KeyError"


async def test_a_failed_outcome_is_logged_below_warning(caplog: pytest.LogCaptureFixture) -> None:
    # A flow run whose step failed is a result its caller reports (`corral flow run`,
    # `corral exec`); a WARNING line on stderr would repeat it, in the middle of the live table.
    store = InMemoryJobStore()

    async def handler(_job: JobContext) -> None:
        raise RunFailed('tapOn text "Log in": no element became visible within 2s')

    worker = Worker(store, {"flow": handler}, concurrency=1)
    await worker.start()
    try:
        with caplog.at_level(logging.INFO, logger="backend.jobs.worker"):
            job_id = store.enqueue("flow", max_attempts=1)
            await _until(lambda: store.jobs[job_id].state == "failed")
    finally:
        await worker.stop()
    assert store.jobs[job_id].error == 'tapOn text "Log in": no element became visible within 2s'
    records = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "backend.jobs.worker"]
    assert records == [
        ("INFO", f'job {job_id} (flow) failed: tapOn text "Log in": no element became visible within 2s')
    ]


async def test_a_fault_that_fails_a_job_for_good_is_a_warning(caplog: pytest.LogCaptureFixture) -> None:
    store = InMemoryJobStore()

    async def handler(_job: JobContext) -> None:
        raise ValueError("docker said no")

    worker = Worker(store, {"provision": handler}, concurrency=1)
    await worker.start()
    try:
        with caplog.at_level(logging.INFO, logger="backend.jobs.worker"):
            job_id = store.enqueue("provision", max_attempts=1)
            await _until(lambda: store.jobs[job_id].state == "failed")
    finally:
        await worker.stop()
    records = [(r.levelname, r.getMessage()) for r in caplog.records if r.name == "backend.jobs.worker"]
    assert records == [("WARNING", f"job {job_id} (provision) failed for good: docker said no")]


async def test_unknown_kind_fails_at_once_without_retry() -> None:
    store = InMemoryJobStore()
    worker = Worker(store, {}, concurrency=1)
    await worker.start()
    try:
        job_id = store.enqueue("mystery", max_attempts=3)
        await _until(lambda: store.jobs[job_id].state == "failed")
    finally:
        await worker.stop()
    job = store.jobs[job_id]
    assert (job.attempts, job.error) == (1, "no handler for job kind 'mystery'")


async def test_cancel_is_seen_at_the_next_progress() -> None:
    store = InMemoryJobStore()
    started = asyncio.Event()
    cleaned = asyncio.Event()

    async def handler(job: JobContext) -> None:
        started.set()
        try:
            while True:
                await job.progress(0.1, "working")
                await asyncio.sleep(0.01)
        finally:
            cleaned.set()

    worker = Worker(store, {"long": handler}, concurrency=1)
    await worker.start()
    try:
        job_id = store.enqueue("long")
        await asyncio.wait_for(started.wait(), 5)
        store.request_cancel(job_id)
        await _until(lambda: store.jobs[job_id].state == "cancelled")
    finally:
        await worker.stop()
    assert cleaned.is_set()
    assert (store.jobs[job_id].attempts, store.jobs[job_id].lease_owner) == (1, None)


async def test_cancel_seen_by_the_heartbeat_stops_a_handler_at_its_checkpoint() -> None:
    store = InMemoryJobStore()
    at_checkpoint = asyncio.Event()
    go_on = asyncio.Event()

    async def handler(job: JobContext) -> None:
        at_checkpoint.set()
        await go_on.wait()
        job.checkpoint()

    worker = Worker(store, {"long": handler}, concurrency=1)
    await worker.start()
    try:
        job_id = store.enqueue("long")
        await asyncio.wait_for(at_checkpoint.wait(), 5)
        store.request_cancel(job_id)
        await worker.beat()
        go_on.set()
        await _until(lambda: store.jobs[job_id].state == "cancelled")
    finally:
        await worker.stop()


class _Handlers:
    """A handler that blocks until told, recording how it ended."""

    def __init__(self) -> None:
        self.started = asyncio.Event()
        self.release = asyncio.Event()
        self.ended: list[str] = []
        self.after_progress = False

    async def block(self, _job: JobContext) -> None:
        self.started.set()
        try:
            await self.release.wait()
        except asyncio.CancelledError:
            self.ended.append("cancelled")
            raise
        self.ended.append("returned")

    async def progress_then_act(self, job: JobContext) -> None:
        self.started.set()
        await self.release.wait()
        try:
            await job.progress(0.5, "half")
        except asyncio.CancelledError:
            self.ended.append("cancelled")
            raise
        self.after_progress = True


async def test_a_lease_lost_to_another_worker_stops_the_handler_and_writes_nothing(
    caplog: pytest.LogCaptureFixture,
) -> None:
    store = InMemoryJobStore()
    handlers = _Handlers()
    worker = Worker(store, {"long": handlers.block}, concurrency=1)
    await worker.start()
    try:
        job_id = store.enqueue("long")
        await asyncio.wait_for(handlers.started.wait(), 5)
        store.take_over(job_id, "other-worker")
        with caplog.at_level(logging.WARNING, logger="backend.jobs.worker"):
            await worker.beat()
            await _until(lambda: handlers.ended == ["cancelled"])
    finally:
        await worker.stop()
    job = store.jobs[job_id]
    assert (job.state, job.lease_owner, job.attempts, job.error) == ("running", "other-worker", 2, None)
    assert f"job {job_id}: another worker holds it now; stopped its handler" in caplog.text


async def test_a_lease_found_lost_by_progress_stops_the_handler_before_it_acts() -> None:
    store = InMemoryJobStore()
    handlers = _Handlers()
    worker = Worker(store, {"long": handlers.progress_then_act}, concurrency=1)
    await worker.start()
    try:
        job_id = store.enqueue("long")
        await asyncio.wait_for(handlers.started.wait(), 5)
        store.take_over(job_id, "other-worker")
        handlers.release.set()
        await _until(lambda: handlers.ended == ["cancelled"])
    finally:
        await worker.stop()
    assert not handlers.after_progress
    job = store.jobs[job_id]
    assert (job.state, job.lease_owner, job.progress, job.error) == ("running", "other-worker", 0.0, None)


async def test_a_job_lost_while_in_the_backlog_is_not_started() -> None:
    store = InMemoryJobStore()
    handlers = _Handlers()
    worker = Worker(store, {"long": handlers.block}, concurrency=1, prefetch=2)
    await worker.start()
    try:
        first = store.enqueue("long")
        second = store.enqueue("long")
        await asyncio.wait_for(handlers.started.wait(), 5)
        await _until(lambda: store.jobs[second].state == "running")
        store.take_over(second, "other-worker")
        await worker.beat()
        handlers.release.set()
        await _until(lambda: store.jobs[first].state == "succeeded")
    finally:
        await worker.stop()
    assert handlers.ended == ["returned"]
    job = store.jobs[second]
    assert (job.state, job.lease_owner, job.attempts) == ("running", "other-worker", 2)


async def test_stop_cancels_a_running_handler_and_undoes_its_attempt() -> None:
    store = InMemoryJobStore()
    handlers = _Handlers()
    worker = Worker(store, {"long": handlers.block}, concurrency=1)
    await worker.start()
    job_id = store.enqueue("long")
    await asyncio.wait_for(handlers.started.wait(), 5)
    await worker.stop(grace=0.05)
    assert handlers.ended == ["cancelled"]
    job = store.jobs[job_id]
    assert (job.state, job.attempts, job.lease_owner) == ("queued", 0, None)


async def test_stop_hands_back_the_backlog_with_attempts_undone() -> None:
    store = InMemoryJobStore()
    handlers = _Handlers()
    worker = Worker(store, {"long": handlers.block}, concurrency=1, prefetch=4)
    await worker.start()
    ids = [store.enqueue("long") for _ in range(3)]
    await asyncio.wait_for(handlers.started.wait(), 5)
    await _until(lambda: all(store.jobs[i].state == "running" for i in ids))
    handlers.release.set()
    await worker.stop()
    states = [(store.jobs[i].state, store.jobs[i].attempts, store.jobs[i].lease_owner) for i in ids]
    assert states == [("succeeded", 1, None), ("queued", 0, None), ("queued", 0, None)]


class _PausingStore(InMemoryJobStore):
    """Pauses every claim right after it committed, until the test lets it return."""

    def __init__(self) -> None:
        super().__init__()
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


@pytest.mark.parametrize("round_", range(30))
async def test_stop_right_after_a_claim_committed_releases_the_job(round_: int) -> None:
    # A stopping worker once cancelled its claim loop here: the job stayed
    # 'running' with no one on it until its lease expired, and lost an attempt.
    store = _PausingStore()
    ran: list[int] = []

    async def handler(job: JobContext) -> None:
        ran.append(job.id)

    worker = Worker(store, {"noop": handler}, concurrency=2, lease_seconds=60)
    await worker.start()
    job_id = store.enqueue("noop")
    await asyncio.wait_for(store.committed.wait(), 5)
    assert store.jobs[job_id].state == "running"
    stopping = asyncio.create_task(worker.stop())
    await _until(lambda: worker.stopping)
    store.resume.set()
    await asyncio.wait_for(stopping, 10)
    job = store.jobs[job_id]
    assert (job.state, job.attempts, job.lease_owner, job.lease_expires_at) == ("queued", 0, None, None)
    assert ran == []


@pytest.mark.parametrize("round_", range(10))
async def test_a_stop_that_gives_up_on_a_stuck_claim_still_releases_its_job(round_: int) -> None:
    store = _PausingStore()
    worker = Worker(store, {"noop": lambda job: asyncio.sleep(0)}, concurrency=2, lease_seconds=60)
    await worker.start()
    job_id = store.enqueue("noop")
    await asyncio.wait_for(store.committed.wait(), 5)
    await worker.stop(grace=0.01)
    job = store.jobs[job_id]
    assert (job.state, job.attempts, job.lease_owner) == ("queued", 0, None)
    store.resume.set()


async def test_the_heartbeat_requeues_a_dead_workers_expired_job() -> None:
    store = InMemoryJobStore()
    dead = store.enqueue("noop")
    await store.claim("dead-worker", 1, lease=-1.0)
    ran: list[tuple[int, int]] = []

    async def handler(job: JobContext) -> None:
        ran.append((job.id, job.attempt))

    worker = Worker(store, {"noop": handler}, concurrency=1, lease_seconds=60)
    await worker.start()
    try:
        await worker.beat()
        await _until(lambda: store.jobs[dead].state == "succeeded")
    finally:
        await worker.stop()
    assert ran == [(dead, 2)]
    assert store.jobs[dead].error == "worker lost its lease; requeued"


async def test_the_worker_rides_out_an_unavailable_store() -> None:
    store = InMemoryJobStore()
    done = asyncio.Event()

    async def handler(_job: JobContext) -> None:
        done.set()

    worker = Worker(store, {"noop": handler}, concurrency=1, poll_seconds=30)
    await worker.start()
    try:
        store.unavailable = True
        job_id = store.enqueue("noop")
        await worker.beat()  # logs, does not raise
        store.unavailable = False
        await asyncio.wait_for(done.wait(), 5)
        await _until(lambda: store.jobs[job_id].state == "succeeded")
    finally:
        await worker.stop()


async def test_stop_without_a_start_or_twice_does_nothing_more(caplog: pytest.LogCaptureFixture) -> None:
    store = InMemoryJobStore()
    store.unavailable = True
    worker = Worker(store, {}, concurrency=1)
    with pytest.raises(StoreUnavailable):
        await worker.start()
    await worker.stop()
    assert store.closed
    store = InMemoryJobStore()
    worker = Worker(store, {}, concurrency=1)
    await worker.start()
    await worker.stop()
    store.unavailable = True
    with caplog.at_level(logging.WARNING):
        await worker.stop()
    assert caplog.text == ""


async def test_two_workers_split_the_queue_by_kind_each_with_its_own_concurrency() -> None:
    """Provisioning keeps its small limit while flow runs (mostly waiting) fill their own slots."""
    store = InMemoryJobStore()
    release = asyncio.Event()
    running: dict[str, int] = {"provision": 0, "flow": 0}
    peak: dict[str, int] = {"provision": 0, "flow": 0}

    async def handler(job: JobContext) -> None:
        running[job.kind] += 1
        peak[job.kind] = max(peak[job.kind], running[job.kind])
        await release.wait()
        running[job.kind] -= 1

    devices = Worker(store, {"provision": handler}, concurrency=2, poll_seconds=30, kinds=["provision"])
    flows = Worker(store, {"flow": handler}, concurrency=6, poll_seconds=30, kinds=["flow"])
    await devices.start()
    await flows.start()
    try:
        ids = [store.enqueue("provision") for _ in range(4)] + [store.enqueue("flow") for _ in range(6)]
        await _until(lambda: running == {"provision": 2, "flow": 6})
        owners = {store.jobs[i].kind: set() for i in ids}
        for job_id in ids:
            if store.jobs[job_id].lease_owner is not None:
                owners[store.jobs[job_id].kind].add(store.jobs[job_id].lease_owner)
        assert owners == {"provision": {devices.name}, "flow": {flows.name}}
        release.set()
        await _until(lambda: all(store.jobs[i].state == "succeeded" for i in ids))
    finally:
        await devices.stop()
        await flows.stop()
    assert peak == {"provision": 2, "flow": 6}
