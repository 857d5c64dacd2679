"""Device runtime figures: image build and cache check, container start, idle memory.

Measures, with the DockerRuntime alone (no database, hub or proxy):

- cold build (``--cold``): base image bootstrapped with debootstrap (or pulled),
  wheels downloaded, every layer built. Uses a throw-away image prefix
  (``corral-bench``) and data dir so the shared ``corral/*`` images and layer
  cache are not touched, and removes those images afterwards;
- cached ``ensure_image``: median of several calls on an up-to-date image;
- image size;
- ``create()`` -> first RFB greeting on the device's ``vnc.sock``: one device
  (median of ``--rounds``), and ``--devices`` created at once with asyncio.gather
  (median over rounds of the time until the last one answers); prints the ratio;
- idle memory per container (cgroup usage minus page cache) after ``--settle`` s.

Devices use ``network_mode none``. Targets (set from quiet runs on the 2-core box,
with room for a busy one): create -> greeting 1 device <= 1 s, 4 at once <= 2.5 s,
cached ``ensure_image`` <= 250 ms, idle memory <= 300 MiB per container, ``docker
stop`` of an idle device <= 3 s. Exits 1 when one is missed (see bench/report.py).
Quick run: ``--rounds 1 --settle 3``.
Run from the repository root: ``.venv/bin/python bench/runtime_start.py [--cold] [--rounds 3] [--json PATH]``.
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
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

import docker

from backend.config import Settings
from backend.runtime.base import DeviceSpec
from backend.runtime.docker import DockerRuntime
from bench.report import Report

TARGET_ONE_S = 1.0
TARGET_MANY_S = 2.5
"""For ``--devices`` (default 4) created at once."""
TARGET_CACHED_MS = 250.0
TARGET_IDLE_MIB = 300.0
TARGET_STOP_S = 3.0


async def rfb_greeting(path: Path, timeout: float = 30.0) -> None:
    """Return once the RFB server on *path* sent its 12-byte version greeting."""
    deadline = time.perf_counter() + timeout
    while True:
        try:
            reader, writer = await asyncio.open_unix_connection(str(path))
        except OSError:
            if time.perf_counter() > deadline:
                raise
            await asyncio.sleep(0.01)
            continue
        try:
            greeting = await asyncio.wait_for(reader.readexactly(12), timeout)
        finally:
            writer.close()
            await writer.wait_closed()
        if greeting != b"RFB 003.008\n":
            raise SystemExit(f"unexpected greeting {greeting!r}")
        return


def make_spec(settings: Settings, name: str) -> DeviceSpec:
    device_id = f"b{uuid.uuid4().hex[:10]}"
    uid = settings.effective_device_uid
    runtime_dir = Path(tempfile.mkdtemp(prefix="crb-", dir="/tmp"))
    os.chmod(runtime_dir, 0o700)
    os.chown(runtime_dir, uid, uid)
    return DeviceSpec(device_id, name, "browser", runtime_dir, {"CORRAL_AGENT_TOKEN": "bench"})


async def start_and_answer(runtime: DockerRuntime, spec: DeviceSpec) -> float:
    started = time.perf_counter()
    await runtime.create(spec)
    await rfb_greeting(spec.runtime_dir / "vnc.sock")
    return time.perf_counter() - started


async def cleanup(runtime: DockerRuntime, specs: list[DeviceSpec]) -> None:
    await asyncio.gather(*(runtime.remove(spec.device_id) for spec in specs))
    for spec in specs:
        shutil.rmtree(spec.runtime_dir, ignore_errors=True)


def idle_memory_mib(client: docker.DockerClient, device_id: str) -> float:
    stats = client.api.stats(f"corral-{device_id}", stream=False)
    memory = stats["memory_stats"]
    detail = memory.get("stats", {})
    cache = detail.get("inactive_file", detail.get("total_inactive_file", 0))
    return float(memory["usage"] - cache) / 2**20


async def cold_build(data_dir: Path, report: Report) -> None:
    settings = Settings(data_dir=data_dir / "cold", image_prefix="corral-bench", device_network="none")
    runtime = DockerRuntime(settings)
    phases: dict[str, float] = {}
    started = time.perf_counter()

    def progress(fraction: float, message: str) -> None:
        # First word of each kind of message: pulling, debootstrap, importing, downloading, step, apt, built
        phases.setdefault(message.replace(":", " ").split()[0], time.perf_counter() - started)

    try:
        reference = await runtime.ensure_image("browser", progress)
        elapsed = time.perf_counter() - started
        report.figure(
            "cold_build_s", elapsed, "s", label=f"cold build (base + wheels + all layers) -> {reference}"
        )
        report.detail("cold_build_phases_s", phases)
        for phase, at in phases.items():
            print(f"    {phase:<12} first seen at {at:6.1f} s")
    finally:
        client = docker.from_env()
        for ref in ("corral-bench/browser:latest", "corral-bench/base:bookworm"):
            try:
                image = client.images.get(ref)
            except docker.errors.ImageNotFound:
                continue
            for tag in image.tags:
                client.images.remove(tag)
        client.close()
        await runtime.close()


async def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cold", action="store_true", help="also time a cold build (minutes)")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--devices", type=int, default=4)
    parser.add_argument("--settle", type=float, default=10.0, help="idle seconds before reading memory")
    parser.add_argument("--json", help="write the figures here as JSON")
    args = parser.parse_args()
    report = Report("runtime_start")

    data_dir = Path(tempfile.mkdtemp(prefix="corral-bench-rt-"))
    settings = Settings(data_dir=data_dir, device_network="none")
    runtime = DockerRuntime(settings)
    client = docker.from_env()
    try:
        await runtime.ping()
        if args.cold:
            await cold_build(data_dir, report)

        started = time.perf_counter()
        reference = await runtime.ensure_image("browser")
        report.figure(
            "ensure_image_first_s",
            time.perf_counter() - started,
            "s",
            label="ensure_image, first call (builds if stale)",
        )
        checks = []
        for _ in range(5):
            started = time.perf_counter()
            await runtime.ensure_image("browser")
            checks.append(time.perf_counter() - started)
        report.figure(
            "ensure_image_cached_ms",
            statistics.median(checks) * 1000,
            "ms",
            target=TARGET_CACHED_MS,
            label="ensure_image, cached, median of 5",
        )
        size = client.images.get(reference).attrs["Size"]
        report.figure("image_mb", size / 1e6, "MB", label=f"image {reference}")

        singles, groups = [], []
        for _ in range(args.rounds):
            spec = make_spec(settings, "Bench 1")
            try:
                singles.append(await start_and_answer(runtime, spec))
            finally:
                await cleanup(runtime, [spec])
            specs = [make_spec(settings, f"Bench {i + 1}") for i in range(args.devices)]
            try:
                started = time.perf_counter()
                await asyncio.gather(*(start_and_answer(runtime, spec) for spec in specs))
                groups.append(time.perf_counter() - started)
            finally:
                await cleanup(runtime, specs)
        one, many = statistics.median(singles), statistics.median(groups)
        report.figure(
            "start_1_s",
            one,
            "s",
            target=TARGET_ONE_S,
            label=f"create -> RFB greeting, 1 device, median (rounds: {_fmt(singles)})",
        )
        report.figure(
            f"start_{args.devices}_s",
            many,
            "s",
            target=TARGET_MANY_S if args.devices == 4 else None,
            label=f"create -> RFB greeting, {args.devices} at once (all), median (rounds: {_fmt(groups)})",
        )
        report.ratio(
            f"start_{args.devices}_vs_1", many, one, label=f"ratio {args.devices} at once / 1 device"
        )

        specs = [make_spec(settings, f"Idle {i + 1}") for i in range(args.devices)]
        try:
            await asyncio.gather(*(start_and_answer(runtime, spec) for spec in specs))
            await asyncio.sleep(args.settle)
            memory = [idle_memory_mib(client, spec.device_id) for spec in specs]
            report.figure(
                "idle_memory_mib",
                max(memory),
                "MiB",
                target=TARGET_IDLE_MIB,
                label=f"idle memory per container after {args.settle:g} s (start page, no viewer), largest "
                f"(each: {', '.join(f'{m:.0f}' for m in memory)})",
            )
            started = time.perf_counter()
            await asyncio.to_thread(client.api.stop, f"corral-{specs[0].device_id}", 5)
            report.figure(
                "docker_stop_s",
                time.perf_counter() - started,
                "s",
                target=TARGET_STOP_S,
                label="docker stop of an idle device",
            )
        finally:
            await cleanup(runtime, specs)
    finally:
        client.close()
        await runtime.close()
        shutil.rmtree(data_dir, ignore_errors=True)
    return report.finish(args.json)


def _fmt(values: list[float]) -> str:
    return ", ".join(f"{value:.2f}" for value in values)


if __name__ == "__main__":
    sys.exit(asyncio.run(main()))
