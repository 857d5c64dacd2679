"""`corral flow run` as a user runs it: reports, exit codes, Ctrl-C, bad arguments."""

from __future__ import annotations

import asyncio
import json
import os
import pty
import re
import signal
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest

from backend.corral import Corral
from tests.integration.flows import flowfiles
from tests.integration.flows.conftest import Farm
from tests.serve import cli_env, corral

pytestmark = pytest.mark.docker


def test_json_and_junit_reports_of_a_passing_batch(farm: Farm, tmp_path: Path) -> None:
    path = flowfiles.write(tmp_path, "login.yaml", flowfiles.LOGIN)
    report = tmp_path / "report.xml"
    result = corral(
        farm.settings,
        "flow", "run", str(path), "--devices", ",".join(farm.devices),
        "--json", "--format", "junit", "-o", str(report), "--env", "USER=dora",
    )  # fmt: skip
    assert result.returncode == 0, result.stderr
    runs = json.loads(result.stdout)
    assert [(r["flow"], r["devices"], r["state"], r["error"]) for r in runs] == [
        ("login-check", {"device": "browser-1"}, "passed", None),
        ("login-check", {"device": "browser-2"}, "passed", None),
    ]
    assert [len(r["steps"]) for r in runs] == [8, 8]
    assert runs[0]["steps"][2]["label"] == 'inputText "${USER}"'
    assert runs[0]["batch"] == runs[1]["batch"]
    # The table and the summary went to stderr, the JSON alone to stdout.
    assert "2 runs: 2 passed" in result.stderr
    root = ET.parse(report).getroot()
    (suite,) = root.findall("testsuite")
    assert (suite.get("name"), suite.get("tests"), suite.get("failures"), suite.get("errors")) == (
        "login-check", "2", "0", "0",
    )  # fmt: skip
    assert [(case.get("classname"), case.get("name"), list(case)) for case in suite] == [
        ("login-check", "browser-1", []),
        ("login-check", "browser-2", []),
    ]


async def test_a_failing_device_is_a_junit_failure_and_exit_1(
    farm: Farm, client: Corral, tmp_path: Path
) -> None:
    first, second = farm.devices
    await client.command(first, "open_url", {"url": f"{flowfiles.PAGES}/login.html"})
    await client.command(second, "open_url", {"url": f"{flowfiles.PAGES}/click.html"})
    path = flowfiles.write(tmp_path, "assert.yaml", flowfiles.ASSERT_SIGN_IN)
    result = await asyncio.to_thread(
        corral, farm.settings, "flow", "run", str(path), "--all", "--format", "junit"
    )
    assert result.returncode == 1, result.stderr
    suite = ET.fromstring(result.stdout).find("testsuite")
    assert suite is not None
    assert (suite.get("tests"), suite.get("failures")) == ("2", "1")
    cases = {case.get("name"): case for case in suite}
    assert cases["browser-1"].find("failure") is None
    failure = cases["browser-2"].find("failure")
    assert failure is not None
    assert failure.get("message", "").startswith('assertVisible text "Sign in": ')
    assert "1 passed, 1 failed" in result.stderr


def test_plain_progress_lines_and_summary_when_not_on_a_terminal(farm: Farm, tmp_path: Path) -> None:
    path = flowfiles.write(tmp_path, "login.yaml", flowfiles.LOGIN)
    result = corral(farm.settings, "flow", "run", str(path), "--device", "browser-2")
    assert result.returncode == 0, result.stderr
    lines = result.stdout.splitlines()
    assert any(re.fullmatch(r"browser-2  login-check  0/8  (queued|running).*", line) for line in lines), (
        lines
    )
    assert re.fullmatch(r"browser-2  login-check  8/8  passed  \d+\.\ds  takeScreenshot.*", lines[-3]), lines
    assert re.fullmatch(r"PASS      login-check  on browser-2  8/8 steps  \d+\.\ds", lines[-2]), lines
    assert lines[-1] == "1 run: 1 passed"


async def test_ctrl_c_cancels_every_run_and_leaves_the_devices_usable(
    farm: Farm, client: Corral, tmp_path: Path
) -> None:
    path = flowfiles.write(tmp_path, "wait.yaml", flowfiles.WAIT_FOR_NOTHING)
    process = subprocess.Popen(  # noqa: ASYNC220 - a user's process, signalled below
        [sys.executable, "-m", "backend.cli", "flow", "run", str(path), "--all"],
        env=cli_env(farm.settings),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        async with asyncio.timeout(90):
            while True:
                runs = [r for r in await client.flow_runs(limit=2) if r.name == "wait-for-nothing"]
                if len(runs) == 2 and all(r.current_step.startswith("extendedWaitUntil") for r in runs):
                    break
                await asyncio.sleep(0.1)
        process.send_signal(signal.SIGINT)
        out, err = await asyncio.to_thread(process.communicate, timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert process.returncode == 130, err
    final = [await client.flow_run(r.id) for r in runs]
    assert [r.state for r in final] == ["cancelled", "cancelled"]
    assert "2 runs: 2 cancelled" in out
    for device in farm.devices:
        assert set(await client.command(device, "ping")) == {"pong"}


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (("--parallel", "0"), r"argument --parallel: expected 1 or more, got 0"),
        (("--env", "NOVALUE"), r"argument --env: expected KEY=VALUE, got 'NOVALUE'"),
        (("--device", "browser-1", "--all"), r"argument --all: not allowed with argument --device"),
        (("--kind", "phone"), r"argument --kind: invalid choice: 'phone'"),
        (("--format", "html"), r"argument --format: invalid choice: 'html'"),
    ],
)
def test_bad_arguments_exit_2_with_a_clear_line(
    farm: Farm, tmp_path: Path, args: tuple[str, ...], message: str
) -> None:
    path = flowfiles.write(tmp_path, "login.yaml", flowfiles.LOGIN)
    result = corral(farm.settings, "flow", "run", str(path), *args)
    assert result.returncode == 2
    assert re.search(message, result.stderr.strip().splitlines()[-1]), result.stderr


