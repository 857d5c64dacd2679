"""The device state machine (DESIGN.md, "Device states").

    requested -> provisioning -> booting -> ready <-> busy -> stopping -> stopped
    any -> failed;  failed/stopped -> provisioning;  removed is final.

Pure: :func:`check_transition` raises :class:`InvalidTransition` for any edge not
in the graph, so every caller enforces the same rules.
"""

from __future__ import annotations

from enum import StrEnum

from backend.devices.exceptions import InvalidTransition

__all__ = ["ACTIVE_STATES", "TRANSITIONS", "DeviceState", "check_transition"]


class DeviceState(StrEnum):
    REQUESTED = "requested"
    PROVISIONING = "provisioning"
    BOOTING = "booting"
    READY = "ready"
    BUSY = "busy"
    STOPPING = "stopping"
    STOPPED = "stopped"
    FAILED = "failed"
    REMOVED = "removed"


S = DeviceState
TRANSITIONS: dict[DeviceState, frozenset[DeviceState]] = {
    S.REQUESTED: frozenset({S.PROVISIONING, S.STOPPING, S.FAILED, S.REMOVED}),
    S.PROVISIONING: frozenset({S.BOOTING, S.STOPPING, S.FAILED}),
    S.BOOTING: frozenset({S.READY, S.STOPPING, S.FAILED}),
    S.READY: frozenset({S.BUSY, S.STOPPING, S.FAILED}),
    S.BUSY: frozenset({S.READY, S.STOPPING, S.FAILED}),
    S.STOPPING: frozenset({S.STOPPED, S.FAILED, S.REMOVED}),
    S.STOPPED: frozenset({S.PROVISIONING, S.REMOVED, S.FAILED}),
    S.FAILED: frozenset({S.PROVISIONING, S.STOPPING, S.REMOVED}),
    S.REMOVED: frozenset(),
}
"""Allowed edges. ``stopping -> removed`` is how a remove finishes; a device that
never got a container (requested/failed/stopped) may be removed directly."""

ACTIVE_STATES = frozenset({S.PROVISIONING, S.BOOTING, S.READY, S.BUSY})
"""States in which a device should have a running container."""


def check_transition(current: DeviceState, target: DeviceState) -> None:
    """Raise InvalidTransition unless *current* -> *target* is an edge of the graph."""
    if target not in TRANSITIONS[current]:
        raise InvalidTransition(f"device cannot go from {current} to {target}")
