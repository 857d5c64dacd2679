"""The hub and a real agent client over a real unix socket."""

from __future__ import annotations

import asyncio
import json
import os
from pathlib import Path

import pytest
from websockets.asyncio.client import unix_connect
from websockets.exceptions import InvalidStatus

from agent.client import AgentClient
from backend.auth import tokens
from backend.config import Settings, rundir
from backend.hub import Hub, HubError, HubListener

SECRET = b"k" * 32


@pytest.fixture
def hub_settings(short_tmp: Path) -> Settings:
    return Settings(runtime_dir=short_tmp, data_dir=short_tmp / "data", device_uid=os.getuid())


class Recorder(HubListener):
    def __init__(self) -> None:
        self.hellos: list[str] = []
        self.disconnects: list[str] = []

    def on_hello(self, device_id: str, hello: object) -> None:
        self.hellos.append(device_id)

    def on_disconnect(self, device_id: str) -> None:
        self.disconnects.append(device_id)


async def _listening_hub(settings: Settings, device_id: str, recorder: Recorder) -> tuple[Hub, Path]:
    rundir.ensure_root(settings.runtime_dir)
    rundir.make_device_dir(settings.runtime_dir, device_id, settings.effective_device_uid)
    hub = Hub(settings, SECRET, recorder)
    return hub, await hub.listen(device_id)


async def test_agent_says_hello_answers_commands_and_reconnects(hub_settings: Settings) -> None:
    recorder = Recorder()
    hub, path = await _listening_hub(hub_settings, "dev1", recorder)
    assert path.stat().st_mode & 0o777 == 0o600
    client = AgentClient(str(path), "dev1", hub.agent_token("dev1"))
    task = asyncio.create_task(client.run())
    try:
        hello = await hub.wait_hello("dev1", timeout=5)
        assert hello.device_id == "dev1"
        result = await hub.command("dev1", "ping", {})
        assert result.ok and "pong" in result.data
        unknown = await hub.command("dev1", "fly", {})
        assert not unknown.ok and "unknown command" in (unknown.error or "")

        # The hub goes away and comes back: the agent reconnects by itself.
        await hub.close_device("dev1")
        await asyncio.sleep(0.2)
        assert not hub.is_connected("dev1")
        await hub.listen("dev1")
        await hub.wait_hello("dev1", timeout=10)
        assert client.connections >= 2
        assert recorder.hellos.count("dev1") >= 2
    finally:
        client.stop()
        await asyncio.wait_for(task, 5)
        await hub.stop()


@pytest.mark.parametrize(
    "token_for",
    [
        lambda: "",
        lambda: tokens.sign(SECRET, "agent", "other", 60),
        lambda: tokens.sign(SECRET, "agent", "dev1", -5),
        lambda: tokens.sign(SECRET, "view", "dev1", 60),
        lambda: tokens.sign(b"x" * 32, "agent", "dev1", 60),
    ],
    ids=["missing", "other-device", "expired", "wrong-purpose", "forged"],
)
async def test_bad_tokens_are_refused_before_the_handshake(hub_settings: Settings, token_for) -> None:
    hub, path = await _listening_hub(hub_settings, "dev1", Recorder())
    try:
        with pytest.raises(InvalidStatus) as info:
            async with unix_connect(
                str(path), uri="ws://hub/", additional_headers={"Authorization": f"Bearer {token_for()}"}
            ):
                pass
        assert info.value.response.status_code in (401, 403)
    finally:
        await hub.stop()


async def test_malformed_frames_get_errors_and_the_connection_stays(hub_settings: Settings) -> None:
    hub, path = await _listening_hub(hub_settings, "dev1", Recorder())
    headers = {"Authorization": f"Bearer {hub.agent_token('dev1')}"}
    try:
        async with unix_connect(str(path), uri="ws://hub/", additional_headers=headers) as ws:
            for frame in ["{not json", json.dumps({"type": "bogus"}), b"\x00binary"]:
                await ws.send(frame)
                reply = json.loads(await ws.recv())
                assert reply["type"] == "error"
            await ws.send(json.dumps({"type": "hello", "device_id": "dev1", "agent_version": "t"}))
            await hub.wait_hello("dev1", timeout=2)
            assert hub.invalid_frames("dev1") == 3
            assert (await ws.ping()) is not None
    finally:
        await hub.stop()


async def test_command_to_a_missing_agent_is_a_clear_error(hub_settings: Settings) -> None:
    hub, _ = await _listening_hub(hub_settings, "dev1", Recorder())
    try:
        with pytest.raises(HubError, match="not connected"):
            await hub.command("dev1", "ping", {})
    finally:
        await hub.stop()
