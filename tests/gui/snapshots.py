"""Builders of backend snapshots (``DeviceInfo``, ``JobInfo``) for pure-logic model tests."""

from __future__ import annotations

from datetime import UTC, datetime

from backend.api import DeviceInfo, JobInfo

__all__ = ["T0", "device", "job"]

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
