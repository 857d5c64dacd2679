"""Builders of backend snapshots (``DeviceInfo``, ``JobInfo``) for pure-logic model tests."""

from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from backend.api import DEFAULT_FLOW_ROLE, DeviceInfo, Flow, FlowRunInfo, FlowStepInfo, JobInfo

__all__ = ["T0", "device", "flow", "job", "run", "step"]

T0 = datetime(2026, 1, 1, 12, 0, tzinfo=UTC)


def device(device_id: str, state: str = "ready", **changes: object) -> DeviceInfo:
    """A DeviceInfo with readable defaults."""
    values: dict[str, object] = {
        "id": device_id,
        "name": device_id,
        "kind": "browser",
        "state": state,
        "reason": None,
        "created_at": T0,
        "updated_at": T0,
        "progress": 1.0 if state in {"ready", "busy"} else 0.0,
        "progress_message": "",
    }
    values.update(changes)
    return DeviceInfo(**values)  # type: ignore[arg-type]


def job(job_id: int, state: str = "queued", **changes: object) -> JobInfo:
    """A JobInfo (a provision of device ``dev-<id>``) with readable defaults."""
    values: dict[str, object] = {
        "id": job_id,
        "kind": "provision",
        "device_id": f"dev-{job_id}",
        "state": state,
        "attempts": 0 if state == "queued" else 1,
        "max_attempts": 3,
        "progress": 1.0 if state == "succeeded" else 0.0,
        "progress_message": "",
        "error": None,
        "cancel_requested": False,
        "created_at": T0,
        "updated_at": T0,
    }
    values.update(changes)
    return JobInfo(**values)  # type: ignore[arg-type]


def flow(name: str = "login-check", roles: dict[str, str] | None = None, steps: int = 3) -> Flow:
    """A checked Flow as the loader returns it (no program: nothing here runs it)."""
    path = Path(f"/flows/{name}.yaml")
    return Flow(
        name=name,
        path=path,
        roles=roles or {DEFAULT_FLOW_ROLE: "browser"},
        env={},
        tags=(),
        steps=steps,
        sources={str(path): "---\n"},
        main=str(path),
    )


def run(run_id: int, state: str = "running", **changes: object) -> FlowRunInfo:
    """A FlowRunInfo of ``login-check`` on device ``dev-<id>`` with readable defaults."""
    values: dict[str, object] = {
        "id": run_id,
        "batch": "batch-1",
        "name": "login-check",
        "file": "/flows/login-check.yaml",
        "devices": {DEFAULT_FLOW_ROLE: f"dev-{run_id}"},
        "state": state,
        "error": None,
        "failed_role": None,
        "steps_total": 3,
        "steps_done": 0,
        "current_step": "",
        "created_at": T0,
        "started_at": T0 if state != "queued" else None,
        "finished_at": None,
    }
    values.update(changes)
    return FlowRunInfo(**values)  # type: ignore[arg-type]


def step(run_id: int, seq: int, state: str = "passed", **changes: object) -> FlowStepInfo:
    """A FlowStepInfo: step *seq* of run *run_id*, on role ``device``."""
    values: dict[str, object] = {
        "run_id": run_id,
        "seq": seq,
        "role": DEFAULT_FLOW_ROLE,
        "device_id": f"dev-{run_id}",
        "index": seq,
        "label": f"step {seq}",
        "command": "tapOn",
        "file": "/flows/login-check.yaml",
        "line": 2 + seq,
        "state": state,
        "error": None,
        "started_at": T0,
        "duration": 0.5 if state != "running" else None,
    }
    values.update(changes)
    return FlowStepInfo(**values)  # type: ignore[arg-type]
