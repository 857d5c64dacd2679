"""Agent events and command outcomes as rows of ``events``, written in batches.

:meth:`EventLog.add` (and its two shorthands :meth:`EventLog.agent_event`,
:meth:`EventLog.command`) never blocks and never raises: it appends the row to a
queue in memory. One supervised task (:data:`TASK`) writes the queue with one
``INSERT … SELECT FROM unnest(…)`` statement per batch of up to *batch_rows*
rows: as soon as that many are waiting, else *interval* seconds after the first
one arrived. Not a transaction per message: 100 agents logging at once cost
Postgres a few statements a second.

Bounded: the queue holds at most *max_bytes* (counted as the rows' text); when
full, the oldest rows are dropped, counted (:attr:`EventLog.dropped`) and logged
at most once per :data:`DROP_LOG_INTERVAL`. While Postgres is away the insert
fails, the rows stay queued (within the bound) and the supervisor runs the task
again after its backoff; the hub never waits for any of it. A batch Postgres
refuses for its content (not for the connection) is dropped and logged, so one
bad row cannot stop the log. :meth:`EventLog.stop` writes what is queued (for at
most *flush_timeout* seconds) and ends the task; what it could not write stays
queued for :meth:`EventLog.start`, which may be called again after it (a host
that lost its lock and took it back).

Rows: an agent ``event`` becomes ``source="agent"``, its kind, ``level`` and
``message`` taken from its data's ``level`` (one of :data:`LEVELS`, else
``info``) and ``message`` (a string, else empty), and the data itself. A finished
command becomes ``source="hub"``, ``kind="command"``, level ``info`` (ok) or
``error``, data ``{name, ok, error, duration_ms}`` (arguments are not kept: they
may hold typed secrets). ``at`` is when the hub received the event, or when
the command finished (it started ``duration_ms`` earlier). Text is made
storable (NUL and lone surrogates replaced, NaN stored as null); a message is
cut at :data:`MAX_MESSAGE_CHARS`, data longer than :data:`MAX_DATA_CHARS` bytes
as JSON is replaced by a note of its size and keys. Rows of a device that no longer exists
are skipped.

A device is untrusted, and its agent's own rate limit is only a courtesy: each
device's agent events may cost at most :data:`AGENT_BYTES_PER_SECOND` of rows
(counted as the queue counts them), with bursts of :data:`AGENT_BURST_BYTES`.
Events over that are dropped and counted per device, and the device's next event
that fits is followed by one ``warning`` row saying how many were dropped. Without
it one device flooding events (5,000 of 20 KB a second, measured) grew ``events``
by 100 MB a second and pushed every other device's rows out of the queue.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import logging
import time
from collections import deque
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import asyncpg
import pydantic_core

from agent.protocol import Event
from backend.db import Database
from backend.db.database import LIBRARY_ERRORS, translate_error
from backend.db.exceptions import DatabaseUnavailable
from backend.hub.server import CommandOutcome
from backend.supervisor import Supervisor

__all__ = [
    "AGENT_BURST_BYTES",
    "AGENT_BYTES_PER_SECOND",
    "DROP_LOG_INTERVAL",
    "LEVELS",
    "MAX_DATA_CHARS",
    "MAX_MESSAGE_CHARS",
    "TASK",
    "EventLog",
]

log = logging.getLogger(__name__)

TASK = "event-log"
LEVELS = frozenset({"debug", "info", "warning", "error"})
MAX_MESSAGE_CHARS = 4096
MAX_DATA_CHARS = 16384
DROP_LOG_INTERVAL = 10.0
"""Seconds between two warnings about dropped rows (each says how many since the last)."""
_ROW_OVERHEAD = 200
"""Bytes counted per row on top of its text, for the queue's bound."""
AGENT_BYTES_PER_SECOND = 32 << 10
"""What one device's agent events may add to the queue per second, sustained (rows as counted there)."""
AGENT_BURST_BYTES = 1 << 20
"""What one device's agent events may add at once (a page's burst of console errors fits)."""


@dataclass(slots=True)
class _Budget:
    """One device's token bucket of bytes for its agent events."""

    tokens: float
    at: float
    dropped: int = 0


_INSERT = """
INSERT INTO events (device_id, at, source, level, kind, message, data)
SELECT u.device_id, u.at, u.source, u.level, u.kind, u.message, u.data::jsonb
FROM unnest($1::text[], $2::timestamptz[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
    AS u(device_id, at, source, level, kind, message, data)
"""
"""-- insert_events -- one batch of rows, in one statement."""
_Row = tuple[int, int, str | None, datetime, str, str, str, str, str | None]
"""One queued row: (seq, size, device_id, at, source, level, kind, message, data as JSON text).

A plain tuple: cheapest to make per event, and a batch becomes the statement's
columns with one ``zip``.
"""


