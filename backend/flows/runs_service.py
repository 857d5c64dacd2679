"""What callers of :class:`backend.corral.Corral` do with flow runs: start, read, follow, cancel, exec.

Works the same in a host and in a client process: everything goes through
Postgres (rows and jobs), and the host's worker runs the jobs. Changes arrive on
the ``flow_runs`` NOTIFY channel (payload: the run id); a burst of them is read
back in one query and handed to listeners once per run.
"""

from __future__ import annotations

import asyncio
import base64
import contextlib
import logging
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from agent.commands import COMMANDS, commands_for, parse_command
from backend.db import Database
from backend.db.models import Device
from backend.db.notify import channel
from backend.devices.exceptions import UnknownDevice
from backend.devices.states import DeviceState
from backend.devices.store import DeviceStore
from backend.flows.model import DEFAULT_ROLE, Flow
from backend.flows.runs import FlowRuns, RunRequest, new_batch, run_info, step_info
from backend.flows.runs_errors import CommandFailed, InvalidRun
from backend.flows.runs_handler import HUB_GRACE, command_label
from backend.types import FlowRunInfo, FlowRunsListener, FlowStepInfo

__all__ = ["COMMAND_QUEUE_WAIT", "RunService", "validate_command"]

log = logging.getLogger(__name__)

COMMAND_QUEUE_WAIT = 60.0
"""Seconds a single command may wait for a host to take it, on top of its own timeout."""
_COALESCE = 0.05
"""Seconds notifications are gathered before the runs they name are read back."""
_POLL = 2.0
"""Fallback re-read while waiting, in case a notification was lost."""


def validate_command(name: str, args: Mapping[str, Any]) -> dict[str, Any]:
    """*args* of command *name*, validated and complete (defaults filled in).

    Raises InvalidRun naming the known commands (unknown *name*) or the bad field.
    """
    if name not in COMMANDS:
        raise InvalidRun(f"unknown command {name!r}; known commands: {', '.join(sorted(COMMANDS))}")
    try:
        return parse_command(name, dict(args)).model_dump(mode="json")
    except ValidationError as exc:
        problems = []
        for error in exc.errors():
            field = ".".join(str(part) for part in error["loc"]) or "arguments"
            problems.append(f"{field}: {error['msg']}")
        raise InvalidRun(f"{name}: {'; '.join(problems)}") from None


