"""Make Docker and the database agree, at start and every few seconds.

- A container labelled ``corral.device`` whose device is unknown, removed or
  failed (and no job is on it) is a leftover of a crash or of a clean-up that
  failed: it is removed.
- A device that should be up (``ready``/``busy``/``booting``) with no open job and
  no running container lost it (the container died, or dockerd restarted): it goes
  ``failed`` with the reason, and a provision job is queued to recover it. The
  provision handler restarts the stopped container (or makes a new one) and waits
  for its agent, so a dockerd restart heals by itself.
- Devices left ``failed`` or ``stopped`` longer than the TTL are removed.

Every action is an event row (through the store). Only the host runs this, as
the supervised task ``reconciler`` (see :mod:`backend.supervisor`): a pass that
raises is logged, shown in health and retried with backoff.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta

from backend.devices.states import DeviceState
from backend.devices.store import DeviceStore
from backend.runtime.base import Runtime
from backend.supervisor import Supervisor

__all__ = ["ReconcileReport", "Reconciler"]

log = logging.getLogger(__name__)
S = DeviceState
_SHOULD_RUN = frozenset({S.READY, S.BUSY, S.BOOTING})
_PARKED = frozenset({S.FAILED, S.STOPPED})


@dataclass
class ReconcileReport:
    orphans_removed: list[str] = field(default_factory=list)
    recovered: list[str] = field(default_factory=list)
    expired: list[str] = field(default_factory=list)


class Reconciler:
    TASK = "reconciler"
    """The name of the supervised task."""

    def __init__(
        self,
        store: DeviceStore,
        runtime: Runtime,
        *,
        interval: float = 10.0,
        parked_ttl: timedelta | None = timedelta(hours=24),
        supervisor: Supervisor | None = None,
    ) -> None:
        self._store = store
        self._runtime = runtime
        self._interval = interval
        self._parked_ttl = parked_ttl
        self._supervisor = supervisor or Supervisor()

    async def start(self) -> None:
        """Reconcile now (in the background), then every *interval* seconds until :meth:`stop`."""
        self._supervisor.every(self.TASK, self._interval, self.run_pass)

    async def stop(self) -> None:
        await self._supervisor.stop(self.TASK)

    async def run_pass(self) -> None:
        """One pass, logged. Raises what :meth:`reconcile_once` raises (the supervisor records it)."""
        report = await self.reconcile_once()
        if report.orphans_removed or report.recovered or report.expired:
            log.info("reconciled: %s", report)

    async def reconcile_once(self) -> ReconcileReport:
        report = ReconcileReport()
        instances = {instance.device_id: instance for instance in await self._runtime.list()}
        devices = {device.id: device for device in await self._store.list(include_removed=True)}
        attended = await self._store.devices_with_open_jobs()

        for device_id in instances.keys() - attended:
            device = devices.get(device_id)
            # A failed device keeps no container (its last attempt could not clean
            # up, e.g. while Docker was down); a removed or unknown one never does.
            if device is None or device.state in (S.REMOVED, S.FAILED):
                await self._runtime.remove(device_id)
                if device is not None:
                    await self._store.add_event(device_id, "reconcile", "leftover container removed")
                report.orphans_removed.append(device_id)

        now = datetime.now(UTC)
        for device in devices.values():
            if device.id in attended:
                continue
            instance = instances.get(device.id)
            if device.state in _SHOULD_RUN and (instance is None or instance.status != "running"):
                reason = (
                    "container vanished"
                    if instance is None
                    else f"container {instance.status}"
                    + (f" with code {instance.exit_code}" if instance.exit_code is not None else "")
                )
                await self._store.transition(device.id, S.FAILED, reason=reason)
                await self._store.request_reprovision(device.id, f"recovering: {reason}")
                report.recovered.append(device.id)
            elif (
                device.state in _PARKED
                and self._parked_ttl is not None
                and now - device.updated_at > self._parked_ttl
            ):
                await self._store.request_removal([device.id])
                report.expired.append(device.id)
        return report
