"""Provision-to-ready for 1 device and for 4 at once (image cached).

"Ready" here is what the operator sees: the device row is ``ready`` (agent said
hello, VNC answers) *and* a first framebuffer update came through the stream
proxy, as a pane would get it. Baseline, in the same process: the bare container
start (runtime create -> VNC greeting on its socket) without Corral's database,
jobs, hub or proxy. Prints medians and the ratio to that baseline.

Targets on the 2-core box: 1 device <= 2 s median, 4 at once <= 5 s; exits 1 when
one is missed (see bench/report.py). Quick run: ``--rounds 1``.
Run: .venv/bin/python bench/provision.py [--rounds 5] [--json PATH]
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

from backend.config import Settings
from backend.corral import Corral
from backend.devices.probe import vnc_answers
from backend.devices.store import new_device_id
from backend.runtime.base import DeviceSpec
from backend.runtime.docker import DockerRuntime
from bench.report import Report
from tests.rfb import first_update


class ProvisionFailed(Exception):
    """A device of a round did not become ready."""


async def _corral_round(corral: Corral, count: int) -> float:
    start = time.perf_counter()
    devices = await corral.provision("browser", count)
    ids = [d.id for d in devices]
    final = await corral.wait_for(ids, {"ready"}, timeout=120)
    if any(d.state != "ready" for d in final):
        raise ProvisionFailed(f"provisioning failed: {[d.reason for d in final]}")
    await asyncio.gather(*(first_update(corral.pane_url(i)) for i in ids))
    elapsed = time.perf_counter() - start
    await corral.remove(ids)
    await corral.wait_for(ids, {"removed"}, timeout=60)
    return elapsed


async def _bare_round(runtime: DockerRuntime, settings: Settings, count: int) -> float:
    ids = [new_device_id() for _ in range(count)]
    for device_id in ids:
        path = settings.device_dir(device_id)
        path.mkdir(parents=True, mode=0o700)
        os.chown(path, settings.effective_device_uid, settings.effective_device_uid)
    start = time.perf_counter()

    async def one(device_id: str) -> None:
        await runtime.create(
            DeviceSpec(device_id, f"bare-{device_id}", "browser", settings.device_dir(device_id), {})
        )
        deadline = time.monotonic() + 60
        while not await vnc_answers(settings.device_dir(device_id) / "vnc.sock"):
            if time.monotonic() > deadline:
                raise TimeoutError(f"bare container {device_id}: no VNC answer within 60 s")
            await asyncio.sleep(0.02)

    await asyncio.gather(*(one(i) for i in ids))
    elapsed = time.perf_counter() - start
    await asyncio.gather(*(runtime.remove(i) for i in ids))
    for device_id in ids:
        shutil.rmtree(settings.device_dir(device_id), ignore_errors=True)
    return elapsed


TARGETS = {1: 2.0, 4: 5.0}
"""Seconds, median provision-to-first-frame, by devices provisioned at once."""


async def main(rounds: int, report: Report) -> None:
    data = Path(tempfile.mkdtemp(prefix="corral-bench-"))
    os.chmod(data, 0o755)
    run = Path(tempfile.mkdtemp(prefix="crb-", dir="/tmp"))
    settings = Settings(data_dir=data, runtime_dir=run, device_network="none")
    corral = await Corral.start(settings, role="host")
    try:
        print("warming up (builds the image if needed) ...", flush=True)
        await corral.runtime.ensure_image("browser")
        await _corral_round(corral, 1)
        for count in (1, 4):
            ours = [await _corral_round(corral, count) for _ in range(rounds)]
            runtime = corral.runtime
            assert isinstance(runtime, DockerRuntime)
            bare = [await _bare_round(runtime, settings, count) for _ in range(rounds)]
            ours_median, bare_median = statistics.median(ours), statistics.median(bare)
            report.figure(
                f"provision_{count}_s",
                ours_median,
                "s",
                target=TARGETS[count],
                label=f"provision-to-first-frame, {count} device(s), median of {rounds} "
                f"(min {min(ours):.2f}, max {max(ours):.2f})",
            )
            report.figure(
                f"bare_{count}_s",
                bare_median,
                "s",
                label=f"bare container-to-VNC baseline, {count} device(s)",
            )
            report.ratio(
                f"provision_{count}_vs_bare",
                ours_median,
                bare_median,
                label=f"ratio provision / bare, {count} device(s)",
            )
            report.detail(f"rounds_{count}", {"corral": ours, "bare": bare})
    finally:
        await corral.stop()
        shutil.rmtree(run, ignore_errors=True)
        shutil.rmtree(data, ignore_errors=True)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--json", help="write the figures here as JSON")
    args = parser.parse_args()
    report = Report("provision")
    try:
        asyncio.run(main(args.rounds, report))
    except ProvisionFailed as exc:
        report.error(str(exc))
    sys.exit(report.finish(args.json))
