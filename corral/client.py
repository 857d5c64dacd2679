"""The client: :func:`connect`, :class:`Client`, :class:`DeviceHandle` and typed run results."""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import AsyncIterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Literal

from backend.api import (
    Corral,
    DeviceInfo,
    Flow,
    FlowRunInfo,
    FlowStepInfo,
    InvalidRun,
    Settings,
    load_flow,
)

__all__ = ["Client", "DeviceHandle", "RunResult", "StepResult", "connect"]


@dataclass(frozen=True, slots=True)
class StepResult:
    """One step of a finished run."""

    seq: int
    """Order in which the step started (1-based, across roles)."""
    role: str
    index: int
    """The role's top-level step number: the "n" of "n/m"."""
    label: str
    """What the step did, as a person reads it: ``tapOn text "Log in"``."""
    command: str
    state: Literal["passed", "failed", "skipped", "running"]
    error: str | None
    duration: float
    """Seconds (0 for a step that never finished)."""
    screenshot: Path | None
    """The step's screenshot (PNG), if it took one."""
    data: Mapping[str, Any]
    """The command's result (text read, a script's value…), without images."""
    file: str
    line: int | None


@dataclass(frozen=True, slots=True)
class RunResult:
    """A finished flow run on one device (or one set of role devices)."""

    id: int
    flow: str
    device: str
    """The device's name; ``role=name …`` for a flow with roles."""
    devices: Mapping[str, str]
    """Role -> device name."""
    state: Literal["passed", "failed", "cancelled"]
    error: str | None
    """For a failed run: ``<step>: <reason>`` of the step that failed."""
    failed_role: str | None
    steps: Sequence[StepResult]
    seconds: float

    @property
    def passed(self) -> bool:
        return self.state == "passed"


class DeviceHandle:
    """One device, by name or id; get it from :meth:`Client.device`."""

    def __init__(self, corral: Corral, ref: str) -> None:
        self._corral = corral
        self.ref = ref

    async def info(self) -> DeviceInfo:
        return await self._corral.device(self.ref)

    async def command(self, name: str, *, timeout: float | None = None, **args: Any) -> dict[str, Any]:
        """Run agent command *name* (``open_url``, ``tap``, ``read_qr``…) and return its result.

        *args* are the command's fields (``url="…"``, ``target={"text": "Log in"}``);
        *timeout* is how long the command may wait on the device (default 10 s).
        A screenshot's image comes back base64 in ``png``. Raises InvalidRun for
        an unknown command or bad argument, CommandFailed when it failed on the device.
        """
        return await self._corral.command(self.ref, name, args, timeout)


