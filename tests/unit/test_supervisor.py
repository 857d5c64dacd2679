"""The supervisor: a failing task is recorded and restarted, stop() ends everything, run_steps runs all."""

from __future__ import annotations

import asyncio

import pytest

from backend.exceptions import CorralError
from backend.supervisor import Supervisor, run_steps


async def _until(condition: object, timeout: float = 5.0) -> None:
    async with asyncio.timeout(timeout):
        while not condition():  # type: ignore[operator]
            await asyncio.sleep(0.005)


async def test_a_failing_periodic_body_is_recorded_retried_and_recovers() -> None:
    supervisor = Supervisor()
    gate = asyncio.Event()
    calls = 0

    async def body() -> None:
        nonlocal calls
        calls += 1
        if not gate.is_set():
            raise ValueError("boom")

    supervisor.every("loop", 3600, body)
    try:
        await _until(lambda: supervisor.state("loop").status == "failing")  # type: ignore[union-attr]
        state = supervisor.state("loop")
        assert state is not None
        assert (state.failures, state.last_error) == (1, "ValueError: boom")
        gate.set()
        await _until(lambda: supervisor.state("loop").last_ok_at is not None)  # type: ignore[union-attr]
        state = supervisor.state("loop")
        assert state is not None
        assert state.status == "running"
        assert state.failures >= 1  # the history stays visible
        assert state.describe().startswith("loop: running (")
    finally:
        await supervisor.stop_all()
    assert supervisor.state("loop").status == "stopped"  # type: ignore[union-attr]


async def test_a_spawned_task_is_restarted_after_it_raises() -> None:
    supervisor = Supervisor()
    runs = 0

    async def run() -> None:
        nonlocal runs
        runs += 1
        if runs < 3:
            raise CorralError("not yet")

    supervisor.spawn("once", run)
    await _until(lambda: supervisor.state("once").status == "finished")  # type: ignore[union-attr]
    state = supervisor.state("once")
    assert state is not None
    assert (runs, state.failures, state.last_error) == (3, 2, "CorralError: not yet")
    await supervisor.stop_all()


async def test_stop_all_cancels_every_task_and_names_them() -> None:
    supervisor = Supervisor()
    supervisor.spawn("a", asyncio.Event().wait)
    supervisor.spawn("b", asyncio.Event().wait)
    names = {task.get_name() for task in asyncio.all_tasks()}
    assert {"a", "b"} <= names
    with pytest.raises(RuntimeError, match="already running"):
        supervisor.spawn("a", asyncio.Event().wait)
    await supervisor.stop_all()
    assert [(s.name, s.status) for s in supervisor.states()] == [("a", "stopped"), ("b", "stopped")]
    assert [t for t in asyncio.all_tasks() if t is not asyncio.current_task()] == []


async def test_run_steps_runs_every_step_and_raises_the_first_failure() -> None:
    ran: list[str] = []

    def step(name: str, fail: bool = False):  # type: ignore[no-untyped-def]
        async def run() -> None:
            ran.append(name)
            if fail:
                raise RuntimeError(name)

        return name, run

    with pytest.raises(RuntimeError, match=r"^second$"):
        await run_steps("test", [step("first"), step("second", True), step("third", True), step("fourth")])
    assert ran == ["first", "second", "third", "fourth"]
