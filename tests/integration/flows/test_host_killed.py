"""The host SIGKILLed mid-run of 8 devices, then restarted: every run ends, no step twice.

Also: with no host running, `corral flow run` hosts until its runs end.
"""

from __future__ import annotations

import asyncio
import json
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest

from backend.corral import Corral
from tests.integration.flows import flowfiles
from tests.integration.flows.conftest import Farm, host_env, make_farm
from tests.serve import Serve, corral

pytestmark = pytest.mark.docker


@pytest.fixture(scope="module")
def farm(pg_server: object, docker_available: None) -> Iterator[Farm]:
    with make_farm(pg_server, 8) as made:
        yield made


def _ensure_host(farm: Farm) -> None:
    """Start a host again if a test stopped it (so a failed test does not fail the next ones)."""
    if farm.host.process.poll() is not None:
        farm.host = Serve(farm.settings, **host_env(farm.settings))


async def _until_waiting(client: Corral, run_ids: list[int]) -> None:
    """Until every run is at its extendedWaitUntil step (an ended run fails the test at once)."""
    async with asyncio.timeout(90):
        while True:
            runs = [await client.flow_run(run_id) for run_id in run_ids]
            ended = [(r.id, r.state, r.error) for r in runs if r.finished]
            assert not ended, ended
            if all(r.current_step.startswith("extendedWaitUntil") for r in runs):
                return
            await asyncio.sleep(0.1)


async def _steps(client: Corral, run_ids: list[int]) -> dict[int, list[tuple[int, str, str]]]:
    return {
        run_id: [(s.seq, s.command, s.state) for s in await client.flow_steps(run_id)] for run_id in run_ids
    }


async def test_sigkill_mid_run_then_restart_ends_every_run_and_records_no_step_twice(
    farm: Farm, tmp_path: Path
) -> None:
    client = await Corral.start(farm.settings, role="client", stream=False)
    try:
        flow = flowfiles.flow(tmp_path, "wait.yaml", flowfiles.WAIT_FOR_NOTHING)
        runs = await client.run_flow(flow, devices=farm.devices)
        ids = [r.id for r in runs]
        await _until_waiting(client, ids)
        farm.host.process.send_signal(signal.SIGKILL)
        farm.host.stop()
        killed = await _steps(client, ids)
        assert killed == {i: [(1, "launchApp", "passed"), (2, "extendedWaitUntil", "running")] for i in ids}
        assert [r.state for r in await client.flow_runs(batch=runs[0].batch)] == ["running"] * 8

        farm.host = Serve(farm.settings, **host_env(farm.settings))
        final = await client.wait_flow_runs(ids, timeout=60)
        assert [(r.state, r.error) for r in final] == [
            (
                "failed",
                "interrupted: the host stopped during step 2"
                ' (extendedWaitUntil visible text "This text never appears")',
            )
        ] * 8
        after = await _steps(client, ids)
        assert after == {i: [(1, "launchApp", "passed"), (2, "extendedWaitUntil", "failed")] for i in ids}
        # The jobs end as their runs did (recorded by the worker just after the handler).
        job_ids = {r.job_id for r in final}
        async with asyncio.timeout(10):
            while {j.state for j in await client.jobs() if j.id in job_ids} != {"failed"}:
                await asyncio.sleep(0.1)
        # The devices work for the next run.
        for device in farm.devices:
            assert set(await client.command(device, "ping")) == {"pong"}
    finally:
        _ensure_host(farm)
        await client.stop()


