"""The interpreter with a fake executor: calls sent, labels, outcomes, variables, blocks, cancel."""

from __future__ import annotations

import asyncio
from pathlib import Path

import pytest

from backend.flows import FlowOutcome, execute, from_sources, load, parse
from tests.unit.flows.fakes import Devices, Steps

ROOT = Path(__file__).resolve().parents[3]
HEADER = "url: file:///start.html\n---\n"


async def run(
    text: str, devices: Devices, env: dict[str, str] | None = None, **files: str
) -> tuple[FlowOutcome, Steps]:
    sources = {"main.yaml": text, **{f"{name}.yaml": body for name, body in files.items()}}
    flow = from_sources(sources, "main.yaml", env)
    steps = Steps()
    return await execute(flow, devices, steps), steps


async def test_the_login_example_sends_these_commands() -> None:
    devices = Devices(
        results={
            "read_qr": {"text": "file:///opt/corral/start/test/target.html", "format": "QRCODE"},
            "screenshot": {"png": "iVBORw0KGgo=", "width": 2, "height": 1},
        }
    )
    steps = Steps()
    flow = load(ROOT / "examples" / "flows" / "login-check.yaml", {"USER": "bob"})
    outcome = await execute(flow, devices, steps)
    assert outcome == FlowOutcome(passed=True)
    assert [
        (call.role, call.command.name, call.command.model_dump(exclude={"timeout"})) for call in devices.calls
    ] == [
        ("device", "clear_state", {}),
        ("device", "open_url", {"url": "file:///opt/corral/start/test/login.html"}),
        ("device", "wait_until", {"visible": _target(css="#username"), "not_visible": None}),
        ("device", "tap", {"target": _target(css="#username"), "long_press": False, "repeat": 1}),
        ("device", "input_text", {"text": "bob"}),
        ("device", "tap", {"target": _target(css="#password"), "long_press": False, "repeat": 1}),
        ("device", "input_text", {"text": "not-a-secret"}),
        ("device", "tap", {"target": _target(text="Log in"), "long_press": False, "repeat": 1}),
        ("device", "assert", {"target": _target(text="Welcome, bob"), "visible": True}),
        ("device", "screenshot", {}),
        ("device", "open_url", {"url": "file:///opt/corral/start/test/qr.html"}),
        ("device", "read_qr", {}),
        ("device", "open_url", {"url": "file:///opt/corral/start/test/target.html"}),
        ("device", "assert", {"target": _target(text="Paired"), "visible": True}),
    ]
    assert [event.label for event in steps.events] == [
        "launchApp file:///opt/corral/start/test/login.html",
        'extendedWaitUntil visible css "#username"',
        'tapOn css "#username"',
        'inputText "${USER}"',
        'tapOn css "#password"',
        'inputText "${PASSWORD}"',
        'tapOn text "Log in"',
        'assertVisible text "Welcome, bob"',
        "takeScreenshot logged-in",
        "openLink file:///opt/corral/start/test/qr.html",
        "readQr",
        "openLink file:///opt/corral/start/test/target.html",
        'assertVisible text "Paired"',
    ]
    assert [event.seq for event in steps.events] == list(range(1, 14))
    assert [event.index for event in steps.events] == list(range(1, 14))
    assert [event.line for event in steps.events] == [12, 14, 18, 20, 21, 23, 24, 25, 26, 27, 30, 31, 32]
    assert {outcome for _, outcome, _ in steps.results()} == {"passed"}
    assert steps.data[9] == {"png": "iVBORw0KGgo=", "width": 2, "height": 1, "name": "logged-in"}
    assert steps.data[11]["text"] == "file:///opt/corral/start/test/target.html"


def _target(**given: object) -> dict[str, object]:
    return {"text": None, "id": None, "css": None, "xpath": None, "point": None, "index": 0, **given}


