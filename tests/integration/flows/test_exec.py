"""Single commands (`corral exec`, ``Corral.command``) from a client while another process hosts."""

from __future__ import annotations

import json
import re
import struct
from pathlib import Path

import pytest

from backend.corral import Corral
from backend.flows.runs_errors import CommandFailed, InvalidRun
from tests.integration.flows.conftest import Farm
from tests.serve import corral

pytestmark = pytest.mark.docker


async def test_ping_from_a_client_runs_as_a_one_step_run(farm: Farm, client: Corral) -> None:
    assert not client.is_host
    data = await client.command(farm.devices[0], "ping")
    assert set(data) == {"pong"}
    (run,) = [r for r in await client.flow_runs() if r.name == "ping"][:1]
    assert (run.state, run.error, run.steps_total, run.steps_done) == ("passed", None, 1, 1)
    device = await client.device(farm.devices[0])
    assert run.devices == {"device": device.id}
    (step,) = await client.flow_steps(run.id)
    assert (step.seq, step.role, step.command, step.state, step.error) == (
        1,
        "device",
        "ping",
        "passed",
        None,
    )
    assert step.data == data
    assert step.duration is not None and step.duration >= 0


async def test_bad_requests_fail_before_anything_is_written(farm: Farm, client: Corral) -> None:
    before = await client.flow_runs()
    with pytest.raises(InvalidRun, match=r"unknown command 'pong'; known commands: .*open_url.*ping"):
        await client.command(farm.devices[0], "pong")
    with pytest.raises(InvalidRun, match=r"^open_url: url: Field required$"):
        await client.command(farm.devices[0], "open_url")
    with pytest.raises(InvalidRun, match=r"^ping: timeout: Input should be greater than 0$"):
        await client.command(farm.devices[0], "ping", timeout=-1)
    with pytest.raises(InvalidRun, match=r"no device with id or name 'browser-99'"):
        await client.command("browser-99", "ping")
    assert await client.flow_runs() == before


async def test_a_command_the_agent_fails_raises_with_its_reason(farm: Farm, client: Corral) -> None:
    # Until the agent has a browser driver it answers only ping; either way the error is the agent's.
    with pytest.raises(CommandFailed, match=rf"^read_qr on {farm.devices[0]}: ") as caught:
        await client.command(farm.devices[0], "read_qr", timeout=1)
    (run,) = (await client.flow_runs())[:1]
    assert run.state == "failed"
    assert str(caught.value).endswith(str(run.error))


def test_corral_exec_prints_the_result(farm: Farm) -> None:
    result = corral(farm.settings, "exec", farm.devices[1], "ping", "--json")
    assert result.returncode == 0, result.stderr
    assert set(json.loads(result.stdout)) == {"pong"}
    plain = corral(farm.settings, "exec", farm.devices[1], "ping")
    assert plain.returncode == 0, plain.stderr
    assert float(plain.stdout.strip()) > 0  # the agent's clock, alone on its line


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("pong",), r"^corral: unknown command 'pong'; known commands: .*eval_script.*read_qr"),
        (("open_url",), r"^corral: open_url: url: Field required$"),
        (("tap", "a", "b"), r"^corral: tap: one plain argument sets target; got 2 \('a b'\)"),
        (("ping", "extra"), r"^corral: ping takes no arguments, got 'extra'$"),
        (("open_url", "x", "colour=red"), r"^corral: open_url: colour: Extra inputs are not permitted$"),
        (("ping", "--timeout", "0"), r"^corral: --timeout: expected a positive number of seconds, got 0$"),
    ],
)
def test_corral_exec_refuses_bad_arguments(farm: Farm, args: tuple[str, ...], message: str) -> None:
    result = corral(farm.settings, "exec", farm.devices[0], *args)
    assert result.returncode == 2, result
    assert re.match(message, result.stderr.strip()), result.stderr
    assert result.stdout == ""


def test_corral_exec_on_an_unknown_device_is_bad_input(farm: Farm) -> None:
    # Exit 2 like any bad argument: a script can tell a typo from a command that failed (1).
    result = corral(farm.settings, "exec", "browser-99", "ping")
    # The last line: under PYTHONASYNCIODEBUG the loop may warn of slow callbacks before it.
    last = result.stderr.strip().splitlines()[-1]
    assert (result.returncode, last) == (2, "corral: no device with id or name 'browser-99'")


def test_corral_exec_open_url_then_screenshot_to_a_file(farm: Farm, tmp_path: Path) -> None:
    url = "file:///opt/corral/start/test/login.html"
    opened = corral(farm.settings, "exec", farm.devices[1], "open_url", url)
    assert (opened.returncode, opened.stdout) == (0, f"{url}\n"), opened.stderr
    shot = tmp_path / "shot.png"
    result = corral(farm.settings, "exec", farm.devices[1], "screenshot", "-o", str(shot), "--json")
    assert result.returncode == 0, result.stderr
    data = json.loads(result.stdout)
    assert data["written"] == str(shot)
    assert "png" not in data
    assert shot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    width, height = struct.unpack(">II", shot.read_bytes()[16:24])
    assert (width, height) == (data["width"], data["height"])