async def test_a_host_stopped_mid_run_ends_it_interrupted_before_it_exits(farm: Farm, tmp_path: Path) -> None:
    client = await Corral.start(farm.settings, role="client", stream=False)
    try:
        flow = flowfiles.flow(tmp_path, "wait.yaml", flowfiles.WAIT_FOR_NOTHING)
        (run,) = await client.run_flow(flow, devices=[farm.devices[1]])
        await _until_waiting(client, [run.id])
        assert await asyncio.to_thread(farm.host.stop) == 0  # SIGTERM: the worker's grace, then cancel
        stopped = await client.flow_run(run.id)
        assert (stopped.state, stopped.error) == (
            "failed",
            "interrupted: the host stopped during step 2"
            ' (extendedWaitUntil visible text "This text never appears")',
        )
        # The job went back to the queue (attempt undone); the next host ends it as its run ended.
        farm.host = Serve(farm.settings, **host_env(farm.settings))
        async with asyncio.timeout(30):
            while next(j.state for j in await client.jobs() if j.id == run.job_id) != "failed":
                await asyncio.sleep(0.1)
        assert [(s.command, s.state) for s in await client.flow_steps(run.id)] == [
            ("launchApp", "passed"),
            ("extendedWaitUntil", "failed"),
        ]
    finally:
        _ensure_host(farm)
        await client.stop()


async def test_device_container_killed_mid_run_fails_the_run_and_the_reconciler_recovers_it(
    farm: Farm, tmp_path: Path, docker_client: object
) -> None:
    client = await Corral.start(farm.settings, role="client", stream=False)
    try:
        device = await client.device(farm.devices[2])
        (container,) = docker_client.containers.list(filters={"label": f"corral.device={device.id}"})  # type: ignore[attr-defined]
        flow = flowfiles.flow(tmp_path, "wait.yaml", flowfiles.WAIT_FOR_NOTHING)
        (run,) = await client.run_flow(flow, devices=[device.name])
        await _until_waiting(client, [run.id])
        await asyncio.to_thread(container.kill)
        (final,) = await client.wait_flow_runs([run.id], timeout=30)
        assert final.state == "failed"
        assert final.error is not None and final.error.startswith("extendedWaitUntil"), final.error
        assert "agent disconnected" in final.error, final.error
        # The reconciler sees the dead container and provisions the device again.
        async with asyncio.timeout(180):
            while (await client.device(device.id)).state == "ready":
                await asyncio.sleep(0.1)
            while (await client.device(device.id)).state != "ready":
                await asyncio.sleep(0.2)
        assert set(await client.command(device.name, "ping")) == {"pong"}
    finally:
        _ensure_host(farm)
        await client.stop()


async def test_with_no_host_a_queued_run_cancels_at_once_and_flow_run_hosts(
    farm: Farm, tmp_path: Path
) -> None:
    farm.host.stop()
    path = flowfiles.write(tmp_path, "login.yaml", flowfiles.LOGIN)
    client = await Corral.start(farm.settings, role="client", stream=False)
    try:
        (queued,) = await client.run_flow(
            flowfiles.flow(tmp_path, "l.yaml", flowfiles.LOGIN), devices=["browser-2"]
        )
        cancelled = await client.cancel_flow_run(queued.id)
        assert (cancelled.state, cancelled.error) == ("cancelled", "cancelled before it started")
        assert next(j.state for j in await client.jobs() if j.id == queued.job_id) == "cancelled"
        assert await client.flow_steps(queued.id) == []
        result = await asyncio.to_thread(
            corral, farm.settings, "flow", "run", str(path), "--device", farm.devices[0]
        )
        pinged = await asyncio.to_thread(corral, farm.settings, "exec", farm.devices[1], "ping", "--json")
    finally:
        _ensure_host(farm)  # the farm's teardown needs a host again
        await client.stop()
    assert pinged.returncode == 0, pinged.stderr
    assert set(json.loads(pinged.stdout)) == {"pong"}
    assert pinged.stderr.strip().splitlines()[-1] == (
        "no Corral host is running, so this command is the host until its command has ended"
    )
    assert result.returncode == 0, result.stdout + result.stderr
    assert result.stdout.splitlines()[0] == (
        "no Corral host is running, so this command is the host until its runs have ended"
        " (Ctrl-C cancels them)"
    )
    assert result.stdout.splitlines()[-1] == "1 run: 1 passed"
