"""The event log's queue: its bound, its drop count, and what a batch removes (no Postgres here)."""

from __future__ import annotations

import asyncio
from typing import Any

from backend.hub.eventlog import MAX_DATA_CHARS, EventLog
from backend.supervisor import Supervisor

ROW = 200 + len("m00")
"""Bytes the queue counts for a row with message ``mNN`` and no data."""


class HeldConnection:
    """Stands in for asyncpg: executes wait until the test opens the gate, and record their rows."""

    def __init__(self) -> None:
        self.gate = asyncio.Event()
        self.started = asyncio.Event()
        self.batches: list[list[str]] = []

    async def execute(self, _query: str, *columns: Any) -> None:
        self.started.set()
        await self.gate.wait()
        self.batches.append(list(columns[5]))  # the messages

    def is_closed(self) -> bool:
        return False

    async def close(self, timeout: float) -> None:
        return None


class Database:
    def __init__(self, connection: HeldConnection) -> None:
        self.connection = connection

    async def connect_raw(self, *, application_name: str | None = None) -> HeldConnection:
        return self.connection


def _log(connection: HeldConnection, rows: int, **kw: Any) -> EventLog:
    return EventLog(Database(connection), Supervisor(), max_bytes=rows * ROW, **kw)  # type: ignore[arg-type]


def test_a_full_queue_drops_its_oldest_rows_and_counts_them() -> None:
    log = _log(HeldConnection(), rows=3)
    for n in range(5):
        log.add("d", "agent", "log", message=f"m{n:02d}")
    assert (log.queued, log.dropped) == (3, 2)


def test_rows_of_the_batch_in_flight_are_not_counted_as_dropped() -> None:
    async def scenario() -> tuple[list[list[str]], int, int]:
        connection = HeldConnection()
        log = _log(connection, rows=4, batch_rows=2, interval=0.0)
        for n in range(4):
            log.add("d", "agent", "log", message=f"m{n:02d}")
        log.start()
        await connection.started.wait()  # m00, m01 are being written
        for n in range(4, 7):
            log.add("d", "agent", "log", message=f"m{n:02d}")  # evicts m00, m01 (in flight) and m02
        dropped_meanwhile = log.dropped
        connection.gate.set()
        await log.stop()  # writes the rest
        return connection.batches, dropped_meanwhile, log.dropped

    batches, dropped_meanwhile, dropped = asyncio.run(scenario())
    assert batches == [["m00", "m01"], ["m03", "m04"], ["m05", "m06"]]
    assert dropped_meanwhile == 1  # m02 only: m00 and m01 were on their way
    assert dropped == 1


def test_data_is_kept_as_compact_json_and_oversize_data_as_a_note() -> None:
    connection = HeldConnection()
    log = EventLog(Database(connection), Supervisor())  # type: ignore[arg-type]
    log.add("d", "agent", "log", data={"a": [1, 2.5, None, True], "b": "é"})
    log.add("d", "agent", "log", data={"png": "A" * MAX_DATA_CHARS})
    log.add("d", "agent", "log", data={"inf": float("inf"), "nul": "a\x00b"})
    rows = [row[8] for row in log._rows]
    assert rows == [
        '{"a":[1,2.5,null,true],"b":"é"}',
        '{"truncated":true,"bytes":16394,"keys":["png"]}',
        '{"inf":null,"nul":"a\ufffdb"}',
    ]


def test_a_device_flooding_events_is_held_to_its_budget_and_others_are_not(monkeypatch: Any) -> None:
    from agent.protocol import Event
    from backend.hub import eventlog

    clock = [1000.0]
    monkeypatch.setattr(eventlog.time, "monotonic", lambda: clock[0])
    log = EventLog(Database(HeldConnection()), Supervisor(), max_bytes=1 << 30)  # type: ignore[arg-type]
    # Counted 200 + 4,000 (message) + 8,040 (data as JSON) = 12,240 bytes a row.
    flood = Event(kind="log", data={"level": "error", "message": "M" * 4000, "blob": "B" * 4000})
    for _ in range(1000):
        log.agent_event("evil", flood)
    # The 1 MiB burst holds 85 rows (1,048,576 // 12,240), leaving 8,176 bytes.
    assert (log.queued, log.over_limit, log.dropped) == (85, 915, 0)
    log.agent_event("good", Event(kind="log", data={"message": "fine"}))
    assert (log.queued, log.over_limit) == (86, 915)  # another device is not held back
    clock[0] += 1.0  # 8,176 + 32,768 bytes: three more rows of the flood
    for _ in range(10):
        log.agent_event("evil", flood)
    assert (log.queued, log.over_limit) == (90, 922)
    rows = list(log._rows)
    assert [(row[2], row[4], row[6]) for row in rows[85:]] == [
        ("good", "agent", "log"),
        ("evil", "agent", "log"),
        ("evil", "hub", "events-dropped"),
        ("evil", "agent", "log"),
        ("evil", "agent", "log"),
    ]
    assert rows[87][5] == "warning"
    assert rows[87][7] == (
        "915 earlier agent events of this device dropped: over its limit of 32 KiB/s (bursts of 1 MiB)"
    )
    assert [row[0] for row in rows] == sorted(row[0] for row in rows)  # queued in the order made
