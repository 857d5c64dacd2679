"""The public Python API of the Corral backend: what the app and scripts use.

Everything the desktop app knows about the backend comes through this module
(an import-linter contract enforces it). It imports no Qt.
"""

from __future__ import annotations

from backend.config import Settings
from backend.corral import DEVICE_KINDS, Corral
from backend.devices.store import MAX_BATCH
from backend.exceptions import CorralError
from backend.flows import Flow, FlowError, FlowProblem
from backend.flows.model import DEFAULT_ROLE as DEFAULT_FLOW_ROLE
from backend.jobs.store import JOB_STATES
from backend.stream.admission import Scope as StreamScope
from backend.types import (
    FLOW_RUN_STATES,
    DeviceInfo,
    DeviceListener,
    FlowRunInfo,
    FlowRunsListener,
    FlowStepInfo,
    Health,
    JobInfo,
    JobsListener,
    TaskState,
)

__all__ = [
    "DEFAULT_FLOW_ROLE",
    "DEVICE_KINDS",
    "FLOW_RUN_STATES",
    "JOB_STATES",
    "MAX_BATCH",
    "Corral",
    "CorralError",
    "DeviceInfo",
    "DeviceListener",
    "Flow",
    "FlowError",
    "FlowProblem",
    "FlowRunInfo",
    "FlowRunsListener",
    "FlowStepInfo",
    "Health",
    "JobInfo",
    "JobsListener",
    "Settings",
    "StreamScope",
    "TaskState",
]