async def test_maestro_milliseconds_become_agent_seconds() -> None:
    text = HEADER + (
        "- extendedWaitUntil:\n    visible: A\n    timeout: 2500\n"
        "- scrollUntilVisible:\n    element: B\n"
        "- tapOn:\n    text: C\n    timeout: 1500\n"
        "- back\n"
        "- waitForAnimationToEnd:\n    timeout: 300\n"
    )
    devices = Devices()
    await run(text, devices)
    assert [(call.command.name, call.command.timeout) for call in devices.calls] == [
        ("wait_until", 2.5),
        ("scroll_until_visible", 20.0),
        ("tap", 1.5),
        ("back", 10.0),
        ("wait_for_animation", 0.3),
    ]


async def test_the_first_failure_ends_the_run_with_the_executor_message() -> None:
    devices = Devices(errors={"assert": 'timed out after 10 s waiting for text "Welcome"'})
    outcome, steps = await run(HEADER + "- back\n- assertVisible: Welcome\n- scroll\n", devices)
    assert outcome == FlowOutcome(
        passed=False,
        error='assertVisible text "Welcome": timed out after 10 s waiting for text "Welcome"',
        failed_role="device",
    )
    assert steps.results() == [
        ("back", "passed", None),
        ('assertVisible text "Welcome"', "failed", 'timed out after 10 s waiting for text "Welcome"'),
    ]
    assert devices.names() == ["back", "assert"]


async def test_an_optional_failure_is_skipped_and_the_flow_goes_on() -> None:
    devices = Devices(errors={"tap": 'no element matches text "Accept cookies"'})
    text = HEADER + "- tapOn:\n    text: Accept cookies\n    optional: true\n- scroll\n"
    outcome, steps = await run(text, devices)
    assert outcome.passed
    assert steps.results() == [
        ('tapOn text "Accept cookies"', "skipped", 'no element matches text "Accept cookies"'),
        ("scroll", "passed", None),
    ]


async def test_an_exception_without_message_names_its_type() -> None:
    devices = Devices()

    async def broken(call: object) -> dict[str, object]:
        raise TimeoutError

    devices.handler = broken
    outcome, _ = await run(HEADER + "- back\n", devices)
    assert outcome.error == "back: TimeoutError"


async def test_labels_can_be_given() -> None:
    devices = Devices()
    _, steps = await run(HEADER + "- tapOn:\n    id: submit\n    label: Send the form\n", devices)
    assert steps.results() == [("Send the form", "passed", None)]


async def test_tap_variants() -> None:
    text = (
        HEADER + "- doubleTapOn: A\n- longPressOn:\n    id: b\n- tapOn:\n    point: 50%,50%\n    repeat: 3\n"
    )
    devices = Devices()
    _, steps = await run(text, devices)
    assert [(c.command.long_press, c.command.repeat) for c in devices.calls] == [
        (False, 2),
        (True, 1),
        (False, 3),
    ]  # type: ignore[attr-defined]
    assert [label for label, _, _ in steps.results()] == [
        'doubleTapOn text "A"',
        'longPressOn id "b"',
        'tapOn point "50%,50%" x3',
    ]


async def test_repeat_times_runs_the_block_as_one_numbered_step() -> None:
    text = (
        HEADER
        + "- back\n- repeat:\n    times: 3\n    commands:\n      - scroll\n      - pressKey: Tab\n- back\n"
    )
    devices = Devices()
    _, steps = await run(text, devices)
    assert devices.names() == ["back", *["scroll", "press_key"] * 3, "back"]
    assert [(event.seq, event.index) for event in steps.events] == [
        (1, 1),
        (2, 2),
        (3, 2),
        (4, 2),
        (5, 2),
        (6, 2),
        (7, 2),
        (8, 3),
    ]


async def test_repeat_while_checks_before_each_round() -> None:
    devices = Devices()
    checks = 0

    async def screen(call):  # type: ignore[no-untyped-def]
        nonlocal checks
        if call.command.name == "assert":
            checks += 1
            assert call.command.timeout == 1.0
            if checks > 2:
                raise RuntimeError("not visible")
        return {}

    devices.handler = screen
    text = HEADER + "- repeat:\n    while:\n      visible: More\n    commands:\n      - tapOn: More\n"
    outcome, steps = await run(text, devices)
    assert outcome.passed
    assert devices.names() == ["assert", "tap", "assert", "tap", "assert"]
    assert [label for label, _, _ in steps.results()] == ['tapOn text "More"'] * 2


