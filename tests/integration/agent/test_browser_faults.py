"""A browser device's agent under faults: Chromium or the agent killed, Chromium missing."""

from __future__ import annotations

import asyncio
import json
import time

import pytest
from docker import DockerClient

from backend.corral import Corral
from tests.integration.agent.conftest import BUILD_AND_BOOT, TEST_PAGES, Device

pytestmark = pytest.mark.docker

# Prints {pid: argv} of the container's processes (no procps in the image).
_PROCESSES = """
import json, os
found = {}
for pid in filter(str.isdigit, os.listdir("/proc")):
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            argv = [a.decode(errors="replace") for a in f.read().split(b"\\0") if a]
    except OSError:
        continue
    if argv:
        found[pid] = argv
print(json.dumps(found))
"""


async def _processes(device: Device) -> dict[int, list[str]]:
    output = await asyncio.to_thread(device.exec, "python3", "-I", "-c", _PROCESSES)
    return {int(pid): argv for pid, argv in json.loads(output).items()}


def _browsers(processes: dict[int, list[str]]) -> list[int]:
    """Chromium's browser processes (its helpers carry --type=)."""
    return [
        pid
        for pid, argv in processes.items()
        if argv[0].endswith("/chromium") and not any(a.startswith("--type=") for a in argv)
    ]


def _agents(processes: dict[int, list[str]]) -> list[int]:
    return [pid for pid, argv in processes.items() if argv[1:3] == ["-m", "agent"]]


async def _kill(device: Device, pid: int) -> None:
    await asyncio.to_thread(device.exec, "bash", "-c", f"kill -KILL {pid}")


async def test_nothing_listens_on_tcp_and_chromium_talks_over_a_pipe(device: Device) -> None:
    await device.command("open_url", url=f"{TEST_PAGES}/login.html")
    tcp = await asyncio.to_thread(device.exec, "cat", "/proc/net/tcp", "/proc/net/tcp6")
    sockets = [line.split() for line in tcp.splitlines() if not line.lstrip().startswith("sl")]
    assert sockets == []  # no listener (state 0A) and no connection either
    (browser,) = _browsers(await _processes(device))
    argv = (await _processes(device))[browser]
    assert "--remote-debugging-pipe" in argv
    assert not [a for a in argv if a.startswith("--remote-debugging-port")]
    assert "--kiosk" in argv and "--window-size=1025,769" in argv


async def test_killed_chromium_fails_the_running_command_and_is_relaunched(device: Device) -> None:
    await device.command("open_url", url=f"{TEST_PAGES}/login.html")
    (browser,) = _browsers(await _processes(device))
    waiting = asyncio.create_task(device.error("assert", target={"text": "Never there"}, timeout=30))
    await asyncio.sleep(0)  # let the command go out before the kill
    await device.command("ping")  # the agent has the assert in hand by now (one connection, in order)
    started = time.monotonic()
    await _kill(device, browser)
    error = await waiting
    assert error == "assert: the browser closed during the command"
    assert time.monotonic() - started < 10
    # The next command waits for the relaunch and works.
    await device.command("open_url", url=f"{TEST_PAGES}/target.html", timeout=30)
    await device.command("assert", target={"text": "Paired"})
    (relaunched,) = _browsers(await _processes(device))
    assert relaunched != browser


async def test_killed_agent_is_back_within_5s_and_the_next_command_works(device: Device) -> None:
    await device.command("open_url", url=f"{TEST_PAGES}/login.html")
    processes = await _processes(device)
    (agent,) = _agents(processes)
    (browser,) = _browsers(processes)
    hub = device.corral.hub
    started = time.monotonic()
    await _kill(device, agent)
    async with asyncio.timeout(5):
        while hub.is_connected(device.id):
            await asyncio.sleep(0.02)
    await hub.wait_hello(device.id, timeout=max(0.0, 5.0 - (time.monotonic() - started)))
    back = time.monotonic() - started
    assert back < 5.0
    await device.command("open_url", url=f"{TEST_PAGES}/target.html", timeout=30)
    await device.command("assert", target={"text": "Paired"})
    # The old agent's Chromium went with it: one browser, the new agent's.
    processes = await _processes(device)
    (new_agent,) = _agents(processes)
    (new_browser,) = _browsers(processes)
    assert new_agent != agent and new_browser != browser


async def test_without_a_browser_the_agent_says_hello_and_answers_ping(
    corral: Corral, docker_client: DockerClient
) -> None:
    (created,) = await corral.provision("browser", 1, env={"CORRAL_CHROMIUM": "/nonexistent/chromium"})
    (final,) = await corral.wait_for([created.id], {"ready"}, timeout=BUILD_AND_BOOT)
    assert final.state == "ready", final.reason
    (container,) = docker_client.containers.list(filters={"label": f"corral.device={final.id}"})
    device = Device(corral, final.id, container)
    assert "pong" in await device.command("ping")
    error = await device.error("open_url", url=f"{TEST_PAGES}/login.html", timeout=2)
    assert error.startswith("open_url: the browser was not running within 2s: the browser could not start (")
    assert "/nonexistent/chromium" in error
