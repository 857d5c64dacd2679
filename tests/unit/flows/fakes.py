"""A fake executor and a recording observer for the interpreter's unit tests."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping
from typing import Any

from backend.flows import Call, StepEvent

Handler = Callable[[Call], Awaitable[dict[str, Any]]]


class Devices:
    """The executor: records every call; ``results``/``errors`` by wire name; ``gates`` hold a call.

    ``gates[(role, name)]`` is an Event the call waits for before answering;
    ``entered[(role, name)]`` is set when such a call has arrived.
    """

    def __init__(
        self,
        results: Mapping[str, dict[str, Any]] | None = None,
        errors: Mapping[str, str] | None = None,
    ) -> None:
        self.calls: list[Call] = []
        self.results = dict(results or {})
        self.errors = dict(errors or {})
        self.gates: dict[tuple[str, str], asyncio.Event] = {}
        self.entered: dict[tuple[str, str], asyncio.Event] = {}
        self.handler: Handler | None = None

    def gate(self, role: str, name: str) -> tuple[asyncio.Event, asyncio.Event]:
        """(entered, release) for calls of *name* on *role*."""
        self.gates[(role, name)] = asyncio.Event()
        self.entered[(role, name)] = asyncio.Event()
        return self.entered[(role, name)], self.gates[(role, name)]

    async def __call__(self, call: Call) -> dict[str, Any]:
        self.calls.append(call)
        key = (call.role, call.command.name)
        if key in self.entered:
            self.entered[key].set()
        if key in self.gates:
            await self.gates[key].wait()
        if self.handler is not None:
            return await self.handler(call)
        if call.command.name in self.errors:
            raise RuntimeError(self.errors[call.command.name])
        return dict(self.results.get(call.command.name, {}))

    def names(self, role: str | None = None) -> list[str]:
        return [call.command.name for call in self.calls if role is None or call.role == role]


class Steps:
    """The observer: ``log`` holds ("start", seq, role, index, label) and ("end", seq, outcome, error)."""

    def __init__(self) -> None:
        self.log: list[tuple[Any, ...]] = []
        self.events: list[StepEvent] = []
        self.data: dict[int, Mapping[str, Any]] = {}
        self.durations: dict[int, float] = {}

    async def step_started(self, step: StepEvent) -> None:
        self.events.append(step)
        self.log.append(("start", step.seq, step.role, step.index, step.label))

    async def step_finished(
        self,
        step: StepEvent,
        outcome: str,
        *,
        error: str | None,
        data: Mapping[str, Any],
        duration: float,
    ) -> None:
        self.log.append(("end", step.seq, outcome, error))
        self.data[step.seq] = data
        self.durations[step.seq] = duration

    def results(self) -> list[tuple[str, str, str | None]]:
        """(label, outcome, error) per finished step, in finishing order."""
        labels = {event.seq: event.label for event in self.events}
        return [(labels[entry[1]], entry[2], entry[3]) for entry in self.log if entry[0] == "end"]
