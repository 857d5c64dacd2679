"""Frame limits over the real sockets: screenshots fit in results, nothing else grows."""

from __future__ import annotations

import asyncio
import base64
import os
from collections.abc import AsyncIterator
from pathlib import Path

import pytest
from websockets.asyncio.client import unix_connect
from websockets.exceptions import ConnectionClosed

from agent.protocol import MAX_RESULT_BYTES, Event, Result, encode
from backend.config import Settings
from backend.hub import AgentDisconnected, Hub
from tests.integration.hub.fake_agent import FakeAgent, hub_settings_for, serve, token_for


@pytest.fixture
def settings(short_tmp: Path) -> Settings:
    return hub_settings_for(short_tmp)


@pytest.fixture
async def hub(settings: Settings) -> AsyncIterator[Hub]:
    hub = await serve(settings, ["dev1"])
    yield hub
    await hub.stop()


async def test_a_6_mb_screenshot_result_round_trips(settings: Settings, hub: Hub) -> None:
    png = base64.b64encode(os.urandom(6_000_000)).decode()  # 8,000,000 base64 characters, random as a PNG
    async with FakeAgent(settings, hub, "dev1") as agent:
        call = asyncio.create_task(hub.command("dev1", "screenshot", {}))
        command = await agent.next_command()
        frame = encode(Result(id=command.id, ok=True, data={"png": png}))
        assert len(frame) == 8_000_088 < MAX_RESULT_BYTES
        await agent.send(frame)
        result = await call
        assert result.data == {"png": png}


async def test_an_event_over_1_mib_is_refused_and_the_connection_stays(settings: Settings, hub: Hub) -> None:
    async with FakeAgent(settings, hub, "dev1") as agent:
        await agent.send(encode(Event(kind="log", data={"line": "x" * (2 << 20)})))
        (reply,) = await agent.sync()
        assert (reply["code"], reply["message"]) == (
            "frame_too_large",
            "a event frame exceeds 1048576 bytes (only results may)",
        )
        call = asyncio.create_task(hub.command("dev1", "ping", {}))
        await agent.answer((await agent.next_command()).id, data="pong")
        assert (await call).data == "pong"


async def test_a_result_over_8_mib_closes_the_connection_and_fails_its_commands(
    settings: Settings, hub: Hub
) -> None:
    async with FakeAgent(settings, hub, "dev1") as agent:
        call = asyncio.create_task(hub.command("dev1", "screenshot", {}, timeout=60))
        command = await agent.next_command()
        await agent.send(encode(Result(id=command.id, ok=True, data={"png": "A" * MAX_RESULT_BYTES})))
        with pytest.raises(AgentDisconnected, match="dropped its connection before answering 'screenshot'"):
            await asyncio.wait_for(call, 10)
        assert agent.connection is not None
        await asyncio.wait_for(agent.connection.wait_closed(), 10)
        assert agent.connection.close_code == 1009  # message too big


async def test_before_hello_frames_stay_under_1_mib(settings: Settings, hub: Hub) -> None:
    path = settings.device_paths("dev1").hub_socket
    headers = {"Authorization": f"Bearer {token_for(settings, 'dev1')}"}
    ws = await unix_connect(str(path), uri="ws://hub/", additional_headers=headers)
    await ws.send(encode(Result(id="x", ok=True, data="A" * (2 << 20))))
    with pytest.raises(ConnectionClosed):
        await asyncio.wait_for(ws.recv(), 10)
    assert ws.close_code == 1009  # message too big
    assert hub.invalid_frames("dev1") == 0
