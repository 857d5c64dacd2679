"""The soak's pure parts: what it watches, what it sees, and how it compares them.

No I/O here (unit-tested in tests/unit/bench/test_soak_model.py).
"""

from __future__ import annotations

import argparse
from dataclasses import dataclass

from backend.config import Settings
from backend.types import DeviceInfo
from bench.soak_farm import Container

__all__ = [
    "FAULTS",
    "SHOULD_RUN",
    "TERMINAL_JOBS",
    "View",
    "Watch",
    "device_of",
    "farm_differences",
    "parse_devices",
    "within",
]

SHOULD_RUN = frozenset({"provisioning", "booting", "ready", "busy"})
"""Device states with a running container (backend.devices.states.ACTIVE_STATES)."""
TOLERANCE = 0.10
FAULTS = {
    "provision": 3,
    "remove": 2,
    "docker_kill": 2,
    "agent_kill": 2,
    "host_kill": 1,
    "postgres_restart": 1,
}
"""Fault kinds and their weights."""
TERMINAL_JOBS = frozenset({"succeeded", "failed", "cancelled"})


def parse_devices(value: str) -> tuple[int, int]:
    """``4..8`` -> (4, 8); ``6`` -> (6, 6)."""
    low, separator, high = value.partition("..")
    try:
        bounds = (int(low), int(high if separator else low))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected N or LOW..HIGH, got {value!r}") from None
    if not 1 <= bounds[0] <= bounds[1] <= 16:
        raise argparse.ArgumentTypeError(f"expected 1 <= LOW <= HIGH <= 16, got {value!r}")
    return bounds


def within(baseline: float, final: float, tolerance: float = TOLERANCE) -> bool:
    """``final`` differs from ``baseline`` by at most *tolerance* of it."""
    return abs(final - baseline) <= tolerance * baseline


def farm_differences(devices: dict[str, DeviceInfo], containers: dict[str, Container]) -> list[str]:
    """Where Docker and the database disagree: running containers against devices that
    should run (``provisioning``/``booting``/``ready``/``busy``), and containers of
    devices that are removed or unknown."""
    should_run = {d.id for d in devices.values() if d.state in SHOULD_RUN}
    running = {device_id for device_id, c in containers.items() if c.status == "running"}
    problems = [
        f"{devices[i].name} is {devices[i].state} but its container is not running"
        for i in sorted(should_run - running)
    ]
    for device_id in sorted(running - should_run):
        state = devices[device_id].state if device_id in devices else "unknown to the database"
        problems.append(f"container of {device_id} runs but the device is {state}")
    for device_id in sorted(set(containers) - running):
        if device_id not in devices or devices[device_id].state == "removed":
            problems.append(
                f"a {containers[device_id].status} container is left for removed device {device_id}"
            )
    return problems


@dataclass
class Watch:
    """One injected fault, until it is survived, lost or superseded."""

    number: int
    fault: str
    device_id: str | None
    at: float
    agents_before: frozenset[int] = frozenset()
    ready_before: frozenset[str] = frozenset()
    outcome: str | None = None
    """``survived``, ``lost`` or ``superseded``."""
    recovered_after: float | None = None
    detail: str = ""


@dataclass
class View:
    """What the soak sees at one instant."""

    at: float
    devices: dict[str, DeviceInfo] | None
    """None while the database cannot be read."""
    containers: dict[str, Container]
    agents: dict[str, list[int]]
    connected: set[str]
    """Devices whose agent process holds a connection to the current host."""
    host_alive: bool
    host_lock: bool | None

    def ready(self, device_id: str) -> bool:
        device = (self.devices or {}).get(device_id)
        container = self.containers.get(device_id)
        return (
            device is not None
            and device.state == "ready"
            and container is not None
            and container.status == "running"
            and device_id in self.connected
        )


def device_of(link: str, settings: Settings) -> str | None:
    """The device id of a path below the devices' runtime directories, else None."""
    prefix = str(settings.devices_root) + "/"
    return link[len(prefix) :].split("/", 1)[0] if link.startswith(prefix) else None
