"""EventCoalescer: the first event at once, a summary for the rest of the window."""

from __future__ import annotations

import asyncio

from backend.hub.events import EventCoalescer


class Rows:
    def __init__(self) -> None:
        self.rows: list[tuple[str, str, str]] = []
        self.changed = asyncio.Event()

    async def write(self, device_id: str, kind: str, message: str) -> None:
        self.rows.append((device_id, kind, message))
        self.changed.set()

    async def wait_for(self, count: int) -> None:
        async with asyncio.timeout(5):
            while len(self.rows) < count:
                self.changed.clear()
                await self.changed.wait()


async def test_a_burst_is_two_rows() -> None:
    rows = Rows()
    events = EventCoalescer(rows.write, window=0.3)
    for _ in range(50):
        events.add("dev1", "agent", "agent disconnected")
    events.add("dev2", "agent", "agent disconnected")
    await rows.wait_for(3)
    await events.stop()
    assert sorted(rows.rows) == [
        ("dev1", "agent", "agent disconnected"),
        ("dev1", "agent", "agent disconnected 49 more times within 0.3s"),
        ("dev2", "agent", "agent disconnected"),
    ]


async def test_a_lone_event_is_one_row_and_the_next_window_starts_fresh() -> None:
    rows = Rows()
    events = EventCoalescer(rows.write, window=0.2)
    events.add("dev1", "refused", "agent refused: a")
    await rows.wait_for(1)
    async with asyncio.timeout(5):
        while events.open_windows:
            await asyncio.sleep(0.02)
    events.add("dev1", "refused", "agent refused: a")
    events.add("dev1", "refused", "agent refused: b")
    await rows.wait_for(3)
    await events.stop()
    assert rows.rows == [
        ("dev1", "refused", "agent refused: a"),
        ("dev1", "refused", "agent refused: a"),
        ("dev1", "refused", "agent refused: a once more within 0.2s (last: agent refused: b)"),
    ]


async def test_stop_cancels_pending_windows_and_a_failing_writer_is_survived() -> None:
    async def failing(device_id: str, kind: str, message: str) -> None:
        raise RuntimeError("database down")

    events = EventCoalescer(failing, window=60)
    events.add("dev1", "agent", "agent disconnected")
    events.add("dev1", "agent", "agent disconnected")
    async with asyncio.timeout(1):
        await events.stop()
    assert events.open_windows == 0
