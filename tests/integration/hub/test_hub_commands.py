"""Command/result correlation over the real unix sockets, with scripted agents.

Every wait is on a condition: the agent's :meth:`FakeAgent.sync` barrier proves the
hub handled the frames sent before it.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator
from pathlib import Path

import pytest

from agent.protocol import Result
from backend.config import Settings
from backend.hub import AgentDisconnected, CommandOutcome, CommandTimeout, Hub, HubError, HubListener
from tests.integration.hub.fake_agent import FakeAgent, hub_settings_for, serve, stalled_agent, token_for


class Outcomes(HubListener):
    def __init__(self) -> None:
        self.outcomes: list[tuple[str, CommandOutcome]] = []

    def on_command(self, device_id: str, outcome: CommandOutcome) -> None:
        self.outcomes.append((device_id, outcome))


@pytest.fixture
def settings(short_tmp: Path) -> Settings:
    return hub_settings_for(short_tmp)


@pytest.fixture
def outcomes() -> Outcomes:
    return Outcomes()


@pytest.fixture
async def hub(settings: Settings, outcomes: Outcomes) -> AsyncIterator[Hub]:
    hub = await serve(settings, ["dev1", "dev2"], outcomes)
    yield hub
    await hub.stop()


async def test_several_commands_in_flight_each_get_their_own_result(settings: Settings, hub: Hub) -> None:
    async with FakeAgent(settings, hub, "dev1") as agent:
        calls = [asyncio.create_task(hub.command("dev1", "ping", {"n": n})) for n in range(3)]
        received = [await agent.next_command() for _ in range(3)]
        assert sorted(command.args["n"] for command in received) == [0, 1, 2]
        assert len({command.id for command in received}) == 3
        assert hub.pending_commands("dev1") == 3
        # Answered in reverse order: each caller still gets the answer to its own command.
        for command in reversed(received):
            await agent.answer(command.id, data={"echo": command.args["n"]})
        results = await asyncio.gather(*calls)
        assert [result.data for result in results] == [{"echo": 0}, {"echo": 1}, {"echo": 2}]
        assert hub.pending_commands("dev1") == 0
        assert hub.stray_results("dev1") == 0


async def test_a_result_for_another_devices_command_completes_nothing(
    settings: Settings, hub: Hub, outcomes: Outcomes
) -> None:
    async with FakeAgent(settings, hub, "dev1") as one, FakeAgent(settings, hub, "dev2") as two:
        call = asyncio.create_task(hub.command("dev2", "tap", {}))
        command = await two.next_command()
        # dev1's agent answers dev2's command, with dev2's id, twice, then an unknown id.
        await one.answer(command.id, data="forged")
        await one.answer(command.id, ok=False, error="forged")
        await one.answer("c1", data="guessed")
        assert await one.sync() == []  # dropped silently: no error reply
        assert hub.stray_results("dev1") == 3
        assert not call.done()
        assert hub.pending_commands("dev2") == 1
        await two.answer(command.id, data="genuine")
        result = await call
        assert result == Result(id=command.id, ok=True, data="genuine")
        assert hub.stray_results("dev2") == 0
    assert [(device, outcome.name, outcome.ok) for device, outcome in outcomes.outcomes] == [
        ("dev2", "tap", True)
    ]


async def test_a_timeout_names_the_command_and_a_late_result_is_dropped(
    settings: Settings, hub: Hub, outcomes: Outcomes
) -> None:
    async with FakeAgent(settings, hub, "dev1") as agent:
        call = asyncio.create_task(hub.command("dev1", "wait_until", {}, timeout=0.2))
        command = await agent.next_command()
        with pytest.raises(CommandTimeout) as caught:
            await call
        assert str(caught.value) == "device dev1 did not answer 'wait_until' within 0.2s"
        assert hub.pending_commands("dev1") == 0
        await agent.answer(command.id, data="late")
        assert await agent.sync() == []
        assert hub.stray_results("dev1") == 1
        # The connection is still good.
        again = asyncio.create_task(hub.command("dev1", "ping", {}))
        await agent.answer((await agent.next_command()).id, data="pong")
        assert (await again).data == "pong"
    (_, timed_out), (_, answered) = outcomes.outcomes
    assert (timed_out.name, timed_out.ok, timed_out.error) == (
        "wait_until",
        False,
        "device dev1 did not answer 'wait_until' within 0.2s",
    )
    assert timed_out.duration >= 0.2
    assert (answered.name, answered.ok, answered.error) == ("ping", True, None)


async def test_a_dropped_connection_fails_every_pending_command_at_once(settings: Settings, hub: Hub) -> None:
    agent = FakeAgent(settings, hub, "dev1")
    await agent.connect()
    calls = [asyncio.create_task(hub.command("dev1", name, {}, timeout=60)) for name in ("tap", "screenshot")]
    for _ in calls:
        await agent.next_command()
    started = time.monotonic()
    await agent.close()
    errors = await asyncio.wait_for(asyncio.gather(*calls, return_exceptions=True), 5)
    assert [str(error) for error in errors] == [
        "agent disconnected: dev1's agent dropped its connection before answering 'tap'",
        "agent disconnected: dev1's agent dropped its connection before answering 'screenshot'",
    ]
    assert all(isinstance(error, AgentDisconnected) for error in errors)
    print(f"pending commands failed {time.monotonic() - started:.3f}s after the agent closed")
    assert not hub.is_connected("dev1")


async def test_a_replaced_connection_fails_its_commands_and_its_ids_die_with_it(
    settings: Settings, hub: Hub
) -> None:
    async with FakeAgent(settings, hub, "dev1") as old:
        call = asyncio.create_task(hub.command("dev1", "tap", {}, timeout=60))
        command = await old.next_command()
        async with FakeAgent(settings, hub, "dev1") as new:
            with pytest.raises(AgentDisconnected) as caught:
                await asyncio.wait_for(call, 5)
            assert str(caught.value) == (
                "agent disconnected: dev1's agent was replaced by a new connection before answering 'tap'"
            )
            assert hub.replacements["dev1"] == 1
            # The new connection cannot complete a command of the old one.
            await new.answer(command.id, data="late")
            assert await new.sync() == []
            assert hub.stray_results("dev1") == 1
            # Commands now go to the new connection.
            again = asyncio.create_task(hub.command("dev1", "ping", {}))
            await new.answer((await new.next_command()).id, data="from new")
            assert (await again).data == "from new"
            assert old.commands.empty()


async def test_no_agent_fails_at_once_with_a_clear_error(hub: Hub, outcomes: Outcomes) -> None:
    started = time.monotonic()
    with pytest.raises(AgentDisconnected) as caught:
        await hub.command("dev1", "tap", {}, timeout=60)
    assert time.monotonic() - started < 1.0
    assert str(caught.value) == (
        "agent disconnected: the agent of device dev1 is not connected (not started yet, or "
        "reconnecting); 'tap' was not sent"
    )
    ((device, outcome),) = outcomes.outcomes
    assert (device, outcome.name, outcome.ok, outcome.error) == ("dev1", "tap", False, str(caught.value))


async def test_a_bad_command_is_a_hub_error_and_nothing_is_sent(settings: Settings, hub: Hub) -> None:
    async with FakeAgent(settings, hub, "dev1") as agent:
        with pytest.raises(
            HubError, match=r"cannot send 'input_text' to device dev1: command 'input_text' is"
        ):
            await hub.command("dev1", "input_text", {"text": "x" * (1 << 20)})
        with pytest.raises(HubError, match="cannot send 'xxxxx"):
            await hub.command("dev1", "x" * 65, {})
        with pytest.raises(HubError, match=r"cannot send 'tap' to device dev1: .*object"):
            await hub.command("dev1", "tap", {"target": object()})
        assert hub.pending_commands("dev1") == 0
        await agent.sync()
        assert agent.commands.empty()


async def test_keepalive_drops_a_silent_agent_and_fails_its_commands(settings: Settings) -> None:
    hub = await serve(settings, ["dev1"], ping_interval=0.2, ping_timeout=0.2)
    stalled = await asyncio.to_thread(stalled_agent, hub.socket_path("dev1"), token_for(settings, "dev1"))
    try:
        await hub.wait_hello("dev1", timeout=5)
        started = time.monotonic()
        with pytest.raises(
            AgentDisconnected, match=r"^agent disconnected: dev1's agent dropped its connection"
        ):
            await hub.command("dev1", "tap", {}, timeout=30)
        elapsed = time.monotonic() - started
        print(f"silent agent dropped after {elapsed:.2f}s (ping every 0.2s, 0.2s timeout)")
        assert elapsed < 5.0
        assert not hub.is_connected("dev1")
    finally:
        stalled.close()
        await hub.stop()


async def test_stopping_the_hub_fails_pending_commands(settings: Settings, hub: Hub) -> None:
    agent = FakeAgent(settings, hub, "dev1")
    await agent.connect()
    call = asyncio.create_task(hub.command("dev1", "tap", {}, timeout=60))
    await agent.next_command()
    await hub.close_device("dev1")
    with pytest.raises(AgentDisconnected, match="was closed by the hub"):
        await asyncio.wait_for(call, 5)
    await agent.close()
