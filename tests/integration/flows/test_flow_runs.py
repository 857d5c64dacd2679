"""Flow runs on real browser devices: recording, timeouts, cancel, an agent killed mid-step."""

from __future__ import annotations

import asyncio
import stat
from pathlib import Path

import pytest

from backend.api import load_flow
from backend.corral import Corral
from backend.flows.runs_errors import InvalidRun
from tests.integration.flows import flowfiles
from tests.integration.flows.conftest import Farm

pytestmark = pytest.mark.docker


async def _until(condition, timeout: float = 30.0, every: float = 0.05):  # type: ignore[no-untyped-def]
    async with asyncio.timeout(timeout):
        while not (result := await condition()):
            await asyncio.sleep(every)
    return result


async def test_a_flow_on_two_devices_passes_and_records_every_step(
    farm: Farm, client: Corral, tmp_path: Path
) -> None:
    flow = flowfiles.flow(tmp_path, "login.yaml", flowfiles.LOGIN, {"USER": "bob"})
    runs = await client.run_flow(flow, devices=farm.devices)
    assert [r.state for r in runs] == ["queued", "queued"]
    assert len({r.batch for r in runs}) == 1
    final = await client.wait_flow_runs([r.id for r in runs], timeout=120)
    assert [(r.state, r.error, r.steps_done, r.steps_total) for r in final] == [("passed", None, 8, 8)] * 2
    assert [r.state for r in await client.flow_runs(batch=runs[0].batch)] == ["passed", "passed"]
    for run in final:
        steps = await client.flow_steps(run.id)
        assert [(s.seq, s.index, s.command, s.state) for s in steps] == [
            (1, 1, "launchApp", "passed"),
            (2, 2, "tapOn", "passed"),
            (3, 3, "inputText", "passed"),
            (4, 4, "tapOn", "passed"),
            (5, 5, "inputText", "passed"),
            (6, 6, "tapOn", "passed"),
            (7, 7, "assertVisible", "passed"),
            (8, 8, "takeScreenshot", "passed"),
        ]
        assert [s.line for s in steps] == [6, 7, 9, 10, 12, 13, 14, 15]
        assert all(s.duration is not None and s.error is None for s in steps)
        shot = steps[-1].screenshot
        assert shot is not None
        assert shot == str(farm.settings.data_dir / "flows" / str(run.id) / "8-takeScreenshot.png")
        assert Path(shot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert stat.S_IMODE(Path(shot).stat().st_mode) == 0o600
        assert stat.S_IMODE(Path(shot).parent.stat().st_mode) == 0o700
        assert "png" not in steps[-1].data


async def test_a_step_that_times_out_fails_that_device_while_the_other_passes(
    farm: Farm, client: Corral, tmp_path: Path
) -> None:
    first, second = farm.devices
    await client.command(first, "open_url", {"url": f"{flowfiles.PAGES}/login.html"})
    await client.command(second, "open_url", {"url": f"{flowfiles.PAGES}/click.html"})
    flow = flowfiles.flow(tmp_path, "assert.yaml", flowfiles.ASSERT_SIGN_IN)
    runs = await client.run_flow(flow, devices=[first, second])
    passed, failed = await client.wait_flow_runs([r.id for r in runs], timeout=60)
    assert (passed.state, passed.error) == ("passed", None)
    assert failed.state == "failed"
    assert failed.error is not None and failed.error.startswith('assertVisible text "Sign in": ')
    assert failed.error.endswith("within 2s"), failed.error  # the flow's timeout: 2000 ms
    (step,) = await client.flow_steps(failed.id)
    assert (step.state, step.index) == ("failed", 1)
    assert step.error is not None and failed.error.endswith(step.error)


async def test_cancel_mid_run_ends_it_cancelled_and_the_device_stays_usable(
    farm: Farm, client: Corral, tmp_path: Path
) -> None:
    flow = flowfiles.flow(tmp_path, "wait.yaml", flowfiles.WAIT_FOR_NOTHING)
    (run,) = await client.run_flow(flow, devices=[farm.devices[0]])

    async def waiting() -> bool:
        return (await client.flow_run(run.id)).current_step.startswith("extendedWaitUntil")

    await _until(waiting, timeout=60)
    await client.cancel_flow_run(run.id)
    started = asyncio.get_running_loop().time()
    (final,) = await client.wait_flow_runs([run.id], timeout=30)
    assert final.state == "cancelled"
    assert asyncio.get_running_loop().time() - started < 10
    steps = await client.flow_steps(run.id)
    assert [(s.command, s.state, s.error) for s in steps] == [
        ("launchApp", "passed", None),
        ("extendedWaitUntil", "failed", "cancelled"),
    ]

    async def job_state() -> str | None:
        # The worker records the job's end just after the handler ended the run.
        job = next(j for j in await client.jobs() if j.id == final.job_id)
        return job.state if job.state not in ("queued", "running") else None

    assert await _until(job_state, timeout=10) == "cancelled"
    assert set(await client.command(farm.devices[0], "ping")) == {"pong"}


async def test_run_requests_that_do_not_fit_are_refused_before_anything_is_written(
    farm: Farm, client: Corral, tmp_path: Path
) -> None:
    flow = flowfiles.flow(tmp_path, "login.yaml", flowfiles.LOGIN)
    before = await client.flow_runs()
    with pytest.raises(InvalidRun, match=r"^no devices chosen to run the flow on$"):
        await client.run_flow(flow)
    with pytest.raises(InvalidRun, match="no device with id or name 'browser-99'"):
        await client.run_flow(flow, devices=[farm.devices[0], "browser-99"])
    with pytest.raises(
        InvalidRun, match=r"^flow 'login-check' declares no roles; choose its devices instead$"
    ):
        await client.run_flow(flow, roles={"viewer": farm.devices[0]})
    assert await client.flow_runs() == before


_KILL_AGENT = (
    "for p in /proc/[0-9]*; do"
    " if tr '\\0' ' ' < $p/cmdline 2>/dev/null | grep -q '^/opt/corral/venv/bin/python -m agent'; then"
    " kill -9 ${p#/proc/}; echo killed; fi; done"
)


async def test_agent_killed_mid_step_fails_the_step_and_the_next_run_passes(
    farm: Farm, client: Corral, tmp_path: Path, docker_client: object
) -> None:
    device = await client.device(farm.devices[0])
    (container,) = docker_client.containers.list(filters={"label": f"corral.device={device.id}"})  # type: ignore[attr-defined]
    flow = flowfiles.flow(tmp_path, "wait.yaml", flowfiles.WAIT_FOR_NOTHING)
    (run,) = await client.run_flow(flow, devices=[device.name])

    async def waiting() -> bool:
        return (await client.flow_run(run.id)).current_step.startswith("extendedWaitUntil")

    await _until(waiting, timeout=60)
    killed = await asyncio.to_thread(container.exec_run, ["sh", "-c", _KILL_AGENT])
    assert killed.output.decode().split() == ["killed"], killed.output
    started = asyncio.get_running_loop().time()
    (final,) = await client.wait_flow_runs([run.id], timeout=30)
    # Well within the step's own 60 s: the hub fails a command as soon as its connection ends.
    assert asyncio.get_running_loop().time() - started < 10
    assert final.state == "failed"
    assert final.error is not None and final.error.startswith("extendedWaitUntil"), final.error
    assert "agent disconnected" in final.error
    steps = await client.flow_steps(run.id)
    assert [(s.command, s.state) for s in steps] == [("launchApp", "passed"), ("extendedWaitUntil", "failed")]
    assert steps[1].error is not None and steps[1].error.startswith("agent disconnected")
    # The agent comes back; the next run waits for its hello and passes.
    login = flowfiles.flow(tmp_path, "login.yaml", flowfiles.LOGIN)
    (again,) = await client.run_flow(login, devices=[device.name])
    (done,) = await client.wait_flow_runs([again.id], timeout=120)
    assert (done.state, done.error) == ("passed", None)


async def test_the_shipped_examples_pass_on_real_devices(farm: Farm, client: Corral) -> None:
    examples = Path(__file__).resolve().parents[3] / "examples" / "flows"
    first, second = farm.devices
    login = await asyncio.to_thread(load_flow, examples / "login-check.yaml", {"USER": "erin"})
    pair = await asyncio.to_thread(load_flow, examples / "pair.yaml", {})
    # One after the other: both use the first device.
    (login_run,) = await client.run_flow(login, devices=[first])
    (login_done,) = await client.wait_flow_runs([login_run.id], timeout=180)
    (pair_run,) = await client.run_flow(pair, roles={"viewer": first, "scanner": second})
    ids = {name: (await client.device(name)).id for name in farm.devices}
    assert pair_run.devices == {"viewer": ids[first], "scanner": ids[second]}
    (pair_done,) = await client.wait_flow_runs([pair_run.id], timeout=180)
    assert [(r.name, r.state, r.error) for r in (login_done, pair_done)] == [
        ("Login check", "passed", None),
        ("Pair by QR code", "passed", None),
    ]
    steps = await client.flow_steps(pair_run.id)
    assert sorted((s.role, s.index, s.command, s.state) for s in steps) == [
        ("scanner", 1, "readQr", "passed"),
        ("scanner", 2, "openLink", "passed"),
        ("scanner", 3, "assertVisible", "passed"),
        ("scanner", 4, "takeScreenshot", "passed"),
        ("viewer", 1, "openLink", "passed"),
    ]
    assert {s.role: s.device_id for s in steps} == {"viewer": ids[first], "scanner": ids[second]}
    (qr,) = [s for s in steps if s.command == "readQr"]
    assert qr.data["text"].startswith("file:///opt/corral/start/test/"), qr.data


async def test_flows_in_maestros_syntax_run_unchanged_on_a_real_device(farm: Farm, client: Corral) -> None:
    """The compatibility fixtures (written from Maestro's documentation only) pass on a browser device."""
    fixtures = Path(__file__).resolve().parents[2] / "fixtures" / "maestro"
    device = farm.devices[0]
    outcomes = []
    for name in ("login.yaml", "scrolling.yaml", "control.yaml"):
        flow = await asyncio.to_thread(load_flow, fixtures / name, {})
        # One after the other: they share the device.
        (run,) = await client.run_flow(flow, devices=[device])
        (done,) = await client.wait_flow_runs([run.id], timeout=240)
        steps = await client.flow_steps(run.id)
        failed = [(s.label, s.error) for s in steps if s.state == "failed"]
        outcomes.append((name, done.state, done.error, failed))
    assert outcomes == [
        ("login.yaml", "passed", None, []),
        ("scrolling.yaml", "passed", None, []),
        ("control.yaml", "passed", None, []),
    ]


async def test_a_device_runs_one_run_at_a_time_whoever_started_it(
    farm: Farm, client: Corral, tmp_path: Path
) -> None:
    """Runs of separate requests on one device wait for each other (two flows on a page break both)."""
    device = farm.devices[0]
    holder = flowfiles.flow(tmp_path, "wait.yaml", flowfiles.WAIT_FOR_NOTHING)
    login = flowfiles.flow(tmp_path, "login.yaml", flowfiles.LOGIN, {"USER": "dana"})
    (first,) = await client.run_flow(holder, devices=[device])

    async def holding() -> bool:
        return (await client.flow_run(first.id)).current_step.startswith("extendedWaitUntil")

    await _until(holding, timeout=60)
    (second,) = await client.run_flow(login, devices=[device])
    (third,) = await client.run_flow(login, devices=[device])

    async def waiting(run_id: int) -> bool:
        job_id = (await client.flow_run(run_id)).job_id
        jobs = {job.id: job for job in await client.jobs()}
        return jobs[job_id].progress_message.startswith("waiting: device ")

    await _until(lambda: waiting(second.id), timeout=30)
    await _until(lambda: waiting(third.id), timeout=30)
    assert [(await client.flow_run(r.id)).state for r in (second, third)] == ["queued", "queued"]
    assert await client.flow_steps(second.id) == []
    # A waiting run can be cancelled; it never touches the device.
    await client.cancel_flow_run(third.id)
    (third_done,) = await client.wait_flow_runs([third.id], timeout=30)
    assert (third_done.state, await client.flow_steps(third.id)) == ("cancelled", [])
    await client.cancel_flow_run(first.id)
    first_done, second_done = await client.wait_flow_runs([first.id, second.id], timeout=120)
    assert (first_done.state, second_done.state, second_done.error) == ("cancelled", "passed", None)
    assert first_done.finished_at is not None and second_done.started_at is not None
    assert second_done.started_at >= first_done.finished_at