async def test_repeat_times_and_while_stop_at_whichever_comes_first() -> None:
    devices = Devices()
    text = (
        HEADER + "- repeat:\n    times: 2\n    while:\n      notVisible: Done\n    commands:\n      - back\n"
    )
    await run(text, devices)
    assert devices.names() == ["assert", "back", "assert", "back"]


async def test_run_flow_env_is_scoped_to_the_sub_flow() -> None:
    main = (
        "url: x\nenv:\n  WHO: main\n---\n"
        "- inputText: ${WHO}\n"
        "- runFlow:\n    file: sub.yaml\n    env:\n      WHO: sub-${WHO}\n"
        "- inputText: ${WHO}\n"
        "- runFlow: sub.yaml\n"
    )
    sub = "env:\n  WHO: default\n  ONLY: sub-default\n---\n- inputText: ${WHO}/${ONLY}\n"
    devices = Devices()
    _, steps = await run(main, devices, sub=sub)
    assert [call.command.text for call in devices.calls] == [  # type: ignore[attr-defined]
        "main",
        "sub-main/sub-default",
        "main",
        "main/sub-default",  # the caller's variable wins over the sub-flow's default
    ]
    assert [(event.file, event.line, event.index) for event in steps.events] == [
        ("main.yaml", 5, 1),
        ("sub.yaml", 5, 2),
        ("main.yaml", 10, 3),
        ("sub.yaml", 5, 4),
    ]


async def test_the_callers_env_wins_over_the_header() -> None:
    devices = Devices()
    await run("url: x\nenv:\n  USER: alice\n---\n- inputText: ${USER}\n", devices, env={"USER": "carol"})
    assert [call.command.text for call in devices.calls] == ["carol"]  # type: ignore[attr-defined]


async def test_an_input_text_label_shows_the_text_as_written_not_the_secret() -> None:
    devices = Devices(results={"copy_text": {"text": "copied-secret"}})
    text = HEADER + (
        "- inputText: ${PASSWORD}\n"
        "- inputText: user ${USER} here\n"
        "- inputText: literal\n"
        "- copyTextFrom: Code\n"
        "- inputText: ${maestro.copiedText}\n"
    )
    outcome, steps = await run(text, devices, {"PASSWORD": "hunter2", "USER": "bob"})
    assert outcome == FlowOutcome(passed=True)
    assert [
        call.command.model_dump(include={"text"})
        for call in devices.calls
        if call.command.name == "input_text"
    ] == [
        {"text": "hunter2"},
        {"text": "user bob here"},
        {"text": "literal"},
        {"text": "copied-secret"},
    ]
    assert [event.label for event in steps.events] == [
        'inputText "${PASSWORD}"',
        'inputText "user ${USER} here"',
        'inputText "literal"',
        'copyTextFrom text "Code"',
        'inputText "${maestro.copiedText}"',
    ]


async def test_a_value_is_substituted_once() -> None:
    devices = Devices()
    await run(HEADER + "- inputText: ${PASSWORD}\n", devices, env={"PASSWORD": "p${ss}w0rd"})
    assert [call.command.text for call in devices.calls] == ["p${ss}w0rd"]  # type: ignore[attr-defined]


async def test_run_flow_when_not_visible_skips_the_block() -> None:
    devices = Devices(errors={"assert": "not visible"})
    text = (
        HEADER
        + "- runFlow:\n    when:\n      visible: Cookie banner\n"
        + "    commands:\n      - tapOn: Accept\n- back\n"
    )
    _, steps = await run(text, devices)
    assert devices.names() == ["assert", "back"]
    assert [label for label, _, _ in steps.results()] == ["back"]


async def test_run_flow_when_platform_and_true() -> None:
    devices = Devices()
    text = HEADER + (
        "- runFlow:\n    when:\n      platform: Web\n    commands: [back]\n"
        "- runFlow:\n    when:\n      platform: Android\n    commands: [scroll]\n"
        "- runFlow:\n    when:\n      true: ${ON}\n    commands: [hideKeyboard]\n"
    )
    await run(text, devices, env={"ON": "false"})
    assert devices.names() == ["back"]