class RunService:
    def __init__(self, data_dir: Path, database: Database, runs: FlowRuns, store: DeviceStore) -> None:
        self._data_dir = data_dir
        self._database = database
        self._runs = runs
        self._store = store
        self._listeners: list[FlowRunsListener] = []
        self._listening = False
        self._changed: set[int] = set()
        self._resync = False
        self._flush: asyncio.Task[None] | None = None

    # --- starting --------------------------------------------------------------

    async def run_flow(
        self,
        flow: Flow,
        *,
        devices: Sequence[str] = (),
        roles: Mapping[str, str] | None = None,
        batch: str | None = None,
    ) -> list[FlowRunInfo]:
        """Start *flow*: one run per device of *devices*, or one run on the *roles* devices.

        Devices by id or name. Returns at once, the runs ``queued``. Raises
        InvalidRun (no devices, a device unknown, removed or of the wrong kind,
        roles missing or unknown) before anything is written.
        """
        if not flow.main or flow.main not in flow.sources:
            raise InvalidRun(f"flow {flow.name!r} carries no sources; load it with backend.flows.load")
        declared = dict(flow.roles)
        has_roles = set(declared) - {DEFAULT_ROLE} != set()
        payload = {"sources": dict(flow.sources), "main": flow.main, "env": dict(flow.env)}
        file = str(flow.path) if flow.path is not None else flow.main
        requests: list[RunRequest] = []
        if has_roles:
            if devices:
                raise InvalidRun(
                    f"flow {flow.name!r} declares roles ({', '.join(declared)}): give a device for each"
                    " role (--role ROLE=DEVICE), not devices"
                )
            given = dict(roles or {})
            unknown = sorted(set(given) - set(declared))
            if unknown:
                raise InvalidRun(
                    f"flow {flow.name!r} has no role {', '.join(unknown)}; its roles: {', '.join(declared)}"
                )
            missing = [role for role in declared if role not in given]
            if missing:
                raise InvalidRun(
                    f"flow {flow.name!r} needs a device for role {', '.join(missing)} (--role ROLE=DEVICE)"
                )
            chosen = {role: await self._device(given[role], declared[role], role) for role in declared}
            requests.append(
                RunRequest(flow.name, file, {r: d.id for r, d in chosen.items()}, flow.steps, payload)
            )
        else:
            if roles:
                raise InvalidRun(f"flow {flow.name!r} declares no roles; choose its devices instead")
            if not devices:
                raise InvalidRun("no devices chosen to run the flow on")
            kind = declared.get(DEFAULT_ROLE)
            seen: set[str] = set()
            for ref in devices:
                device = await self._device(ref, kind, None)
                if device.id not in seen:
                    seen.add(device.id)
                    requests.append(
                        RunRequest(flow.name, file, {DEFAULT_ROLE: device.id}, flow.steps, payload)
                    )
        runs = await self._runs.start(requests, batch or new_batch())
        return [run_info(run) for run in runs]

    async def _device(self, ref: str, kind: str | None, role: str | None) -> Device:
        try:
            device = await self._store.resolve(ref)
        except UnknownDevice as exc:
            raise InvalidRun(str(exc)) from None
        for_role = f" for role {role}" if role else ""
        if device.state == DeviceState.REMOVED:
            raise InvalidRun(f"device {device.name}{for_role} has been removed")
        if kind is not None and device.kind != kind:
            raise InvalidRun(
                f"device {device.name}{for_role} is a {device.kind} device; the flow needs {kind}"
            )
        return device

    async def command(
        self, device: str, name: str, args: Mapping[str, Any] | None = None, timeout: float | None = None
    ) -> dict[str, Any]:
        """Run one agent command on *device* as a one-step run; return its result data.

        *timeout* is the command's own (how long it waits on the device). A
        screenshot's ``png`` comes back base64 as the agent sent it. Raises
        InvalidRun (unknown command, bad argument, unknown device, a kind that
        lacks the command) before anything is written, CommandFailed when it
        failed on the device or no host took it in time.
        """
        values = dict(args or {})
        if timeout is not None:
            values["timeout"] = timeout
        validated = validate_command(name, values)
        target = await self._device(device, None, None)
        if name not in commands_for(target.kind):
            known = ", ".join(sorted(commands_for(target.kind)))
            raise InvalidRun(
                f"{target.name} is a {target.kind} device, which has no {name!r}; it has: {known}"
            )
        request = RunRequest(
            command_label(name, values),
            "",
            {DEFAULT_ROLE: target.id},
            1,
            {"command": {"name": name, "args": validated}},
        )
        (run,) = await self._runs.start([request], new_batch())
        wait = float(validated["timeout"]) + HUB_GRACE + COMMAND_QUEUE_WAIT
        try:
            (final,) = await self.wait([run.id], wait)
        except TimeoutError:
            await self._cancel_quietly(run.id)
            raise CommandFailed(
                f"{name} on {target.name}: no answer within {wait:g}s (is a Corral host running?)"
            ) from None
        except asyncio.CancelledError:
            await asyncio.shield(self._cancel_quietly(run.id))
            raise
        if final.state != "passed":
            raise CommandFailed(f"{name} on {target.name}: {final.error or final.state}")
        steps = await self.steps(run.id)
        data = dict(steps[0].data) if steps else {}
        if steps and steps[0].screenshot:
            png = await asyncio.to_thread(Path(steps[0].screenshot).read_bytes)
            data["png"] = base64.b64encode(png).decode()
        return data

    async def _cancel_quietly(self, run_id: int) -> None:
        try:
            await self._runs.cancel(run_id)
        except Exception as exc:
            log.warning("could not cancel flow run %s: %s", run_id, exc)

    # --- reading ---------------------------------------------------------------

    async def runs(self, *, batch: str | None = None, limit: int = 200) -> list[FlowRunInfo]:
        return [run_info(run) for run in await self._runs.recent(batch=batch, limit=limit)]

    async def run(self, run_id: int) -> FlowRunInfo:
        return run_info(await self._runs.get(run_id))

    async def steps(self, run_id: int) -> list[FlowStepInfo]:
        return [step_info(step, self._data_dir) for step in await self._runs.steps(run_id)]

    async def cancel(self, run_id: int) -> FlowRunInfo:
        return run_info(await self._runs.cancel(run_id))

    # --- following -------------------------------------------------------------

    def add_listener(self, listener: FlowRunsListener) -> Callable[[], None]:
        """Call *listener* with a run's snapshot whenever the run or one of its steps changed."""
        if not self._listening:
            self._listening = True
            self._database.on_notify(channel("flow_runs"), self._on_notify)
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _on_notify(self, _channel: str, payload: str) -> None:
        if not self._listeners:
            return
        if payload.isdigit():
            self._changed.add(int(payload))
        else:
            self._resync = True  # the LISTEN connection came back: anything may have changed
        if self._flush is None:
            self._flush = asyncio.create_task(self._publish(), name="flow-runs-refresh")

    async def _publish(self) -> None:
        try:
            await asyncio.sleep(_COALESCE)
            ids, self._changed = self._changed, set()
            resync, self._resync = self._resync, False
            self._flush = None
            runs = await self._runs.recent() if resync else await self._runs.many(sorted(ids))
        except Exception as exc:
            self._flush = None
            log.warning("could not read changed flow runs: %s", exc)
            return
        for run in runs:
            info = run_info(run)
            for listener in list(self._listeners):
                try:
                    listener(info)
                except Exception:
                    log.exception("flow runs listener failed")

    async def wait(self, run_ids: Sequence[int], timeout: float | None = None) -> list[FlowRunInfo]:
        """Wait until every run of *run_ids* has ended; their final snapshots in the order given.

        Raises TimeoutError after *timeout* seconds (None: no limit), UnknownRun for an unknown id.
        """
        wanted = list(run_ids)
        changed = asyncio.Event()
        unsubscribe = self.add_listener(lambda info: changed.set() if info.id in wanted else None)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    changed.clear()
                    current = {run.id: run for run in await self._runs.many(wanted)}
                    for run_id in wanted:
                        if run_id not in current:
                            await self._runs.get(run_id)  # raises UnknownRun
                    if all(current[run_id].state in ("passed", "failed", "cancelled") for run_id in wanted):
                        return [run_info(current[run_id]) for run_id in wanted]
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(changed.wait(), _POLL)
        finally:
            unsubscribe()

    async def stop(self) -> None:
        self._listeners.clear()
        if self._flush is not None:
            self._flush.cancel()
            await asyncio.gather(self._flush, return_exceptions=True)
            self._flush = None
