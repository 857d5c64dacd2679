"""Run reports: the summary, JSON and JUnit XML (parsed back)."""

from __future__ import annotations

import dataclasses
import xml.etree.ElementTree as ET
from datetime import UTC, datetime, timedelta

from backend.flows.runs_report import RunReport, as_json, junit, summary
from backend.types import FlowRunInfo, FlowStepInfo

T0 = datetime(2026, 1, 2, 3, 4, 5, tzinfo=UTC)
NAMES = {"d1": "browser-1", "d2": "browser-2", "d3": "browser-3"}


def _run(
    run_id: int, state: str, devices: dict[str, str], error: str | None = None, name: str = "login"
) -> FlowRunInfo:
    return FlowRunInfo(
        id=run_id,
        batch="b",
        name=name,
        file="login.yaml",
        devices=devices,
        state=state,
        error=error,
        failed_role=None,
        steps_total=3,
        steps_done=3 if state == "passed" else 2,
        current_step="",
        created_at=T0,
        started_at=T0,
        finished_at=T0 + timedelta(seconds=2.5),
    )


def _step(run_id: int, seq: int, state: str, error: str | None = None) -> FlowStepInfo:
    return FlowStepInfo(
        run_id=run_id,
        seq=seq,
        role="device",
        device_id="d2",
        index=seq,
        label=f"step {seq}",
        command="tapOn",
        file="login.yaml",
        line=4 + seq,
        state=state,
        error=error,
        started_at=T0,
        duration=0.5,
    )


REPORTS = [
    RunReport(_run(1, "passed", {"device": "d1"}), [_step(1, 1, "passed")], NAMES),
    RunReport(
        _run(2, "failed", {"device": "d2"}, 'step 2: no text "Welcome" within 10s'),
        [_step(2, 1, "passed"), _step(2, 2, "failed", 'no text "Welcome" within 10s')],
        NAMES,
    ),
    RunReport(_run(3, "cancelled", {"viewer": "d1", "scanner": "d3"}, name="pair"), [], NAMES),
]


def test_summary() -> None:
    assert summary(REPORTS).splitlines() == [
        "PASS      login  on browser-1  3/3 steps  2.5s",
        "FAIL      login  on browser-2  2/3 steps  2.5s",
        '          step 2: no text "Welcome" within 10s (login.yaml:6)',
        "CANCELLED pair  on viewer=browser-1 scanner=browser-3  2/3 steps  2.5s",
        "3 runs: 1 passed, 1 failed, 1 cancelled",
    ]


def test_junit_has_a_suite_per_flow_and_a_case_per_run() -> None:
    root = ET.fromstring(junit(REPORTS))
    suites = root.findall("testsuite")
    assert [
        (s.get("name"), s.get("tests"), s.get("failures"), s.get("errors"), s.get("time")) for s in suites
    ] == [
        ("login", "2", "1", "0", "5.000"),
        ("pair", "1", "0", "1", "2.500"),
    ]
    login, pair = suites
    assert [(c.get("classname"), c.get("name"), c.get("time")) for c in login] == [
        ("login", "browser-1", "2.500"),
        ("login", "browser-2", "2.500"),
    ]
    assert list(login[0]) == []
    failure = login[1].find("failure")
    assert failure is not None
    assert failure.get("message") == 'step 2: no text "Welcome" within 10s'
    assert failure.text == '1. [passed] step 1\n2. [failed] step 2: no text "Welcome" within 10s'
    error = pair[0].find("error")
    assert error is not None and error.get("message") == "cancelled"
    assert pair[0].get("name") == "viewer=browser-1 scanner=browser-3"


def test_json_names_devices_and_keeps_ids() -> None:
    data = as_json(REPORTS[2])
    assert (data["devices"], data["device_ids"], data["state"], data["seconds"]) == (
        {"viewer": "browser-1", "scanner": "browser-3"},
        {"viewer": "d1", "scanner": "d3"},
        "cancelled",
        2.5,
    )


def test_a_role_runs_failure_points_at_the_failed_roles_step() -> None:
    # The viewer's wait, cancelled because the scanner failed, is recorded failed first (seq 2).
    run = dataclasses.replace(
        _run(4, "failed", {"viewer": "d1", "scanner": "d2"}, 'assertVisible text "Nope": not visible'),
        failed_role="scanner",
    )
    steps = [
        _step(4, 1, "passed"),
        dataclasses.replace(_step(4, 2, "failed", "cancelled: role scanner failed"), role="viewer", line=8),
        dataclasses.replace(_step(4, 3, "failed", "not visible"), role="scanner", line=13),
    ]
    assert summary([RunReport(run, steps, NAMES)]).splitlines()[1] == (
        '          assertVisible text "Nope": not visible (login.yaml:13)'
    )


def test_junit_stays_well_formed_xml_whatever_a_device_answered() -> None:
    error = "bad \x1b[31m\x07\x00 <tag> & \ufffe end"
    report = RunReport(
        _run(3, "failed", {"device": "d2"}, f"step 1: {error}", name="evil\x08"),
        [_step(3, 1, "failed", error)],
        NAMES,
    )
    root = ET.fromstring(junit([report]))  # raised "not well-formed (invalid token)"
    suite = root.find("testsuite")
    assert suite is not None
    assert suite.get("name") == "evil\\x08"
    failure = root.find("testsuite/testcase/failure")
    assert failure is not None
    assert failure.get("message") == "step 1: bad \\x1b[31m\\x07\\x00 <tag> & \\ufffe end"
    assert failure.text == "1. [failed] step 1: bad \\x1b[31m\\x07\\x00 <tag> & \\ufffe end"
