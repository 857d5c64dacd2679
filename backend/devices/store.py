"""Device rows and their events (SQLAlchemy); the jobs that act on them via the jobs package.

Every state change goes through :meth:`DeviceStore.transition`, which locks the
row, enforces the state machine and writes an event row in the same transaction.
Jobs are queued and cancelled only through :class:`~backend.jobs.manager.JobManager`,
in the same transaction as the device rows they go with.
"""

from __future__ import annotations

import uuid
from collections.abc import Mapping, Sequence

from sqlalchemy import func, select, text
from sqlalchemy.ext.asyncio import AsyncSession

from backend.db import Database
from backend.db.models import Device, DeviceEvent
from backend.devices.exceptions import InvalidRequest, UnknownDevice
from backend.devices.states import DeviceState, check_transition
from backend.jobs.manager import JobManager

__all__ = ["MAX_BATCH", "DeviceStore"]

_UNSTARTED = frozenset({DeviceState.REQUESTED, DeviceState.PROVISIONING, DeviceState.BOOTING})

MAX_BATCH = 64
"""Most devices one provision request may ask for."""


def new_device_id() -> str:
    return uuid.uuid4().hex[:12]


class DeviceStore:
    def __init__(self, database: Database, *, max_attempts: int = 3, jobs: JobManager | None = None) -> None:
        self._database = database
        self._max_attempts = max_attempts
        self._jobs = jobs or JobManager(database)

    async def request(
        self, kind: str, count: int, kinds: Sequence[str], env: Mapping[str, str] | None = None
    ) -> list[Device]:
        """Insert *count* devices in ``requested`` and one provision job each, atomically.

        *env* is extra environment for the devices (start URL, screen size).
        """
        if kind not in kinds:
            raise InvalidRequest(f"unknown kind {kind!r}; valid kinds: {', '.join(kinds)}")
        if not 1 <= count <= MAX_BATCH:
            raise InvalidRequest(f"count must be between 1 and {MAX_BATCH}, got {count}")
        async with self._database.session() as session, session.begin():
            # Serialise name allocation between concurrent requests (app and CLI).
            await session.execute(text("SELECT pg_advisory_xact_lock(hashtext('corral.device-names'))"))
            prefix = f"{kind}-"
            names = (await session.scalars(select(Device.name).where(Device.name.startswith(prefix)))).all()
            taken = [int(n[len(prefix) :]) for n in names if n[len(prefix) :].isdigit()]
            first = max(taken, default=0) + 1
            devices = [
                Device(
                    id=new_device_id(), name=f"{prefix}{first + i}", kind=kind, state=DeviceState.REQUESTED
                )
                for i in range(count)
            ]
            session.add_all(devices)
            await session.flush()
            for device in devices:
                session.add(DeviceEvent(device_id=device.id, kind="state", to_state=device.state))
                self._jobs.enqueue(
                    session,
                    "provision",
                    device_id=device.id,
                    payload={"kind": kind, "env": dict(env or {})},
                    max_attempts=self._max_attempts,
                )
        return devices

    async def request_removal(self, device_ids: Sequence[str]) -> None:
        """Queue a remove job for each device (at high priority; idempotent per device)."""
        async with self._database.session() as session, session.begin():
            found = set((await session.scalars(select(Device.id).where(Device.id.in_(device_ids)))).all())
            missing = [d for d in device_ids if d not in found]
            if missing:
                raise UnknownDevice(f"no device with id {', '.join(missing)}")
            # A provision for a device about to go is pointless: cancel it.
            await self._jobs.cancel_for_devices(session, device_ids, "provision")
            for device_id in device_ids:
                self._jobs.enqueue(
                    session, "remove", device_id=device_id, priority=10, max_attempts=self._max_attempts
                )

    async def devices_with_open_jobs(self) -> set[str]:
        """Ids of devices that have a queued or running job (someone is on them)."""
        return await self._jobs.open_device_ids()

    async def request_reprovision(self, device_id: str, reason: str) -> None:
        """Queue a provision job for an existing device (recovery after its container was lost)."""
        async with self._database.session() as session, session.begin():
            # Keep the options (start URL, screen) the device was first made with.
            previous = await self._jobs.latest_payload(session, device_id, "provision")
            session.add(DeviceEvent(device_id=device_id, kind="recover", message=reason))
            self._jobs.enqueue(
                session,
                "provision",
                device_id=device_id,
                payload={**(previous or {}), "recover": True},
                max_attempts=self._max_attempts,
            )

    async def transition(
        self, device_id: str, target: DeviceState, *, reason: str | None = None, message: str = ""
    ) -> Device:
        """Move the device to *target* (raises InvalidTransition / UnknownDevice)."""
        async with self._database.session() as session, session.begin():
            device = await session.get(Device, device_id, with_for_update=True)
            if device is None:
                raise UnknownDevice(f"no device with id {device_id}")
            current = DeviceState(device.state)
            if current == target:
                return device
            _move(session, device, target, reason=reason, message=message)
        return device

    async def fail_unstarted(self, device_id: str, reason: str) -> bool:
        """Move a device that is on its way up (requested, provisioning, booting) to ``failed``.

        Returns False, changing nothing, when the device is in any other state
        (already up, failed, being removed): whoever moved it there owns it.
        """
        async with self._database.session() as session, session.begin():
            device = await session.get(Device, device_id, with_for_update=True)
            if device is None or device.state not in _UNSTARTED:
                return False
            _move(session, device, DeviceState.FAILED, reason=reason)
        return True

    async def set_progress(self, device_id: str, fraction: float, message: str) -> None:
        async with self._database.session() as session, session.begin():
            await session.execute(
                text(
                    "UPDATE devices SET progress = :p, progress_message = :m, updated_at = now() "
                    "WHERE id = :id"
                ),
                {"p": fraction, "m": message, "id": device_id},
            )

    async def add_event(self, device_id: str, kind: str, message: str) -> None:
        async with self._database.session() as session, session.begin():
            session.add(DeviceEvent(device_id=device_id, kind=kind, message=message))

    async def get(self, device_id: str) -> Device:
        async with self._database.session() as session:
            device = await session.get(Device, device_id)
        if device is None:
            raise UnknownDevice(f"no device with id {device_id}")
        return device

    async def list(self, *, include_removed: bool = False) -> list[Device]:
        query = select(Device).order_by(Device.created_at, Device.name)
        if not include_removed:
            query = query.where(Device.state != DeviceState.REMOVED)
        async with self._database.session() as session:
            return list((await session.scalars(query)).all())

    async def resolve(self, ref: str) -> Device:
        """Find a device by id or by name."""
        async with self._database.session() as session:
            device = await session.get(Device, ref) or await session.scalar(
                select(Device).where(Device.name == ref, Device.state != DeviceState.REMOVED)
            )
        if device is None:
            raise UnknownDevice(f"no device with id or name {ref!r}")
        return device


def _move(
    session: AsyncSession, device: Device, target: DeviceState, *, reason: str | None, message: str = ""
) -> None:
    """Change the locked *device* to *target* and record the event (raises InvalidTransition)."""
    current = DeviceState(device.state)
    check_transition(current, target)
    device.state = target
    device.reason = reason if target == DeviceState.FAILED else None
    if target == DeviceState.READY:
        device.progress, device.progress_message = 1.0, "ready"
    device.updated_at = func.now()
    session.add(
        DeviceEvent(
            device_id=device.id,
            kind="state",
            from_state=current,
            to_state=target,
            message=reason or message,
        )
    )
