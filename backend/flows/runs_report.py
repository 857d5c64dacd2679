"""Reports of finished runs: a summary to read, JSON for scripts, JUnit XML for CI (pure, no I/O).

JUnit follows what CI systems read and Maestro writes: one ``<testsuite>`` per
flow, one ``<testcase>`` per run (named after its device, or its role devices),
a ``<failure>`` whose message is the failed step's error, an ``<error>`` for a
cancelled run.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from backend.types import FlowRunInfo, FlowStepInfo

__all__ = ["RunReport", "as_json", "junit", "run_seconds", "summary", "where"]

# Characters XML 1.0 cannot hold, even escaped (a device's error may carry any of them).
_NOT_XML = re.compile("[^\t\n\r\x20-\ud7ff\ue000-\ufffd\U00010000-\U0010ffff]")


def _xml(text: str) -> str:
    """*text* as XML can hold it: characters it cannot are written ``\\x1b``, ``\\ufffe``."""

    def shown(match: re.Match[str]) -> str:
        code = ord(match.group())
        return f"\\x{code:02x}" if code < 0x100 else f"\\u{code:04x}"

    return _NOT_XML.sub(shown, text)


@dataclass(frozen=True, slots=True)
class RunReport:
    """A finished run, its steps, and device names by id (for people; rows hold ids)."""

    run: FlowRunInfo
    steps: Sequence[FlowStepInfo]
    names: Mapping[str, str]


def where(report: RunReport) -> str:
    """``browser-1``, or ``viewer=browser-1 scanner=browser-2`` for a flow with roles."""
    devices = report.run.devices
    if list(devices) == ["device"]:
        return report.names.get(devices["device"], devices["device"])
    return " ".join(f"{role}={report.names.get(device, device)}" for role, device in devices.items())


def run_seconds(run: FlowRunInfo) -> float:
    if run.started_at is None or run.finished_at is None:
        return 0.0
    return max(0.0, (run.finished_at - run.started_at).total_seconds())


def _failed_step(report: RunReport) -> FlowStepInfo | None:
    """The step that failed the run: in a flow with roles, the failed role's (the
    other roles' steps cut short by it are recorded failed too, sometimes first)."""
    role = report.run.failed_role
    failed = [step for step in report.steps if step.state == "failed"]
    return next((step for step in failed if step.role == role), failed[0] if failed else None)


def summary(reports: Sequence[RunReport]) -> str:
    """Lines a person reads after a batch: one per run, then the totals."""
    lines = []
    for report in reports:
        run = report.run
        mark = {"passed": "PASS", "failed": "FAIL", "cancelled": "CANCELLED"}.get(
            run.state, run.state.upper()
        )
        line = f"{mark:<9} {run.name}  on {where(report)}  {run.steps_done}/{run.steps_total} steps"
        line += f"  {run_seconds(run):.1f}s"
        lines.append(line)
        if run.state == "failed" and run.error:
            step = _failed_step(report)
            at = f" ({step.file}:{step.line})" if step is not None and step.file and step.line else ""
            lines.append(f"          {run.error}{at}")
    counts = {
        state: sum(r.run.state == state for r in reports) for state in ("passed", "failed", "cancelled")
    }
    total = ", ".join(f"{n} {state}" for state, n in counts.items() if n) or "no runs"
    lines.append(f"{len(reports)} run{'s' if len(reports) != 1 else ''}: {total}")
    return "\n".join(lines)


def as_json(report: RunReport) -> dict[str, Any]:
    run = report.run
    return {
        "id": run.id,
        "batch": run.batch,
        "flow": run.name,
        "file": run.file,
        "devices": {role: report.names.get(device, device) for role, device in run.devices.items()},
        "device_ids": dict(run.devices),
        "state": run.state,
        "error": run.error,
        "failed_role": run.failed_role,
        "steps_total": run.steps_total,
        "steps_done": run.steps_done,
        "seconds": round(run_seconds(run), 3),
        "started_at": run.started_at.isoformat() if run.started_at else None,
        "finished_at": run.finished_at.isoformat() if run.finished_at else None,
        "steps": [
            {
                "seq": step.seq,
                "role": step.role,
                "index": step.index,
                "label": step.label,
                "command": step.command,
                "file": step.file,
                "line": step.line,
                "state": step.state,
                "error": step.error,
                "seconds": step.duration,
                "screenshot": step.screenshot,
                "data": step.data,
            }
            for step in report.steps
        ],
    }


def junit(reports: Sequence[RunReport]) -> str:
    """JUnit XML of *reports*: a testsuite per flow (in first-seen order), a testcase per run."""
    suites: dict[str, list[RunReport]] = {}
    for report in reports:
        suites.setdefault(report.run.name, []).append(report)
    root = ET.Element("testsuites", name="corral")
    for name, members in suites.items():
        failures = sum(r.run.state == "failed" for r in members)
        errors = sum(r.run.state not in ("passed", "failed") for r in members)
        seconds = sum(run_seconds(r.run) for r in members)
        suite = ET.SubElement(
            root,
            "testsuite",
            name=_xml(name),
            tests=str(len(members)),
            failures=str(failures),
            errors=str(errors),
            time=f"{seconds:.3f}",
        )
        for report in members:
            case = ET.SubElement(
                suite,
                "testcase",
                classname=_xml(name),
                name=_xml(where(report)),
                file=_xml(report.run.file),
                time=f"{run_seconds(report.run):.3f}",
            )
            if report.run.state == "failed":
                failure = ET.SubElement(case, "failure", message=_xml(report.run.error or "failed"))
                failure.text = _xml(
                    "\n".join(
                        f"{step.seq}. [{step.state}] {step.label}" + (f": {step.error}" if step.error else "")
                        for step in report.steps
                    )
                )
            elif report.run.state != "passed":
                ET.SubElement(case, "error", message=_xml(report.run.error or report.run.state))
    ET.indent(root)
    text: str = ET.tostring(root, encoding="unicode", xml_declaration=True)
    return text + "\n"
