"""The assembled backend: database, runtime, hub, stream proxy and job workers.

One process at a time is the *host*: it holds a Postgres advisory lock, serves
the agents' hub sockets and runs the job workers. Any other Corral process (a
second window, a CLI command while the app runs) is a *client*: it writes
requests to the database, and the host's workers carry them out.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Literal

import asyncpg

from backend.auth import tokens
from backend.config import Settings, rundir
from backend.db import Database
from backend.db.models import Device, Job
from backend.db.notify import channel
from backend.devices.handlers import DeviceHandlers
from backend.devices.reconciler import Reconciler
from backend.devices.states import ACTIVE_STATES, DeviceState
from backend.devices.store import DeviceStore
from backend.hub import Hub, HubListener
from backend.jobs.store import JobStore
from backend.jobs.worker import Worker
from backend.runtime.base import Runtime
from backend.runtime.exceptions import DeviceRuntimeError
from backend.stream.admission import Scope as StreamScope
from backend.types import DeviceInfo, DeviceListener, Health, JobInfo, JobsListener

__all__ = ["Corral"]

log = logging.getLogger(__name__)

Role = Literal["auto", "host", "client"]
_HOST_LOCK_KEY = 0x636F7272616C  # "corral"
DEVICE_KINDS = ("browser",)
"""Kinds this build can provision (android comes with its own image)."""


def _info(device: Device) -> DeviceInfo:
    return DeviceInfo(
        id=device.id,
        name=device.name,
        kind=device.kind,
        state=device.state,
        reason=device.reason,
        created_at=device.created_at,
        updated_at=device.updated_at,
        progress=device.progress,
        progress_message=device.progress_message,
    )


def _job_info(job: Job) -> JobInfo:
    return JobInfo(
        id=job.id,
        kind=job.kind,
        device_id=job.device_id,
        state=job.state,
        attempts=job.attempts,
        max_attempts=job.max_attempts,
        progress=job.progress,
        progress_message=job.progress_message,
        error=job.error,
        cancel_requested=job.cancel_requested,
        created_at=job.created_at,
        updated_at=job.updated_at,
    )


class _HubEvents(HubListener):
    def __init__(self, store: DeviceStore) -> None:
        self._store = store
        self._tasks: set[asyncio.Task[None]] = set()

    def on_disconnect(self, device_id: str) -> None:
        task = asyncio.create_task(self._store.add_event(device_id, "agent", "agent disconnected"))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)


class Corral:
    """Start with :meth:`start`, stop with :meth:`stop`. See ``backend.api`` for the contract."""

    def __init__(self, settings: Settings, database: Database, runtime: Runtime, secret: bytes) -> None:
        self.settings = settings
        self.database = database
        self.runtime = runtime
        self._secret = secret
        self.store = DeviceStore(database, max_attempts=settings.job_max_attempts)
        self.hub = Hub(settings, secret, _HubEvents(self.store))
        self.handlers = DeviceHandlers(settings, self.store, runtime, self.hub)
        self.jobs_store = JobStore(database)
        self._listeners: list[DeviceListener] = []
        self._job_listeners: list[JobsListener] = []
        self._worker: Worker | None = None
        self._reconciler: Reconciler | None = None
        self._stream: object | None = None
        self._host_connection: asyncpg.Connection | None = None
        self._refresh_tasks: set[asyncio.Task[None]] = set()

    @classmethod
    async def start(
        cls, settings: Settings | None = None, *, role: Role = "auto", stream: bool = True
    ) -> Corral:
        """Open the database (embedded by default, migrated to head) and start serving.

        With ``role="auto"`` this process becomes the host unless another holds the
        host lock. Raises DatabaseUnavailable / MigrationError (see backend.db).
        """
        from backend.runtime.docker import DockerRuntime

        settings = settings or Settings()
        secret = tokens.load_or_create_secret(settings.secret_path)
        database = await Database.open(settings)
        corral = cls(settings, database, DockerRuntime(settings), secret)
        try:
            await corral._start(role, stream)
        except BaseException:
            await corral.stop()
            raise
        return corral

    async def _start(self, role: Role, stream: bool) -> None:
        await asyncio.to_thread(rundir.ensure_root, self.settings.runtime_dir)
        self.database.on_notify(channel("devices"), self._on_device_notify)
        self.database.on_notify(channel("job_changes"), self._on_jobs_notify)
        if stream:
            from backend.stream import StreamProxy

            proxy = StreamProxy(self.settings, self._secret)
            await proxy.start()
            self._stream = proxy
        if role != "client" and await self._take_host_lock(wait=role == "host"):
            await self._become_host()

    @property
    def is_host(self) -> bool:
        return self._worker is not None

    async def _take_host_lock(self, *, wait: bool) -> bool:
        connection = await self.database.connect_raw()
        query = "SELECT pg_advisory_lock($1)" if wait else "SELECT pg_try_advisory_lock($1)"
        got = await connection.fetchval(query, _HOST_LOCK_KEY)
        if got is False:
            await connection.close()
            return False
        self._host_connection = connection
        return True

    async def _become_host(self) -> None:
        # Devices that were up when the last host stopped get their hub socket back;
        # their agents reconnect on their own.
        for device in await self.store.list():
            if device.state in ACTIVE_STATES:
                self.handlers.prepare_dir(device.id)
                await self.hub.listen(device.id)
        self._worker = Worker(
            self.database,
            self.handlers.handlers(),
            concurrency=self.settings.job_concurrency,
            lease_seconds=self.settings.job_lease_seconds,
        )
        await self._worker.start()
        ttl = self.settings.parked_ttl_hours
        self._reconciler = Reconciler(
            self.store,
            self.runtime,
            interval=self.settings.reconcile_interval,
            parked_ttl=timedelta(hours=ttl) if ttl > 0 else None,
        )
        await self._reconciler.start()

    async def stop(self) -> None:
        """Stop serving and close the database (the embedded server stops if unused).

        Devices keep running; the next start shows them again.
        """
        if self._reconciler is not None:
            await self._reconciler.stop()
            self._reconciler = None
        if self._worker is not None:
            await self._worker.stop()
            self._worker = None
        await self.hub.stop()
        if self._stream is not None:
            await self._stream.stop()  # type: ignore[attr-defined]
        if self._host_connection is not None:
            with contextlib.suppress(Exception):
                await self._host_connection.close(timeout=2)
        for task in list(self._refresh_tasks):
            task.cancel()
        await self.runtime.close()
        await self.database.close()

    # --- requests ------------------------------------------------------------------

    async def provision(
        self, kind: str, count: int, *, env: dict[str, str] | None = None
    ) -> list[DeviceInfo]:
        """Queue *count* new devices; returns at once with them in ``requested``.

        *env* passes device options such as ``CORRAL_START_URL`` or ``CORRAL_SCREEN``.
        Raises InvalidRequest for an unknown kind or a count outside 1..MAX_BATCH.
        """
        devices = await self.store.request(kind, count, DEVICE_KINDS, env)
        return [_info(device) for device in devices]

    async def remove(self, device_ids: list[str]) -> None:
        await self.store.request_removal(device_ids)

    async def devices(self, include_removed: bool = False) -> list[DeviceInfo]:
        return [_info(device) for device in await self.store.list(include_removed=include_removed)]

    async def device(self, ref: str) -> DeviceInfo:
        return _info(await self.store.resolve(ref))

    @property
    def stream_port(self) -> int | None:
        return None if self._stream is None else int(self._stream.port)  # type: ignore[attr-defined]

    def pane_url(self, device_id: str, scope: StreamScope = "view") -> str:
        """A single-use stream URL for *device_id*: ``view`` drops the pane's input, ``control`` passes it."""
        if self._stream is None:
            raise RuntimeError("this Corral was started without the stream proxy")
        return str(self._stream.pane_url(device_id, scope))  # type: ignore[attr-defined]

    async def health(self) -> Health:
        try:
            await self.runtime.ping()
            docker_ok, docker_message = True, "Docker: connected"
        except DeviceRuntimeError as exc:
            docker_ok, docker_message = False, str(exc)
        try:
            await self.database.ping()
            db_ok, db_message = True, "Postgres: connected"
        except Exception as exc:
            db_ok, db_message = False, str(exc)
        return Health(docker_ok, docker_message, db_ok, db_message)

    async def jobs(self, state: str | None = None, limit: int = 500) -> list[JobInfo]:
        """Newest first; *state* filters (raises JobError for an unknown one)."""
        return [_job_info(job) for job in await self.jobs_store.list(state=state, limit=limit)]

    async def retry_job(self, job_id: int) -> JobInfo:
        return _job_info(await self.jobs_store.retry(job_id))

    async def cancel_job(self, job_id: int) -> JobInfo:
        return _job_info(await self.jobs_store.cancel(job_id))

    def add_jobs_listener(self, listener: JobsListener) -> Callable[[], None]:
        """Call *listener* (no arguments) whenever jobs change; returns unsubscribe."""
        self._job_listeners.append(listener)
        return lambda: self._job_listeners.remove(listener) if listener in self._job_listeners else None

    def _on_jobs_notify(self, _channel: str, _payload: str) -> None:
        for listener in list(self._job_listeners):
            try:
                listener()
            except Exception:
                log.exception("jobs listener failed")

    # --- change stream ---------------------------------------------------------------

    def add_listener(self, listener: DeviceListener) -> Callable[[], None]:
        self._listeners.append(listener)
        return lambda: self._listeners.remove(listener) if listener in self._listeners else None

    def _on_device_notify(self, _channel: str, device_id: str) -> None:
        if not self._listeners:
            return
        task = asyncio.create_task(self._publish(device_id or None), name="device-refresh")
        self._refresh_tasks.add(task)
        task.add_done_callback(self._refresh_tasks.discard)

    async def _publish(self, device_id: str | None) -> None:
        try:
            devices = (
                [await self.store.get(device_id)]
                if device_id
                else await self.store.list(include_removed=True)
            )
        except Exception as exc:
            log.warning("could not refresh device %s: %s", device_id, exc)
            return
        for device in devices:
            info = _info(device)
            for listener in list(self._listeners):
                try:
                    listener(info)
                except Exception:
                    log.exception("device listener failed")

    async def wait_for(
        self,
        device_ids: list[str],
        states: set[str],
        timeout: float,
        *,
        on_change: DeviceListener | None = None,
    ) -> list[DeviceInfo]:
        """Wait until every device is in one of *states* (or ``failed``/``removed``)."""
        final = states | {DeviceState.FAILED, DeviceState.REMOVED}
        changed = asyncio.Event()

        def listener(info: DeviceInfo) -> None:
            changed.set()
            if on_change is not None:
                on_change(info)

        unsubscribe = self.add_listener(listener)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    changed.clear()
                    current = [_info(await self.store.get(d)) for d in device_ids]
                    if all(info.state in final for info in current):
                        return current
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(changed.wait(), 1.0)
        finally:
            unsubscribe()
