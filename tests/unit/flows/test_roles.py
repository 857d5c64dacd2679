"""Roles: lanes run concurrently, a value of another role is waited for, a failure cancels the rest.

Deterministic: the fake devices hold calls on events; ``settle`` only lets ready
tasks run (no timed sleeps), which is enough because the fakes do no I/O.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from backend.flows import FlowOutcome, execute, from_sources, load, steps_of
from tests.unit.flows.fakes import Devices, Steps

ROOT = Path(__file__).resolve().parents[3]
ROLES = "roles:\n  viewer: browser\n  scanner: browser\n---\n"


async def settle() -> None:
    """Let every task that can run, run (the fakes never wait on anything else)."""
    for _ in range(50):
        await asyncio.sleep(0)


def start(text: str, devices: Devices, steps: Steps) -> asyncio.Task[FlowOutcome]:
    flow = from_sources({"main.yaml": text}, "main.yaml")
    return asyncio.create_task(execute(flow, devices, steps))


async def test_pair_example_reads_the_viewers_screen_while_the_viewer_is_busy() -> None:
    devices = Devices(results={"read_qr": {"text": "file:///opt/corral/start/test/target.html"}})
    opened, release_viewer = devices.gate("viewer", "open_url")
    steps = Steps()
    flow = load(ROOT / "examples" / "flows" / "pair.yaml")
    assert (flow.steps, dict(flow.roles), steps_of(flow, "viewer"), steps_of(flow, "scanner")) == (
        5,
        {"viewer": "browser", "scanner": "browser"},
        1,
        4,
    )
    task = asyncio.create_task(execute(flow, devices, steps))
    await opened.wait()
    await settle()
    # The scanner's lane ran while the viewer's first step is still in flight.
    assert [(call.role, call.command.name) for call in devices.calls][:2] == [
        ("viewer", "open_url"),
        ("viewer", "read_qr"),  # readQr from: viewer reads the viewer's screen
    ]
    release_viewer.set()
    assert await task == FlowOutcome(passed=True)
    assert [(call.role, call.command.name) for call in devices.calls] == [
        ("viewer", "open_url"),
        ("viewer", "read_qr"),
        ("scanner", "open_url"),
        ("scanner", "assert"),
        ("scanner", "screenshot"),
    ]
    assert devices.calls[2].command.url == "file:///opt/corral/start/test/target.html"  # type: ignore[attr-defined]
    assert [(e.seq, e.role, e.index, e.label) for e in steps.events] == [
        (1, "viewer", 1, "openLink file:///opt/corral/start/test/qr.html"),
        (2, "scanner", 1, "readQr from viewer"),
        (3, "scanner", 2, "openLink file:///opt/corral/start/test/target.html"),
        (4, "scanner", 3, 'assertVisible text "Paired"'),
        (5, "scanner", 4, "takeScreenshot paired"),
    ]


async def test_a_step_waits_for_another_roles_value() -> None:
    text = ROLES + (
        "- viewer:\n    - readQr\n"
        "- scanner:\n    - back\n    - openLink: ${viewer.qr}\n    - assertVisible: Paired\n"
    )
    devices = Devices(results={"read_qr": {"text": "file:///target.html"}})
    reading, release = devices.gate("viewer", "read_qr")
    steps = Steps()
    task = start(text, devices, steps)
    await reading.wait()
    await settle()
    assert devices.names("scanner") == ["back"]  # openLink waits for ${viewer.qr}
    assert [entry[4] for entry in steps.log if entry[0] == "start"] == ["readQr", "back"]
    release.set()
    assert (await task).passed
    assert devices.names("scanner") == ["back", "open_url", "assert"]
    assert devices.calls[-2].command.url == "file:///target.html"  # type: ignore[attr-defined]


async def test_a_value_under_another_name_and_copied_text() -> None:
    text = ROLES + (
        "- viewer:\n    - readQr:\n        as: link\n    - copyTextFrom:\n        id: code\n"
        "    - evalScript: ${output.pin = '1234'}\n"
        "- scanner:\n    - inputText: ${viewer.link} ${viewer.copiedText} ${viewer.output.pin}\n"
    )
    devices = Devices(
        results={
            "read_qr": {"text": "https://x"},
            "copy_text": {"text": "ABC"},
            "eval_script": {"output": {"pin": "1234"}},
        }
    )
    assert (await start(text, devices, Steps())).passed
    assert devices.calls[-1].command.text == "https://x ABC 1234"  # type: ignore[attr-defined]


async def test_a_value_never_set_fails_naming_the_variable() -> None:
    text = ROLES + (
        "- viewer:\n    - readQr:\n        optional: true\n"
        "- scanner:\n    - openLink: ${viewer.qr}\n    - back\n"
    )
    devices = Devices(errors={"read_qr": "no QR code on the screen after 10 s"})
    steps = Steps()
    outcome = await start(text, devices, steps)
    assert outcome == FlowOutcome(
        passed=False,
        error="openLink ${viewer.qr}: `${viewer.qr}` was never set: role viewer ended without setting it",
        failed_role="scanner",
    )
    assert steps.results() == [
        ("readQr", "skipped", "no QR code on the screen after 10 s"),
        (
            "openLink ${viewer.qr}",
            "failed",
            "`${viewer.qr}` was never set: role viewer ended without setting it",
        ),
    ]
    assert devices.names("scanner") == []


async def test_two_roles_waiting_for_each_other_fail_instead_of_hanging() -> None:
    text = ROLES + (
        "- viewer:\n    - inputText: ${scanner.qr}\n    - readQr\n"
        "- scanner:\n    - inputText: ${viewer.qr}\n    - readQr\n"
    )
    steps = Steps()
    outcome = await start(text, Devices(), steps)
    assert not outcome.passed
    assert outcome.failed_role == "scanner"
    assert outcome.error == (
        "inputText ${viewer.qr}: `${viewer.qr}` can never be set:"
        " role viewer is waiting for ${scanner.qr} too"
    )


async def test_a_failure_cancels_the_other_roles_running_step() -> None:
    text = ROLES + (
        "- viewer:\n    - back\n    - assertVisible: Ready\n- scanner:\n    - scroll\n    - back\n"
    )
    devices = Devices(errors={"assert": 'timed out after 10 s waiting for text "Ready"'})
    scrolling, _never = devices.gate("scanner", "scroll")
    viewer_back, release_back = devices.gate("viewer", "back")
    steps = Steps()
    task = start(text, devices, steps)
    await scrolling.wait()
    await viewer_back.wait()
    release_back.set()
    outcome = await task
    assert outcome == FlowOutcome(
        passed=False,
        error='assertVisible text "Ready": timed out after 10 s waiting for text "Ready"',
        failed_role="viewer",
    )
    assert sorted(steps.results()) == [
        ('assertVisible text "Ready"', "failed", 'timed out after 10 s waiting for text "Ready"'),
        ("back", "passed", None),
        ("scroll", "failed", "cancelled: role viewer failed"),
    ]
    assert devices.names("scanner") == ["scroll"]


async def test_cancelling_the_run_cancels_every_lane() -> None:
    text = ROLES + "- viewer:\n    - scroll\n- scanner:\n    - back\n    - readQr\n"
    devices = Devices()
    scrolling, _ = devices.gate("viewer", "scroll")
    reading, _ = devices.gate("scanner", "read_qr")
    steps = Steps()
    task = start(text, devices, steps)
    await scrolling.wait()
    await reading.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert sorted(steps.results()) == [
        ("back", "passed", None),
        ("readQr", "failed", "cancelled"),
        ("scroll", "failed", "cancelled"),
    ]


async def test_sequence_numbers_are_unique_and_follow_start_order() -> None:
    text = (
        ROLES
        + "- viewer:\n    - back\n    - scroll\n- scanner:\n    - back\n    - scroll\n    - hideKeyboard\n"
    )
    steps = Steps()
    assert (await start(text, Devices(), steps)).passed
    assert [entry[1] for entry in steps.log if entry[0] == "start"] == [1, 2, 3, 4, 5]
    assert sorted((e.role, e.index) for e in steps.events) == [
        ("scanner", 1),
        ("scanner", 2),
        ("scanner", 3),
        ("viewer", 1),
        ("viewer", 2),
    ]


async def test_role_blocks_of_one_role_join_in_order() -> None:
    text = ROLES + "- viewer:\n    - back\n- scanner:\n    - scroll\n- viewer:\n    - hideKeyboard\n"
    devices = Devices()
    assert (await start(text, devices, Steps())).passed
    assert devices.names("viewer") == ["back", "hide_keyboard"]


async def test_a_roles_own_value_is_not_waited_for() -> None:
    text = ROLES + "- viewer:\n    - openLink: ${viewer.qr}\n    - readQr\n- scanner:\n    - back\n"
    steps = Steps()
    outcome = await start(text, Devices(), steps)
    assert outcome.error == (
        "openLink ${viewer.qr}: `${viewer.qr}` is not set: no earlier command of role viewer set it"
    )