class EventLog:
    """See the module docstring. Construct anywhere; :meth:`start` and :meth:`stop` on the loop."""

    def __init__(
        self,
        database: Database,
        supervisor: Supervisor,
        *,
        batch_rows: int = 1000,
        interval: float = 0.1,
        max_bytes: int = 32 << 20,
        flush_timeout: float = 5.0,
    ) -> None:
        self._database = database
        self._supervisor = supervisor
        self._batch_rows = batch_rows
        self._interval = interval
        self._max_bytes = max_bytes
        self._flush_timeout = flush_timeout
        self._rows: deque[_Row] = deque()
        self._bytes = 0
        self._seq = 0
        self._writing_upto = 0
        """Highest seq of the batch being inserted: dropping those rows loses nothing."""
        self._arrived = asyncio.Event()
        self._full = asyncio.Event()
        self._stopping = False
        self._done = asyncio.Event()
        self._running = False
        self._connection: asyncpg.Connection | None = None
        self._unreported_drops = 0
        self._drops_reported_at = -DROP_LOG_INTERVAL
        self.dropped = 0
        """Rows dropped so far (the queue was full, or Postgres refused them)."""
        self.written = 0
        """Rows inserted so far."""
        self._budgets: dict[str, _Budget] = {}
        self.over_limit = 0
        """Agent events dropped so far because their device was over its budget."""

    @property
    def queued(self) -> int:
        return len(self._rows)

    # --- producers (the hub's listener) --------------------------------------------------

    def add(
        self,
        device_id: str | None,
        source: str,
        kind: str,
        *,
        level: str = "info",
        message: str = "",
        data: dict[str, Any] | None = None,
    ) -> None:
        """Queue one row. Never blocks or raises; may drop the oldest rows (see the module docstring)."""
        self._queue(self._row(device_id, source, kind, level, message, data))

    def _row(
        self,
        device_id: str | None,
        source: str,
        kind: str,
        level: str,
        message: str,
        data: dict[str, Any] | None,
    ) -> _Row:
        self._seq += 1
        message = _storable(message[:MAX_MESSAGE_CHARS])
        text = _json(data)
        size = _ROW_OVERHEAD + len(message) + (len(text) if text is not None else 0)
        level = level if level in LEVELS else "info"
        return (self._seq, size, device_id, datetime.now(UTC), source[:32], level, kind[:32], message, text)

    def _queue(self, row: _Row) -> None:
        size = row[1]
        self._rows.append(row)
        self._bytes += size
        while self._bytes > self._max_bytes and len(self._rows) > 1:
            oldest = self._rows.popleft()
            self._bytes -= oldest[1]
            if oldest[0] > self._writing_upto:
                self._drop(1)
        self._arrived.set()
        if len(self._rows) >= self._batch_rows:
            self._full.set()

    def agent_event(self, device_id: str, event: Event) -> None:
        """Queue an agent's ``event`` message (source ``agent``), within the device's budget."""
        level = event.data.get("level")
        message = event.data.get("message")
        row = self._row(
            device_id,
            "agent",
            event.kind,
            level if isinstance(level, str) else "info",
            message if isinstance(message, str) else "",
            event.data,
        )
        now = time.monotonic()
        budget = self._budgets.get(device_id)
        if budget is None:
            budget = self._budgets[device_id] = _Budget(float(AGENT_BURST_BYTES), now)
        budget.tokens = min(
            float(AGENT_BURST_BYTES), budget.tokens + (now - budget.at) * AGENT_BYTES_PER_SECOND
        )
        budget.at = now
        if row[1] > budget.tokens:
            budget.dropped += 1
            self.over_limit += 1
            return
        budget.tokens -= row[1]
        self._queue(row)
        if budget.dropped:
            # After the row (rows are queued in the order they were made).
            note = (
                f"{budget.dropped} earlier agent events of this device dropped: over its limit of "
                f"{AGENT_BYTES_PER_SECOND // 1024} KiB/s (bursts of {AGENT_BURST_BYTES >> 20} MiB)"
            )
            budget.dropped = 0
            self._queue(self._row(device_id, "hub", "events-dropped", "warning", note, None))

    def command(self, device_id: str, outcome: CommandOutcome) -> None:
        """Queue a finished command (source ``hub``, kind ``command``)."""
        ms = outcome.duration * 1000
        if outcome.ok:
            message = f"{outcome.name}: ok in {ms:.0f} ms"
        else:
            message = f"{outcome.name}: failed after {ms:.0f} ms: {outcome.error}"
        self.add(
            device_id,
            "hub",
            "command",
            level="info" if outcome.ok else "error",
            message=message,
            data={
                "name": outcome.name,
                "ok": outcome.ok,
                "error": outcome.error,
                "duration_ms": round(ms, 3),
            },
        )

    # --- the writer ----------------------------------------------------------------------

    def start(self) -> None:
        """Start the writer task (under the supervisor). Idempotent while running."""
        if self._running:
            return
        self._running = True
        self._stopping = False
        self._done.clear()
        self._supervisor.spawn(TASK, self._run)

    async def stop(self, timeout: float | None = None) -> None:
        """Write what is queued, for at most *flush_timeout* seconds (or *timeout* if shorter),
        then end the task. Never raises (but CancelledError).

        Rows not written by then stay queued (within the bound, logged) and are written
        after the next :meth:`start`: a host that lost its lock stops at once and keeps them.
        """
        if not self._running:
            return
        self._stopping = True
        self._arrived.set()
        self._full.set()
        wait = self._flush_timeout if timeout is None else min(timeout, self._flush_timeout)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._done.wait(), wait)
        await self._supervisor.stop(TASK)
        self._running = False
        await self._close_connection()
        self._report_drops(force=True)
        if self._rows:
            log.warning(
                "%d agent event rows not written yet (Postgres unreachable or slow); kept for the next start",
                len(self._rows),
            )

    async def _run(self) -> None:
        """One supervised run: write batches until stopped; raises DatabaseUnavailable to be retried."""
        try:
            while True:
                self._report_drops()
                if not self._rows:
                    if self._stopping:
                        self._done.set()
                        return
                    self._arrived.clear()
                    await self._arrived.wait()
                    continue
                if len(self._rows) < self._batch_rows and not self._stopping:
                    self._full.clear()
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(self._full.wait(), self._interval)
                await self._write_batch()
        except BaseException:
            await self._close_connection()
            raise

    async def _write_batch(self) -> None:
        batch = list(itertools.islice(self._rows, self._batch_rows))
        last = batch[-1][0]
        self._writing_upto = last
        try:
            await self._insert(batch)
        except DatabaseUnavailable:
            raise  # the rows stay queued; the supervisor tries again after its backoff
        except Exception as exc:
            log.error("Postgres refused %d agent event rows; dropping them: %s", len(batch), exc)
            self._drop(len(batch))
        else:
            self.written += len(batch)
        finally:
            self._writing_upto = 0
        # Rows dropped from the queue meanwhile were the oldest: remove what is left of the batch.
        while self._rows and self._rows[0][0] <= last:
            self._bytes -= self._rows.popleft()[1]

    async def _insert(self, batch: list[_Row]) -> None:
        if self._connection is None or self._connection.is_closed():
            self._connection = await self._database.connect_raw(application_name="corral-events")
        columns = list(zip(*batch, strict=True))[2:]
        try:
            # No foreign key on device_id (migration 0004): a batch is never refused for a device.
            await self._connection.execute(_INSERT, *columns)
        except (*LIBRARY_ERRORS, TimeoutError) as exc:
            error = translate_error(exc)
            if isinstance(error, DatabaseUnavailable):
                await self._close_connection()
            raise error from exc

    async def _close_connection(self) -> None:
        connection, self._connection = self._connection, None
        if connection is not None and not connection.is_closed():
            try:
                await connection.close(timeout=2)
            except (*LIBRARY_ERRORS, TimeoutError):
                connection.terminate()

    def _drop(self, count: int) -> None:
        self.dropped += count
        self._unreported_drops += count

    def _report_drops(self, *, force: bool = False) -> None:
        now = time.monotonic()
        if self._unreported_drops and (force or now - self._drops_reported_at >= DROP_LOG_INTERVAL):
            log.warning(
                "dropped %d agent event rows (queue full while Postgres was unreachable or slow, "
                "or refused); %d dropped since start",
                self._unreported_drops,
                self.dropped,
            )
            self._unreported_drops = 0
            self._drops_reported_at = now


