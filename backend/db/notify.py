"""LISTEN/NOTIFY channel names, built in one place with a version suffix."""

from __future__ import annotations

from typing import Literal

__all__ = ["channel"]

_VERSION = "v1"


def channel(topic: Literal["jobs", "devices", "job_changes", "flow_runs"]) -> str:
    """Name of the channel on which *topic* is announced.

    ``jobs``: a job became runnable (payload: kind) - wakes workers.
    ``devices``: a device row changed (payload: id).
    ``job_changes``: something in the jobs table changed (empty payload).
    ``flow_runs``: a flow run or one of its steps changed (payload: the run id).
    """
    return f"corral_{topic}_{_VERSION}"
