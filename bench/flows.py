"""Flow steps on real browser devices: step latency, and one flow on 1, 4 and 8 devices at once.

Step latency (measured last, once the devices have settled): a flow taps the test page's "Count" button and asserts the page's
answer ("Clicked N") PAIRS times; one sample is the tap step plus the assert step
as the backend recorded them (command sent through the hub, the agent acts,
the page reacts, the result comes back, the step's row is written). p50/p99.

Fan-out: a 10-step flow (tap, type, assert on click.html) started at once on 1,
4 and 8 devices; wall time from ``run_flow`` to the last run's end, and its
ratio to 1 device (1.0 would be perfect parallelism; the box has 2 cores, and
the job worker runs ``job_concurrency`` flows at a time).

Targets: step p99 <= 0.5 s; 8 devices <= 4x the wall time of 1. Exits 1 when
one is missed or a run fails (see bench/report.py).
Run: .venv/bin/python bench/flows.py [--pairs 200] [--devices 8] [--json PATH]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from backend.api import Corral, Flow, Settings, parse_flow
from bench.report import Report

PAGE = "file:///opt/corral/start/test/click.html"
STEP_P99_TARGET = 0.5
FAN_OUT_RATIO_TARGET = 4.0


class RunFailed(Exception):
    """A run of the benchmark did not pass."""


def _latency_flow(pairs: int) -> Flow:
    lines = [f"url: {PAGE}", "name: bench-latency", "---", "- launchApp"]
    for n in range(1, pairs + 1):
        lines += ["- tapOn:", "    id: count", f'- assertVisible: "Clicked {n}"']
    return parse_flow("\n".join(lines) + "\n", "bench-latency.yaml")


TEN_STEPS = f"""\
url: {PAGE}
name: bench-ten-steps
---
- launchApp
- tapOn:
    id: count
- assertVisible: Clicked 1
- tapOn:
    id: count
- assertVisible: Clicked 2
- tapOn:
    id: field
- inputText: hello
- assertVisible: "Echo: hello"
- tapOn: Show later
- assertVisible: Here now
"""


async def _run(corral: Corral, flow: Flow, devices: list[str]) -> tuple[float, list[int]]:
    start = time.perf_counter()
    runs = await corral.run_flow(flow, devices=devices)
    final = await corral.wait_flow_runs([r.id for r in runs], timeout=600)
    elapsed = time.perf_counter() - start
    failed = [f"{r.id}: {r.error}" for r in final if r.state != "passed"]
    if failed:
        raise RunFailed(f"{flow.name} failed: {'; '.join(failed)}")
    return elapsed, [r.id for r in final]


async def main(pairs: int, most: int, report: Report) -> None:
    data = Path(tempfile.mkdtemp(prefix="corral-bench-"))
    os.chmod(data, 0o755)
    run = Path(tempfile.mkdtemp(prefix="crb-", dir="/tmp"))
    settings = Settings(data_dir=data, runtime_dir=run, device_network="none", job_concurrency=max(8, most))
    corral = await Corral.start(settings, role="host", stream=False)
    try:
        print(f"provisioning {most} devices ...", flush=True)
        created = await corral.provision("browser", most)
        ids = [d.id for d in created]
        final = await corral.wait_for(ids, {"ready"}, timeout=600)
        if any(d.state != "ready" for d in final):
            raise RunFailed(f"devices did not come up: {[d.reason for d in final]}")
        names = [d.name for d in final]
        # "ready" means the agent said hello; its browser may still be starting on a busy box.
        await asyncio.gather(
            *(corral.command(name, "open_url", {"url": PAGE}, timeout=120) for name in names)
        )

        ten = parse_flow(TEN_STEPS, "bench-ten-steps.yaml")
        await _run(corral, ten, names[:1])  # warm: every device's page cache and agent
        walls: dict[int, float] = {}
        for count in sorted({1, min(4, most), most}):
            walls[count], _ = await _run(corral, ten, names[:count])
            report.figure(
                f"ten_steps_{count}_s",
                walls[count],
                "s",
                label=f"10-step flow on {count} device(s) at once, wall",
            )
        for count in sorted(walls):
            if count > 1:
                report.ratio(
                    f"ten_steps_{count}_vs_1",
                    walls[count],
                    walls[1],
                    target=FAN_OUT_RATIO_TARGET if count == most else None,
                    label=f"wall time, {count} devices / 1 device",
                )
        _, (latency_run,) = await _run(corral, _latency_flow(pairs), names[:1])
        steps = await corral.flow_steps(latency_run)
        durations = {s.seq: s.duration or 0.0 for s in steps}
        samples = sorted(durations[2 * n] + durations[2 * n + 1] for n in range(1, pairs + 1))
        p50 = statistics.median(samples)
        p99 = samples[min(len(samples) - 1, round(0.99 * (len(samples) - 1)))]
        report.figure(
            "step_click_p50_s", p50, "s", label=f"tap -> page reacted (tap + assert steps), p50 of {pairs}"
        )
        report.figure(
            "step_click_p99_s",
            p99,
            "s",
            target=STEP_P99_TARGET,
            label=f"tap -> page reacted (tap + assert steps), p99 of {pairs}",
        )
        report.detail("step_samples_s", samples)

    finally:
        ids = [d.id for d in await corral.devices()]
        if ids:
            await corral.remove(ids)
            await corral.wait_for(ids, {"removed"}, timeout=120)
        await corral.stop()
        shutil.rmtree(run, ignore_errors=True)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--pairs", type=int, default=200)
    parser.add_argument("--devices", type=int, default=8)
    parser.add_argument("--json", help="write the figures here as JSON")
    args = parser.parse_args()
    report = Report("flows")
    try:
        asyncio.run(main(args.pairs, args.devices, report))
    except RunFailed as exc:
        report.error(str(exc))
    sys.exit(report.finish(args.json))