def _storable(text: str) -> str:
    """*text* as Postgres text can hold it: no NUL, no lone surrogates."""
    if "\x00" in text:
        text = text.replace("\x00", "\ufffd")
    if not text.isascii():
        text = text.encode("utf-8", "replace").decode("utf-8")
    return text


def _clean(value: Any) -> Any:
    if isinstance(value, str):
        return _storable(value)
    if isinstance(value, dict):
        return {_clean(key): _clean(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_clean(item) for item in value]
    return value


def _json(data: dict[str, Any] | None) -> str | None:
    """*data* as JSON text jsonb accepts, within MAX_DATA_CHARS.

    NaN and infinities become null; NUL (``\\u0000``, which jsonb refuses) and
    lone surrogates are replaced in every string. The fast path is
    pydantic-core's serializer (a fifth of ``json.dumps``'s cost per event).
    """
    if data is None:
        return None
    try:
        raw: bytes | None = pydantic_core.to_json(data, inf_nan_mode="null")
    except pydantic_core.PydanticSerializationError:
        raw = None  # a lone surrogate somewhere
    if raw is None or b"\\u0000" in raw:
        try:
            raw = pydantic_core.to_json(_clean(data), inf_nan_mode="null")
        except pydantic_core.PydanticSerializationError as exc:
            return _json({"unstorable": str(exc)[:200]})
    if len(raw) > MAX_DATA_CHARS:
        return _json({"truncated": True, "bytes": len(raw), "keys": [str(key)[:64] for key in data][:20]})
    return raw.decode()