class Client:
    """A connection to Corral; made by :func:`connect`. :attr:`corral` is the full backend API."""

    def __init__(self, corral: Corral) -> None:
        self.corral = corral

    @property
    def is_host(self) -> bool:
        """True when no other Corral process runs, so this one carries out the runs itself."""
        return self.corral.is_host

    async def devices(self) -> list[DeviceInfo]:
        """Every device that has not been removed."""
        return await self.corral.devices()

    def device(self, ref: str) -> DeviceHandle:
        """The device named (or with id) *ref*; nothing is checked until it is used."""
        return DeviceHandle(self.corral, ref)

    async def load(self, path: str | Path, env: Mapping[str, str] | None = None) -> Flow:
        """Read and check a flow file (and its runFlow files). Raises FlowError listing every problem."""
        return await asyncio.to_thread(load_flow, path, dict(env or {}))

    async def start_flow(
        self,
        flow: str | Path | Flow,
        *,
        devices: Sequence[str] = (),
        roles: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
    ) -> list[FlowRunInfo]:
        """Start *flow* and return at once (see :meth:`run_flow` for the arguments)."""
        if isinstance(flow, Flow):
            if env:
                flow = await asyncio.to_thread(_with_env, flow, env)
        else:
            flow = await self.load(flow, env)
        return await self.corral.run_flow(flow, devices=devices, roles=roles)

    async def run_flow(
        self,
        flow: str | Path | Flow,
        *,
        devices: Sequence[str] = (),
        roles: Mapping[str, str] | None = None,
        env: Mapping[str, str] | None = None,
        timeout: float | None = None,
    ) -> list[RunResult]:
        """Run *flow* (a file, or a loaded :class:`Flow`) and wait for the results.

        One run per device of *devices* (names or ids), or, for a flow that
        declares roles, one run on the *roles* devices (role -> device). *env*
        sets flow variables (as ``--env``). Returns one result per run, in the
        order of *devices*. Raises FlowError (the file), InvalidRun (devices or
        roles that do not fit), TimeoutError after *timeout* seconds (the runs
        are cancelled then; cancelling this call cancels them too).
        """
        started = await self.start_flow(flow, devices=devices, roles=roles, env=env)
        ids = [run.id for run in started]
        try:
            finished = await self.corral.wait_flow_runs(ids, timeout)
        except (TimeoutError, asyncio.CancelledError):
            await asyncio.shield(self._cancel(ids))
            raise
        names = {device.id: device.name for device in await self.corral.devices()}
        return [await self._result(run, names) for run in finished]

    async def _cancel(self, run_ids: Sequence[int]) -> None:
        for run_id in run_ids:
            with contextlib.suppress(Exception):
                await self.corral.cancel_flow_run(run_id)
        with contextlib.suppress(Exception):
            await self.corral.wait_flow_runs(run_ids, 30)

    async def _result(self, run: FlowRunInfo, names: Mapping[str, str]) -> RunResult:
        devices = {role: names.get(device, device) for role, device in run.devices.items()}
        steps = await self.corral.flow_steps(run.id)
        seconds = (
            (run.finished_at - run.started_at).total_seconds() if run.started_at and run.finished_at else 0.0
        )
        return RunResult(
            id=run.id,
            flow=run.name,
            device=devices["device"] if list(devices) == ["device"] else _roles_text(devices),
            devices=devices,
            state=run.state,  # type: ignore[arg-type]  # a finished run's state
            error=run.error,
            failed_role=run.failed_role,
            steps=[_step(step) for step in steps],
            seconds=seconds,
        )


def _roles_text(devices: Mapping[str, str]) -> str:
    return " ".join(f"{role}={name}" for role, name in devices.items())


def _step(step: FlowStepInfo) -> StepResult:
    return StepResult(
        seq=step.seq,
        role=step.role,
        index=step.index,
        label=step.label,
        command=step.command,
        state=step.state,  # type: ignore[arg-type]  # one of FLOW_STEP_STATES
        error=step.error,
        duration=step.duration or 0.0,
        screenshot=Path(step.screenshot) if step.screenshot else None,
        data=step.data,
        file=step.file,
        line=step.line,
    )


def _with_env(flow: Flow, env: Mapping[str, str]) -> Flow:
    from backend.api import parse_flow

    if not flow.main or flow.main not in flow.sources:
        raise InvalidRun(f"flow {flow.name!r} carries no sources to apply env to")
    return parse_flow(flow.sources[flow.main], flow.main, {**flow.env, **env})


@contextlib.asynccontextmanager
async def connect(
    settings: Settings | None = None, *, role: Literal["auto", "client"] = "auto"
) -> AsyncIterator[Client]:
    """``async with corral.connect() as c``: a :class:`Client` on this machine's Corral.

    *settings* default to the environment (``CORRAL_DATA_DIR``,
    ``CORRAL_DATABASE_URL``…), as for the ``corral`` command. With *role*
    ``auto`` (the default) this process hosts the runs when no Corral host is
    running; ``client`` never hosts (runs then wait for a host). Raises
    CorralError when the database cannot be reached.
    """
    instance = await Corral.start(settings or Settings(), role=role, stream=False)
    try:
        yield Client(instance)
    finally:
        await instance.stop()
