"""The public Python API of the Corral backend: what the app, the CLI and scripts use.

Everything the desktop app and the ``corral`` client package know about the
backend comes through this module (import-linter contracts enforce it). It
imports no Qt. What it names:

- :class:`Corral` (start it with :meth:`Corral.start`) and :class:`Settings`;
- snapshots: :class:`DeviceInfo`, :class:`JobInfo`, :class:`FlowRunInfo`,
  :class:`FlowStepInfo`, :class:`Health`, and their listener types;
- vocabularies: :data:`DEVICE_KINDS`, :data:`DEVICE_STATES` (and
  :class:`DeviceState`), :data:`LIVE_DEVICE_STATES`, :data:`JOB_STATES`,
  :data:`FLOW_RUN_STATES`, :data:`FLOW_STEP_STATES`, :data:`COMMAND_NAMES`,
  :func:`commands_for`;
- flows: :class:`Flow`, :func:`load_flow`, :func:`parse_flow`, and reports
  (:class:`RunReport`, :func:`junit_report`, :func:`summary_report`);
  :data:`DEFAULT_FLOW_ROLE` is the one role of a flow that declares none;
- errors: :class:`CorralError` and the ones worth catching apart
  (:class:`FlowError`, :class:`InvalidRun`, :class:`CommandFailed`,
  :class:`UnknownRun`, :class:`UnknownDevice`).
"""

from __future__ import annotations

from agent.commands import COMMANDS, commands_for
from backend.config import Settings
from backend.corral import DEVICE_KINDS, Corral
from backend.devices.exceptions import UnknownDevice
from backend.devices.states import ACTIVE_STATES, DeviceState
from backend.devices.store import MAX_BATCH
from backend.exceptions import CorralError
from backend.flows.loading import load as load_flow
from backend.flows.loading import parse as parse_flow
from backend.flows.model import DEFAULT_ROLE as DEFAULT_FLOW_ROLE
from backend.flows.model import Flow, FlowError, FlowProblem
from backend.flows.runs_errors import CommandFailed, InvalidRun, RunError, RunFailed, UnknownRun
from backend.flows.runs_report import RunReport
from backend.flows.runs_report import junit as junit_report
from backend.flows.runs_report import summary as summary_report
from backend.jobs.store import JOB_STATES
from backend.stream.admission import Scope as StreamScope
from backend.types import (
    FLOW_RUN_STATES,
    FLOW_STEP_STATES,
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
    "ACTIVE_DEVICE_STATES",
    "COMMAND_NAMES",
    "DEFAULT_FLOW_ROLE",
    "DEVICE_KINDS",
    "DEVICE_STATES",
    "FLOW_RUN_STATES",
    "FLOW_STEP_STATES",
    "JOB_STATES",
    "LIVE_DEVICE_STATES",
    "MAX_BATCH",
    "CommandFailed",
    "Corral",
    "CorralError",
    "DeviceInfo",
    "DeviceListener",
    "DeviceState",
    "Flow",
    "FlowError",
    "FlowProblem",
    "FlowRunInfo",
    "FlowRunsListener",
    "FlowStepInfo",
    "Health",
    "InvalidRun",
    "JobInfo",
    "JobsListener",
    "RunError",
    "RunFailed",
    "RunReport",
    "Settings",
    "StreamScope",
    "TaskState",
    "UnknownDevice",
    "UnknownRun",
    "commands_for",
    "junit_report",
    "load_flow",
    "parse_flow",
    "summary_report",
]

DEVICE_STATES: tuple[str, ...] = tuple(state.value for state in DeviceState)
"""Every device state, in the order of the state machine."""
ACTIVE_DEVICE_STATES = frozenset(state.value for state in ACTIVE_STATES)
"""States in which a device has (or is getting) a running container."""
LIVE_DEVICE_STATES = frozenset({DeviceState.READY.value, DeviceState.BUSY.value})
"""States in which a device shows its screen and runs commands."""
COMMAND_NAMES: tuple[str, ...] = tuple(sorted(COMMANDS))
"""Wire names of every agent command (``corral exec DEVICE NAME``)."""
