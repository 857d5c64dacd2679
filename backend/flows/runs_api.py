"""The flow-run part of :class:`backend.corral.Corral`'s API: start, read, follow and cancel runs; exec.

A mixin so ``corral.py`` keeps to the process's assembly; every method goes
through the :class:`~backend.flows.runs_service.RunService` the Corral made.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from backend.flows.model import Flow
from backend.flows.runs_service import RunService
from backend.types import FlowRunInfo, FlowRunsListener, FlowStepInfo

__all__ = ["FlowRunsApi"]


class FlowRunsApi:
    """Flow runs and single commands; works the same in the host and in a client process."""

    _runs: RunService

    async def run_flow(
        self,
        flow: Flow,
        *,
        devices: Sequence[str] = (),
        roles: Mapping[str, str] | None = None,
        batch: str | None = None,
    ) -> list[FlowRunInfo]:
        """Start *flow* on *devices* (one run each) or on its *roles* devices (one run); returns at once.

        Devices by id or name; *batch* joins an earlier request's batch. Raises
        InvalidRun (before anything is written) when they do not fit.
        """
        return await self._runs.run_flow(flow, devices=devices, roles=roles, batch=batch)

    async def flow_runs(self, *, batch: str | None = None, limit: int = 200) -> list[FlowRunInfo]:
        """Newest first; *batch* keeps the runs of one request."""
        return await self._runs.runs(batch=batch, limit=limit)

    async def flow_run(self, run_id: int) -> FlowRunInfo:
        return await self._runs.run(run_id)

    async def flow_steps(self, run_id: int) -> list[FlowStepInfo]:
        """The run's steps in the order they started."""
        return await self._runs.steps(run_id)

    async def cancel_flow_run(self, run_id: int) -> FlowRunInfo:
        """Cancel a queued run at once, a running one at its step in flight; an ended one stays."""
        return await self._runs.cancel(run_id)

    def add_flow_runs_listener(self, listener: FlowRunsListener) -> Callable[[], None]:
        """Call *listener* with a run's snapshot whenever it or its steps change; returns unsubscribe."""
        return self._runs.add_listener(listener)

    async def wait_flow_runs(self, run_ids: Sequence[int], timeout: float | None = None) -> list[FlowRunInfo]:
        """Wait until every run has ended; raises TimeoutError after *timeout* seconds."""
        return await self._runs.wait(run_ids, timeout)

    async def command(
        self, device: str, name: str, args: Mapping[str, Any] | None = None, timeout: float | None = None
    ) -> dict[str, Any]:
        """Run one agent command (``corral exec``) as a one-step run; return its result data.

        Raises InvalidRun for a bad request, CommandFailed when it failed on the device.
        """
        return await self._runs.command(device, name, args, timeout)