def test_flow_problems_exit_2_and_nothing_runs(farm: Farm, tmp_path: Path) -> None:
    bad = flowfiles.write(tmp_path, "bad.yaml", "appId: any\n---\n- tapOn: Log in\n- flyAway: now\n")
    good = flowfiles.write(tmp_path, "login.yaml", flowfiles.LOGIN)
    pair = Path(__file__).resolve().parents[3] / "examples" / "flows" / "pair.yaml"
    before = corral(farm.settings, "jobs", "--json").stdout
    result = corral(farm.settings, "flow", "run", str(good), str(bad), str(pair), "--all")
    assert result.returncode == 2
    lines = result.stderr.strip().splitlines()
    assert lines[0].startswith(f"corral: {bad}:4: flyAway:"), lines
    assert lines[-2] == f"corral: {pair}: flow declares roles; give --role viewer=DEVICE (and scanner)"
    assert re.fullmatch(r"corral: nothing was run \(\d+ problems\)", lines[-1])
    assert corral(farm.settings, "jobs", "--json").stdout == before
    stray = corral(farm.settings, "flow", "run", str(good), "--all", "--role", "viewer=browser-1")
    assert stray.returncode == 2
    assert stray.stderr.strip().splitlines()[-2:] == [
        "corral: --role viewer=…: no flow here declares the role 'viewer'",
        "corral: nothing was run (1 problem)",
    ]
    missing = corral(farm.settings, "flow", "run", str(good))
    assert missing.returncode == 2
    assert "corral: choose devices: --device NAME, --devices A,B, --all or --kind KIND" in missing.stderr
    # A device that does not exist is bad input too: exit 2 (1 means a run failed), nothing queued.
    for args in (("--device", "browser-99"), ("--role", "viewer=browser-99", "--role", "scanner=browser-1")):
        unknown = corral(farm.settings, "flow", "run", str(pair if "--role" in args else good), *args)
        assert unknown.returncode == 2, unknown.stderr
        assert unknown.stderr.strip().splitlines()[-2:] == [
            "corral: no device with id or name 'browser-99'",
            "corral: nothing was run (1 problem)",
        ]
    assert corral(farm.settings, "jobs", "--json").stdout == before


def test_on_a_terminal_a_live_table_then_the_summary(farm: Farm, tmp_path: Path) -> None:
    path = flowfiles.write(tmp_path, "login.yaml", flowfiles.LOGIN)
    leader, follower = pty.openpty()
    process = subprocess.Popen(
        [sys.executable, "-m", "backend.cli", "flow", "run", str(path), "--all"],
        env={**cli_env(farm.settings), "COLUMNS": "160", "TERM": "xterm"},
        stdin=subprocess.DEVNULL,
        stdout=follower,
        stderr=subprocess.PIPE,
    )
    os.close(follower)
    output = b""
    try:
        while True:
            try:
                chunk = os.read(leader, 65536)
            except OSError:  # EIO: the process closed the terminal
                break
            if not chunk:
                break
            output += chunk
    finally:
        os.close(leader)
        process.wait(timeout=120)
    assert process.returncode == 0, process.stderr.read() if process.stderr else ""
    if process.stderr:
        process.stderr.close()
    text = re.sub(r"\x1b\[[0-9;?]*[A-Za-z]", "", output.decode(errors="replace"))
    header = [line for line in text.splitlines() if line.split()[:3] == ["DEVICE", "FLOW", "STEP"]]
    assert header, text
    assert re.search(r"browser-1 +login-check +8/8 .*passed", text), text
    assert text.rstrip().endswith("2 runs: 2 passed"), text[-500:]


def test_parallel_1_runs_one_device_after_the_other(farm: Farm, tmp_path: Path) -> None:
    path = flowfiles.write(tmp_path, "login.yaml", flowfiles.LOGIN)
    result = corral(farm.settings, "flow", "run", str(path), "--all", "--parallel", "1", "--json")
    assert result.returncode == 0, result.stderr
    first, second = json.loads(result.stdout)
    assert [first["state"], second["state"]] == ["passed", "passed"]
    assert first["batch"] == second["batch"]
    assert second["started_at"] >= first["finished_at"]  # ISO times in UTC order as strings


def test_two_flows_on_one_device_run_one_after_the_other(farm: Farm, tmp_path: Path) -> None:
    first = flowfiles.write(tmp_path, "a.yaml", flowfiles.LOGIN)
    second = flowfiles.write(tmp_path, "b.yaml", flowfiles.LOGIN.replace("name: login-check", "name: again"))
    result = corral(farm.settings, "flow", "run", str(first), str(second), "--device", "browser-2", "--json")
    assert result.returncode == 0, result.stderr
    runs = json.loads(result.stdout)
    assert [(r["flow"], r["devices"], r["state"]) for r in runs] == [
        ("login-check", {"device": "browser-2"}, "passed"),
        ("again", {"device": "browser-2"}, "passed"),
    ]
    assert runs[1]["started_at"] >= runs[0]["finished_at"]