async def test_an_optional_run_flow_ends_at_its_first_failure() -> None:
    devices = Devices(errors={"tap": "no element matches"})
    sub = "- back\n- tapOn: Missing\n- scroll\n"
    text = HEADER + "- runFlow:\n    file: sub.yaml\n    optional: true\n- hideKeyboard\n"
    outcome, steps = await run(text, devices, sub=sub)
    assert outcome.passed
    assert steps.results() == [
        ("back", "passed", None),
        ('tapOn text "Missing"', "skipped", "no element matches"),
        ("hideKeyboard", "passed", None),
    ]


async def test_eval_script_output_and_copied_text() -> None:
    devices = Devices()

    async def device(call):  # type: ignore[no-untyped-def]
        if call.command.name == "eval_script":
            return {"value": None, "output": {**call.command.output, "code": 42, "user": {"name": "ann"}}}
        if call.command.name == "copy_text":
            return {"text": "copied text"}
        return {}

    devices.handler = device
    text = "url: x\nenv:\n  N: '2'\n---\n" + (
        "- evalScript: ${output.code = 40 + Number(N)}\n"
        "- inputText: ${output.code} ${output.user.name}\n"
        "- copyTextFrom:\n    id: label\n"
        "- inputText: ${maestro.copiedText}!\n"
        "- pasteText\n"
    )
    _, steps = await run(text, devices)
    script = devices.calls[0].command
    assert (script.script, script.output, script.env) == ("output.code = 40 + Number(N)", {}, {"N": "2"})  # type: ignore[attr-defined]
    assert [call.command.text for call in devices.calls if call.command.name == "input_text"] == [  # type: ignore[attr-defined]
        "42 ann",
        "copied text!",
        "copied text",
    ]
    assert steps.events[0].label == "evalScript output.code = 40 + Number(N)"


async def test_a_run_time_value_not_set_yet_fails_its_step() -> None:
    outcome, steps = await run(HEADER + "- inputText: ${output.token}\n", Devices())
    assert steps.results() == [
        (
            "inputText ${output.token}",
            "failed",
            "`${output.token}` is not set: no evalScript of this flow set it before",
        )
    ]
    assert (
        outcome.error
        == "inputText ${output.token}: `${output.token}` is not set: no evalScript of this flow set it before"
    )


async def test_a_run_time_value_of_the_wrong_type_fails_its_step() -> None:
    devices = Devices(results={"eval_script": {"output": {"n": "many"}}})
    text = (
        HEADER
        + "- evalScript: ${output.n = 'many'}\n- repeat:\n    times: ${output.n}\n    commands: [back]\n"
    )
    outcome, _ = await run(text, devices)
    assert outcome.error == (
        "repeat: times: Input should be a valid integer, unable to parse string as an integer (got 'many')"
    )


async def test_cancelling_reports_the_step_in_flight_then_raises() -> None:
    devices = Devices()
    entered, _release = devices.gate("device", "scroll")
    steps = Steps()
    flow = parse(HEADER + "- back\n- scroll\n- back\n", "f.yaml")
    task = asyncio.create_task(execute(flow, devices, steps))
    await entered.wait()
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert steps.results() == [("back", "passed", None), ("scroll", "failed", "cancelled")]
    assert devices.names() == ["back", "scroll"]


async def test_durations_are_measured() -> None:
    _, steps = await run(HEADER + "- back\n", Devices())
    assert steps.durations[1] >= 0


async def test_a_condition_that_is_not_true_or_false_fails_its_block() -> None:
    text = HEADER + "- runFlow:\n    when:\n      true: ${ANSWER}\n    commands: [back]\n"
    outcome, steps = await run(text, Devices(), env={"ANSWER": "maybe"})
    assert steps.results() == [("runFlow", "failed", "`true:` expects true or false, got 'maybe'")]
    assert outcome.error == "runFlow: `true:` expects true or false, got 'maybe'"
