"""Job engine benchmark: Corral's worker against procrastinate, same Postgres, same run.

Embedded Postgres with default settings (fsync on), no-op jobs. Prints:
- enqueue-to-start latency p50/p99 with an idle worker (target p99 <= 5 ms);
- throughput with 4 worker tasks, claiming per free slot and in batch mode
  (target >= 4,000 jobs/s);
- time to requeue and restart a job whose worker was SIGKILLed (target <= 2 x lease
  and under 10 s);
each with the ratio against procrastinate's figure where it has one. Exits 1 when a
target is missed (see bench/report.py). Quick run: ``--jobs 4000 --latency-jobs 200``.

Run: .venv/bin/python bench/jobs.py [--jobs 20000] [--latency-jobs 500] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import signal
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run as a plain script

import asyncpg

from backend.config import Settings
from backend.db import Database
from backend.db.database import asyncpg_connect_kwargs
from backend.db.embedded import EmbeddedPostgres
from backend.jobs.worker import JobContext, Worker
from bench.report import Report

CONCURRENCY = 4
LEASE = 5.0
TARGET_P99_MS = 5.0
TARGET_BATCH_JOBS_S = 4000.0
TARGET_RERUN_S = 2 * LEASE
PROCRASTINATE_STALLED_S = 30.0
"""procrastinate's default delay before a stalled worker's job is retried."""


def _percentiles(samples: list[float]) -> tuple[float, float]:
    ordered = sorted(samples)
    return statistics.median(ordered) * 1000, ordered[int(len(ordered) * 0.99) - 1] * 1000


async def _create_database(url: str, name: str) -> str:
    connection = await asyncpg.connect(**asyncpg_connect_kwargs(url))
    try:
        await connection.execute(f"CREATE DATABASE {name}")
    finally:
        await connection.close()
    return url.replace("/postgres?", f"/{name}?")


# --- Corral ----------------------------------------------------------------------


async def corral_latency(url: str, count: int) -> list[float]:
    database = await Database.open(Settings(database_url=url))
    started: asyncio.Queue[float] = asyncio.Queue()

    async def handler(_job: JobContext) -> None:
        started.put_nowait(time.perf_counter())

    worker = Worker(database, {"noop": handler}, concurrency=CONCURRENCY)
    await worker.start()
    connection = await database.connect_raw()
    await asyncio.sleep(0.3)
    samples = []
    try:
        for _ in range(count):
            enqueued = time.perf_counter()
            await connection.execute("INSERT INTO jobs (kind) VALUES ('noop')")
            samples.append(await started.get() - enqueued)
            await asyncio.sleep(0.002)
    finally:
        await connection.close()
        await worker.stop()
        await database.close()
    return samples


async def corral_throughput(url: str, count: int, prefetch: int) -> float:
    database = await Database.open(Settings(database_url=url))
    connection = await database.connect_raw()
    await connection.execute("TRUNCATE jobs")
    await connection.execute("INSERT INTO jobs (kind) SELECT 'noop' FROM generate_series(1, $1)", count)
    done = asyncio.Event()
    remaining = [count]

    async def handler(_job: JobContext) -> None:
        remaining[0] -= 1
        if remaining[0] == 0:
            done.set()

    worker = Worker(database, {"noop": handler}, concurrency=CONCURRENCY, prefetch=prefetch)
    begin = time.perf_counter()
    await worker.start()
    await done.wait()
    await worker.stop()  # includes recording the last successes
    elapsed = time.perf_counter() - begin
    succeeded = await connection.fetchval("SELECT count(*) FROM jobs WHERE state = 'succeeded'")
    await connection.close()
    await database.close()
    if succeeded != count:
        raise SystemExit(f"only {succeeded} of {count} jobs recorded as succeeded")
    return count / elapsed


async def victim(url: str) -> None:
    """Subprocess: claim the one 'stuck' job and hang until killed."""
    database = await Database.open(Settings(database_url=url), migrate_schema=False)

    async def handler(_job: JobContext) -> None:
        print("claimed", flush=True)
        await asyncio.Event().wait()

    worker = Worker(database, {"stuck": handler}, concurrency=1, lease_seconds=LEASE)
    await worker.start()
    await asyncio.Event().wait()


async def corral_requeue(url: str) -> float:
    database = await Database.open(Settings(database_url=url))
    connection = await database.connect_raw()
    await connection.execute("TRUNCATE jobs")
    process = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--victim", url, stdout=asyncio.subprocess.PIPE
    )
    assert process.stdout is not None
    await connection.execute("INSERT INTO jobs (kind) VALUES ('stuck')")
    await asyncio.wait_for(process.stdout.readline(), 30)
    rerun = asyncio.Event()

    async def handler(_job: JobContext) -> None:
        rerun.set()

    survivor = Worker(database, {"stuck": handler}, concurrency=1, lease_seconds=LEASE)
    await survivor.start()
    killed = time.perf_counter()
    process.send_signal(signal.SIGKILL)
    await process.wait()
    await rerun.wait()
    elapsed = time.perf_counter() - killed
    await survivor.stop()
    await connection.close()
    await database.close()
    return elapsed


# --- procrastinate -------------------------------------------------------------------


def _conninfo(url: str) -> str:
    kwargs = asyncpg_connect_kwargs(url)
    return f"dbname={kwargs['database']} user={kwargs['user']} host={kwargs['host']}"


async def procrastinate_latency(url: str, count: int) -> list[float]:
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=_conninfo(url)))
    started: asyncio.Queue[float] = asyncio.Queue()

    @app.task(name="noop")
    async def noop() -> None:
        started.put_nowait(time.perf_counter())

    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        worker = asyncio.create_task(
            app.run_worker_async(concurrency=CONCURRENCY, install_signal_handlers=False)
        )
        await asyncio.sleep(0.5)
        samples = []
        for _ in range(count):
            enqueued = time.perf_counter()
            await noop.defer_async()
            samples.append(await started.get() - enqueued)
            await asyncio.sleep(0.002)
        worker.cancel()
        await asyncio.gather(worker, return_exceptions=True)
    return samples


async def procrastinate_throughput(url: str, count: int) -> float:
    import procrastinate

    app = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=_conninfo(url)))

    @app.task(name="noop_bulk")
    async def noop_bulk() -> None:
        return None

    async with app.open_async():
        for start in range(0, count, 1000):
            await noop_bulk.batch_defer_async(*({} for _ in range(min(1000, count - start))))
        begin = time.perf_counter()
        await app.run_worker_async(concurrency=CONCURRENCY, wait=False, install_signal_handlers=False)
        return count / (time.perf_counter() - begin)


async def main(jobs: int, latency_jobs: int, report: Report) -> None:
    root = Path(tempfile.mkdtemp(prefix="corral-bench-jobs-"))
    os.chmod(root, 0o755)
    embedded = EmbeddedPostgres(root / "pgdata")
    base = await embedded.start()
    try:
        ours = await _create_database(base, "bench_corral")
        theirs = await _create_database(base, "bench_procrastinate")

        p50, p99 = _percentiles(await corral_latency(ours, latency_jobs))
        _q50, q99 = _percentiles(await procrastinate_latency(theirs, latency_jobs))
        report.figure("latency_p50_ms", p50, "ms", label="enqueue-to-start, idle worker: corral p50")
        report.figure(
            "latency_p99_ms",
            p99,
            "ms",
            target=TARGET_P99_MS,
            label="enqueue-to-start, idle worker: corral p99",
        )
        report.figure("procrastinate_latency_p99_ms", q99, "ms", label="procrastinate p99 (baseline)")
        report.ratio(
            "latency_p99_vs_procrastinate",
            p99,
            q99,
            label="p99 ratio corral / procrastinate (lower is faster)",
        )
        theirs_rate = await procrastinate_throughput(theirs, min(jobs, 5000))
        report.figure(
            "procrastinate_jobs_s",
            theirs_rate,
            "jobs/s",
            label=f"procrastinate, {CONCURRENCY} workers (baseline)",
        )
        for key, label, prefetch, target in (
            ("slot", "per free slot", 0, None),
            ("batch", "batch mode, prefetch 250", 250, TARGET_BATCH_JOBS_S),
        ):
            rate = await corral_throughput(ours, jobs, prefetch)
            report.figure(
                f"throughput_{key}_jobs_s",
                rate,
                "jobs/s",
                target=target,
                better="higher",
                label=f"throughput, {CONCURRENCY} worker tasks, {label}",
            )
            report.ratio(
                f"throughput_{key}_vs_procrastinate",
                rate,
                theirs_rate,
                label=f"ratio corral {label} / procrastinate",
            )
        requeue = await corral_requeue(ours)
        report.figure(
            "killed_worker_rerun_s",
            requeue,
            "s",
            target=TARGET_RERUN_S,
            label=f"SIGKILLed worker's job running again (lease {LEASE:.0f} s)",
        )
        report.ratio(
            "rerun_vs_procrastinate_default",
            requeue,
            PROCRASTINATE_STALLED_S,
            label="ratio to procrastinate's stalled-worker default of 30 s (not measured)",
        )
    finally:
        await embedded.stop()
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--jobs", type=int, default=20000)
    parser.add_argument("--latency-jobs", type=int, default=500)
    parser.add_argument("--json", help="write the figures here as JSON")
    parser.add_argument("--victim", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.victim:
        asyncio.run(victim(args.victim))
    else:
        report = Report("jobs")
        asyncio.run(main(args.jobs, args.latency_jobs, report))
        sys.exit(report.finish(args.json))
