"""Which selected devices a flow runs on, and which device plays each role (no Qt).

The window asks these before it calls ``run_flow``: a flow without roles runs on
every selected device that is ready and of the flow's kind; a flow with roles
runs once, each role on a different ready device of the role's kind.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass

from backend.api import DEFAULT_FLOW_ROLE, DeviceInfo, Flow, FlowProblem

__all__ = [
    "RUNNABLE_STATE",
    "Targets",
    "assignment_problem",
    "default_assignment",
    "describe_problems",
    "has_roles",
    "split_targets",
]

RUNNABLE_STATE = "ready"
"""A device runs a flow only when it is ready (not booting, busy, stopped…)."""


@dataclass(frozen=True, slots=True)
class Targets:
    """Selected devices split into those a flow can run on and those it cannot (with why)."""

    devices: tuple[DeviceInfo, ...]
    skipped: tuple[tuple[DeviceInfo, str], ...] = ()

    def skipped_text(self) -> str:
        """``browser-3 (booting), phone-1 (not a browser device)``, or ""."""
        return ", ".join(f"{device.name} ({why})" for device, why in self.skipped)


def has_roles(flow: Flow) -> bool:
    """Whether *flow* declares roles (else it has only the implicit one, one device per run)."""
    return set(flow.roles) != {DEFAULT_FLOW_ROLE}


def split_targets(devices: Iterable[DeviceInfo], kinds: Iterable[str] | None = None) -> Targets:
    """Ready devices (of one of *kinds*, if given), in the given order; the rest skipped with why."""
    wanted = None if kinds is None else set(kinds)
    chosen: list[DeviceInfo] = []
    skipped: list[tuple[DeviceInfo, str]] = []
    for device in devices:
        if device.state != RUNNABLE_STATE:
            skipped.append((device, device.state))
        elif wanted is not None and device.kind not in wanted:
            skipped.append((device, f"not a {' or '.join(sorted(wanted))} device"))
        else:
            chosen.append(device)
    return Targets(tuple(chosen), tuple(skipped))


def default_assignment(roles: Mapping[str, str], devices: Sequence[DeviceInfo]) -> dict[str, str]:
    """Role -> device id: each role, in declaration order, gets the first unused device of its kind.

    A role left without a device is absent from the result.
    """
    used: set[str] = set()
    assignment: dict[str, str] = {}
    for role, kind in roles.items():
        device = next((d for d in devices if d.kind == kind and d.id not in used), None)
        if device is not None:
            assignment[role] = device.id
            used.add(device.id)
    return assignment


def assignment_problem(
    roles: Mapping[str, str], assignment: Mapping[str, str], devices: Sequence[DeviceInfo]
) -> str | None:
    """Why *assignment* cannot run (a sentence), or None when every role has its own device."""
    by_id = {device.id: device for device in devices}
    missing = [role for role in roles if not assignment.get(role)]
    if missing:
        kinds = ", ".join(f"{role} ({roles[role]})" for role in missing)
        return f"No selected ready device for {kinds}: select more devices."
    seen: dict[str, str] = {}
    for role in roles:
        device_id = assignment[role]
        device = by_id.get(device_id)
        if device is None:
            return f"The device chosen for {role} is not among the selected ready devices."
        if device.kind != roles[role]:
            return f"{role} needs a {roles[role]} device; {device.name} is a {device.kind} device."
        if device_id in seen:
            return f"{device.name} cannot play both {seen[device_id]} and {role}."
        seen[device_id] = role
    return None


def describe_problems(problems: Sequence[FlowProblem]) -> str:
    """One problem per line: ``file:line: command: message``."""
    return "\n".join(str(problem) for problem in problems)
