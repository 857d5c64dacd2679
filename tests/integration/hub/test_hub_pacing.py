"""A device flooding frames is read at the hub's pace; nothing is lost and other devices are served."""

from __future__ import annotations

import asyncio
import time
from collections import Counter
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.protocol import Event, encode
from backend.config import Settings
from backend.hub import Hub, HubListener
from tests.integration.hub.fake_agent import FakeAgent, hub_settings_for, serve


class Events(HubListener):
    def __init__(self) -> None:
        self.count: Counter[str] = Counter()

    def on_event(self, device_id: str, event: Event) -> None:
        self.count[device_id] += 1


@pytest.fixture
def settings(short_tmp: Path) -> Settings:
    return hub_settings_for(short_tmp)


@pytest.fixture
def events() -> Events:
    return Events()


@pytest.fixture
async def hub(settings: Settings, events: Events) -> AsyncIterator[Hub]:
    hub = await serve(settings, ["dev1", "dev2"], events)
    yield hub
    await hub.stop()


async def test_a_flood_of_frames_is_paced_to_1000_a_second_after_its_burst(
    settings: Settings, hub: Hub, events: Events
) -> None:
    frame = encode(Event(kind="log", data={"message": "x"}))
    async with FakeAgent(settings, hub, "dev1") as flooder, FakeAgent(settings, hub, "dev2") as other:
        started = time.monotonic()

        async def flood() -> None:
            for _ in range(5000):
                await flooder.send(frame)

        flooding = asyncio.create_task(flood())
        # The other device is answered meanwhile.
        call = asyncio.create_task(hub.command("dev2", "ping", {}, timeout=5))
        command = await other.next_command()
        await other.answer(command.id, data={"pong": 1})
        assert (await call).ok
        await flooding
        assert await flooder.sync(timeout=30) == []
        elapsed = time.monotonic() - started
    # 2,000 frames of burst, then 3,001 (the rest and the barrier) at 1,000 a second.
    assert elapsed >= 2.9
    assert events.count["dev1"] == 5000  # paced, not dropped: the device waited
