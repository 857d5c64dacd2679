"""Job handlers that provision and remove devices.

Both are idempotent: a rerun finds the device's container by label (the runtime's
``create`` returns an existing one) and carries on from there.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time

from backend.config import Settings, rundir
from backend.devices.exceptions import DeviceError
from backend.devices.probe import vnc_answers
from backend.devices.states import DeviceState
from backend.devices.store import DeviceStore
from backend.exceptions import CorralError
from backend.hub import Hub
from backend.jobs.exceptions import JobCancelled
from backend.jobs.worker import Handler, JobContext
from backend.runtime.base import DeviceSpec, Runtime

__all__ = ["DeviceHandlers"]

log = logging.getLogger(__name__)
S = DeviceState


class BootFailed(DeviceError):
    """The device did not come up."""


class DeviceHandlers:
    def __init__(self, settings: Settings, store: DeviceStore, runtime: Runtime, hub: Hub) -> None:
        self._settings = settings
        self._store = store
        self._runtime = runtime
        self._hub = hub

    def handlers(self) -> dict[str, Handler]:
        return {"provision": self.provision, "remove": self.remove}

    def prepare_dir(self, device_id: str) -> None:
        """Create the device's private runtime directory (0700, owned by the device uid)."""
        rundir.make_device_dir(self._settings.runtime_dir, device_id, self._settings.effective_device_uid)

    async def provision(self, job: JobContext) -> None:
        device_id = _device_id(job)
        device = await self._store.get(device_id)
        # A rerun after the device came up (its worker died before recording
        # success) has nothing left to do; a lost container is the reconciler's.
        if device.state in (S.REMOVED, S.STOPPING, S.READY, S.BUSY):
            return
        if device.state not in (S.PROVISIONING, S.BOOTING):
            await self._store.transition(device_id, S.PROVISIONING, message=f"attempt {job.attempt}")
        try:
            await self._provision(job, device_id, device.kind, device.name)
        except JobCancelled:
            await self._cleanup_best_effort(device_id)
            current = await self._store.get(device_id)
            # A removal cancels its device's provision and takes over from there.
            if current.state in (S.PROVISIONING, S.BOOTING):
                await self._store.transition(device_id, S.FAILED, reason="provisioning cancelled")
            raise
        except Exception as exc:
            reason = str(exc) or type(exc).__name__
            await self._cleanup_best_effort(device_id)
            if job.is_last_attempt:
                await self._store.transition(device_id, S.FAILED, reason=reason)
            else:
                await self._store.add_event(device_id, "retry", f"attempt {job.attempt} failed: {reason}")
            raise

    async def _provision(self, job: JobContext, device_id: str, kind: str, name: str) -> None:
        async def report(fraction: float, message: str) -> None:
            await job.progress(fraction, message)
            await self._store.set_progress(device_id, fraction, message)

        await report(0.05, "checking device image")
        pending: set[asyncio.Future[None]] = set()

        def image_progress(fraction: float, message: str) -> None:
            # Called on the loop (runtime contract) but not awaitable: schedule the writes.
            pending.add(asyncio.ensure_future(report(0.05 + 0.45 * fraction, message)))

        await self._runtime.ensure_image(kind, image_progress)
        await asyncio.gather(*pending, return_exceptions=True)
        await report(0.55, "starting container")
        self.prepare_dir(device_id)
        # Every attempt (a first provision, a recovery) gets a new credential; the
        # agent reads it from its runtime directory, never from the environment.
        await self._hub.rotate_credential(device_id)
        await self._hub.listen(device_id)
        spec = DeviceSpec(
            device_id=device_id,
            name=name,
            kind=kind,
            runtime_dir=self._settings.device_dir(device_id),
            env=dict(job.payload.get("env", {})),
        )
        await self._runtime.create(spec)
        await self._store.transition(device_id, S.BOOTING)
        await report(0.7, "waiting for the screen and the agent")
        await self._wait_until_up(job, device_id)
        await self._store.transition(device_id, S.READY)

    async def _wait_until_up(self, job: JobContext, device_id: str) -> None:
        """Return once the screen answers and the agent said hello; raise BootFailed otherwise.

        When the hub refused the agent during the wait, the timeout says why
        ("agent refused: …"): a device whose agent cannot authenticate is never ``ready``.
        """
        started = time.monotonic()
        deadline = started + self._settings.boot_timeout
        vnc_socket = self._settings.device_paths(device_id).vnc_socket
        vnc_ok = hello_ok = False
        while time.monotonic() < deadline:
            job.checkpoint()
            vnc_ok = vnc_ok or await vnc_answers(vnc_socket)
            hello_ok = self._hub.is_connected(device_id)
            if vnc_ok and hello_ok:
                return
            instance = await self._runtime.find(device_id)
            if instance is None or instance.status in ("exited", "dead"):
                logs = await self._runtime.logs(device_id, tail=5) if instance else ""
                detail = f": {logs.strip().splitlines()[-1]}" if logs.strip() else ""
                code = (
                    f" with code {instance.exit_code}" if instance and instance.exit_code is not None else ""
                )
                raise BootFailed(f"container exited{code} while booting{detail}")
            with contextlib.suppress(TimeoutError):
                await self._hub.wait_hello(device_id, timeout=0.1 if hello_ok or not vnc_ok else 0.5)
        missing = [what for what, ok in (("screen (VNC)", vnc_ok), ("agent", hello_ok)) if not ok]
        refused = None if hello_ok else self._hub.refusal_since(device_id, started)
        why = f" (agent refused: {refused})" if refused else ""
        within = f"{self._settings.boot_timeout:.0f}s"
        raise BootFailed(f"device did not come up within {within}: no {' or '.join(missing)}{why}")

    async def remove(self, job: JobContext) -> None:
        device_id = _device_id(job)
        device = await self._store.get(device_id)
        if device.state == S.REMOVED:
            return
        if device.state != S.STOPPING:
            await self._store.transition(device_id, S.STOPPING)
        await job.progress(0.3, "removing container")
        try:
            await self._cleanup(device_id)
        except JobCancelled:
            raise
        except Exception as exc:
            # Said on the device, not only in the job: `corral rm` and the window
            # show the device's reason. The last attempt leaves it failed (the
            # reconciler removes parked devices again later), never stuck stopping.
            reason = f"removal failed: {exc or type(exc).__name__}"
            if job.is_last_attempt:
                await self._store.transition(device_id, S.FAILED, reason=reason)
            else:
                await self._store.add_event(device_id, "retry", f"attempt {job.attempt} {reason}")
            raise
        await self._store.transition(device_id, S.REMOVED)

    async def _cleanup_best_effort(self, device_id: str) -> None:
        """Clean up after a failed attempt without hiding why it failed.

        If Docker itself is the problem, cleaning up fails the same way; the
        device must still reach a state the operator can read, and the reconciler
        removes a leftover container once Docker answers again.
        """
        try:
            await self._cleanup(device_id)
        except CorralError as exc:
            log.warning("cleaning up device %s failed: %s", device_id, exc)
            await self._store.add_event(device_id, "cleanup", f"cleanup failed: {exc}")

    async def _cleanup(self, device_id: str) -> None:
        """Remove what a device had on this host: container, hub socket, runtime dir."""
        await self._runtime.remove(device_id)
        await self._hub.close_device(device_id)
        await asyncio.to_thread(rundir.remove_device_dir, self._settings.runtime_dir, device_id)


def _device_id(job: JobContext) -> str:
    if job.device_id is None:
        raise DeviceError(f"job {job.id} ({job.kind}) names no device")
    return job.device_id
