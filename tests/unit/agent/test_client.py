"""The agent client against a real websockets server on a unix socket.

The hub's side is a bare websockets server written here, so these tests see
exactly the frames the agent sends. The driver is a fake (the client's logic
is under test, not a browser): its commands wait until the test releases them.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ClassVar

import pytest
from websockets.asyncio.server import ServerConnection, unix_serve

from agent.client import AgentClient
from agent.commands import AgentCommand, commands_for
from agent.drivers.base import Driver
from agent.exceptions import CommandFailed
from agent.protocol import encode_credential

KEY = bytes(range(32))


class HeldDriver(Driver):
    """Every command waits until the test releases it by its ``text``/``url`` argument."""

    kind: ClassVar[str] = "browser"

    def __init__(self) -> None:
        self.started: list[str] = []
        self.cancelled: list[str] = []
        self.release: dict[str, asyncio.Future[dict[str, Any]]] = {}

    async def start(self) -> None:
        pass

    async def stop(self) -> None:
        pass

    def _key(self, command: AgentCommand) -> str:
        return str(getattr(command, "url", None) or getattr(command, "text", ""))

    async def run(self, command: AgentCommand) -> dict[str, Any]:
        key = self._key(command)
        future = self.release.setdefault(key, asyncio.get_running_loop().create_future())
        self.started.append(key)
        try:
            return await future
        except asyncio.CancelledError:
            self.cancelled.append(key)
            raise


@dataclass
class Hub:
    """A websockets server on a unix socket recording what each connection received."""

    path: Path
    frames: asyncio.Queue[dict[str, Any]] = field(default_factory=asyncio.Queue)
    connections: list[ServerConnection] = field(default_factory=list)

    async def handler(self, connection: ServerConnection) -> None:
        self.connections.append(connection)
        async for frame in connection:
            await self.frames.put(json.loads(frame))

    async def next(self, kind: str | None = None) -> dict[str, Any]:
        """The next frame (of type *kind*), within 5 s."""
        async with asyncio.timeout(5):
            while True:
                frame = await self.frames.get()
                if kind is None or frame["type"] == kind:
                    return frame

    async def send(self, message: dict[str, Any]) -> None:
        await self.connections[-1].send(json.dumps(message))


@pytest.fixture
def credential(short_tmp: Path) -> Path:
    path = short_tmp / "agent.cred"
    path.write_bytes(encode_credential("dev1", KEY, 60.0))
    return path


@pytest.fixture
async def hub(short_tmp: Path) -> AsyncIterator[Hub]:
    hub = Hub(short_tmp / "hub.sock")
    async with unix_serve(hub.handler, str(hub.path)):
        yield hub


@contextlib.asynccontextmanager
async def _running(client: AgentClient) -> AsyncIterator[None]:
    task = asyncio.create_task(client.run())
    try:
        yield
    finally:
        client.stop()
        await asyncio.wait_for(task, 5)


async def test_hello_announces_the_drivers_commands(hub: Hub, credential: Path) -> None:
    client = AgentClient(str(hub.path), "dev1", str(credential), driver=HeldDriver())
    async with _running(client):
        hello = await hub.next("hello")
        assert hello["capabilities"] == sorted(commands_for("browser"))
        assert "read_qr" in hello["capabilities"] and "ping" in hello["capabilities"]


async def test_commands_run_concurrently_and_answer_in_completion_order(hub: Hub, credential: Path) -> None:
    driver = HeldDriver()
    client = AgentClient(str(hub.path), "dev1", str(credential), driver=driver)
    async with _running(client):
        await hub.next("hello")
        for n in range(3):
            await hub.send(
                {"type": "command", "id": f"c{n}", "name": "input_text", "args": {"text": f"t{n}"}}
            )
        async with asyncio.timeout(5):
            while len(driver.started) < 3:
                await asyncio.sleep(0.01)
        assert sorted(driver.started) == ["t0", "t1", "t2"]
        assert client.in_flight == 3
        # ping is answered while the others still run
        await hub.send({"type": "command", "id": "p", "name": "ping", "args": {}})
        pong = await hub.next("result")
        assert pong["id"] == "p" and pong["ok"] and "pong" in pong["data"]
        for n in (2, 0, 1):
            driver.release[f"t{n}"].set_result({"n": n})
            result = await hub.next("result")
            assert (result["id"], result["ok"], result["data"]) == (f"c{n}", True, {"n": n})


async def test_bad_arguments_and_names_fail_with_one_line(hub: Hub, credential: Path) -> None:
    driver = HeldDriver()
    client = AgentClient(str(hub.path), "dev1", str(credential), driver=driver)
    cases = [
        ("tap", {}, "tap: target: Field required"),
        (
            "tap",
            {"target": {"text": "a", "css": "b"}},
            "tap: target: say exactly one of text, id, css, xpath or point (got text, css)",
        ),
        ("open_url", {"url": "x", "timeout": -1}, "open_url: timeout: Input should be greater than 0"),
        ("input_text", {"text": "x", "speed": 3}, "input_text: speed: Extra inputs are not permitted"),
        ("fly", {}, "unknown command 'fly'"),
    ]
    async with _running(client):
        await hub.next("hello")
        for n, (name, args, _error) in enumerate(cases):
            await hub.send({"type": "command", "id": f"c{n}", "name": name, "args": args})
        results = {}
        for _ in cases:
            result = await hub.next("result")
            results[result["id"]] = result
        for n, (_name, _args, error) in enumerate(cases):
            assert (results[f"c{n}"]["ok"], results[f"c{n}"]["error"]) == (False, error)
        assert driver.started == []


async def test_driver_errors_are_results_and_the_agent_keeps_serving(hub: Hub, credential: Path) -> None:
    driver = HeldDriver()
    client = AgentClient(str(hub.path), "dev1", str(credential), driver=driver)
    async with _running(client):
        await hub.next("hello")
        await hub.send({"type": "command", "id": "a", "name": "input_text", "args": {"text": "fails"}})
        await hub.send({"type": "command", "id": "b", "name": "input_text", "args": {"text": "bug"}})
        async with asyncio.timeout(5):
            while len(driver.started) < 2:
                await asyncio.sleep(0.01)
        driver.release["fails"].set_exception(
            CommandFailed('input_text: nothing with text "x" became visible')
        )
        driver.release["bug"].set_exception(RuntimeError("boom"))
        results = {r["id"]: r for r in [await hub.next("result"), await hub.next("result")]}
        assert results["a"]["error"] == 'input_text: nothing with text "x" became visible'
        assert results["b"]["error"] == "input_text: RuntimeError: boom"
        await hub.send({"type": "command", "id": "c", "name": "ping", "args": {}})
        assert (await hub.next("result"))["ok"] is True


async def test_without_a_driver_only_ping_is_supported(hub: Hub, credential: Path) -> None:
    client = AgentClient(str(hub.path), "dev1", str(credential))
    async with _running(client):
        assert (await hub.next("hello"))["capabilities"] == ["ping"]
        await hub.send({"type": "command", "id": "t", "name": "tap", "args": {"target": {"text": "x"}}})
        result = await hub.next("result")
        assert result["error"] == "command 'tap' is not supported by an agent without a driver"


async def test_too_many_commands_in_flight_are_refused_at_once(hub: Hub, credential: Path) -> None:
    driver = HeldDriver()
    client = AgentClient(str(hub.path), "dev1", str(credential), driver=driver, max_in_flight=2)
    async with _running(client):
        await hub.next("hello")
        for n in range(3):
            await hub.send(
                {"type": "command", "id": f"c{n}", "name": "input_text", "args": {"text": f"t{n}"}}
            )
        refused = await hub.next("result")
        assert refused["id"] == "c2" and refused["ok"] is False
        assert refused["error"] == "input_text: the agent already runs 2 commands; try again later"


async def test_events_wait_for_the_hub_bounded_and_go_in_order_after_hello(
    short_tmp: Path, credential: Path
) -> None:
    hub = Hub(short_tmp / "hub.sock")
    client = AgentClient(str(hub.path), "dev1", str(credential), event_capacity=5, max_backoff=0.2)
    for n in range(8):
        client.emit("log", {"level": "error", "message": f"e{n}"})
    async with _running(client), unix_serve(hub.handler, str(hub.path)):
        assert (await hub.next())["type"] == "hello"
        report = await hub.next()
        assert report == {
            "type": "event",
            "kind": "log",
            "data": {
                "level": "warning",
                "source": "agent",
                "message": "3 agent events were dropped while the hub was unreachable",
                "dropped": 3,
            },
        }
        messages = [(await hub.next())["data"]["message"] for _ in range(5)]
        assert messages == ["e3", "e4", "e5", "e6", "e7"]
        # Connected: an event goes out at once.
        client.emit("state", {"browser": "launched"})
        assert (await hub.next()) == {"type": "event", "kind": "state", "data": {"browser": "launched"}}
        assert len(client.events) == 0


async def test_emit_refuses_an_unknown_kind(credential: Path, short_tmp: Path) -> None:
    client = AgentClient(str(short_tmp / "none.sock"), "dev1", str(credential))
    with pytest.raises(ValueError, match="not an agent event"):
        client.emit("gossip", {})


async def test_a_dropped_connection_cancels_running_commands(hub: Hub, credential: Path) -> None:
    driver = HeldDriver()
    client = AgentClient(str(hub.path), "dev1", str(credential), driver=driver, max_backoff=0.2)
    async with _running(client):
        await hub.next("hello")
        await hub.send({"type": "command", "id": "c", "name": "input_text", "args": {"text": "held"}})
        async with asyncio.timeout(5):
            while not driver.started:
                await asyncio.sleep(0.01)
        await hub.connections[-1].close()
        await hub.next("hello")  # the client reconnected
        assert driver.cancelled == ["held"]
        assert client.in_flight == 0
