"""The assembled backend: database, runtime, hub, stream proxy and job workers.

One process at a time is the *host*: it holds the host lock (:mod:`backend.host`),
serves the agents' hub sockets, runs the job worker and the reconciler. Any
other Corral process (a second window, a CLI command while the app runs) is a
*client*: it reads, writes requests to the database, and the host's workers
carry them out. A client takes no lock, binds no socket and starts no worker.

Roles (:meth:`Corral.start`): ``client`` never hosts; ``host`` waits for the lock;
``auto`` hosts if no other process does, else is a client; ``standby`` (the
window) hosts if no other process does, else takes over once the host stops. A host watches its
lock: when it is lost (Postgres restarted, the connection was terminated) it
stops all host work at once, then waits to take the lock again and resumes.

Every long-lived task runs under one :class:`~backend.supervisor.Supervisor`
(the lock watch ``host``, ``reconciler``, ``db-listener``); its state is part of
:meth:`Corral.health`.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from collections.abc import Callable
from datetime import timedelta
from typing import Literal

from backend.auth import tokens
from backend.config import Settings, rundir
from backend.db import Database
from backend.db.exceptions import DatabaseUnavailable
from backend.db.models import Device, Job
from backend.db.notify import channel
from backend.devices.exceptions import InvalidRequest
from backend.devices.handlers import DeviceHandlers
from backend.devices.reconciler import Reconciler
from backend.devices.states import ACTIVE_STATES, DeviceState
from backend.devices.store import DeviceStore
from backend.exceptions import CorralError
from backend.flows.runs import FlowRuns
from backend.flows.runs_api import FlowRunsApi
from backend.flows.runs_handler import FlowRunner
from backend.flows.runs_service import RunService
from backend.host import HostInfo, HostLock, find_host, publish_tasks
from backend.hub import AgentEvent, CommandOutcome, Hub, HubListener
from backend.hub.eventlog import EventLog
from backend.hub.events import EventCoalescer
from backend.jobs.manager import JobManager
from backend.jobs.worker import Worker
from backend.runtime.base import Runtime
from backend.runtime.exceptions import DeviceRuntimeError
from backend.stream.admission import Scope as StreamScope
from backend.supervisor import Supervisor, run_steps
from backend.types import (
    DeviceInfo,
    DeviceListener,
    Health,
    JobInfo,
    JobsListener,
)

__all__ = ["Corral"]

log = logging.getLogger(__name__)

Role = Literal["auto", "standby", "host", "client"]
HOST_TASK = "host"
"""The supervised task that watches the host lock and takes it back after a loss."""
_RETAKE_DELAY = 0.5
"""Seconds between attempts to reach Postgres again for the lock (short: a host is wanted back soon)."""
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
    """Agent disconnects and refusals as device events, coalesced (see EventCoalescer);
    agent events and finished commands as ``events`` rows, in batches (see EventLog)."""

    def __init__(self, store: DeviceStore, log: EventLog) -> None:
        self._events = EventCoalescer(store.add_event)
        self._log = log

    def on_event(self, device_id: str, event: AgentEvent) -> None:
        self._log.agent_event(device_id, event)

    def on_command(self, device_id: str, outcome: CommandOutcome) -> None:
        self._log.command(device_id, outcome)

    def on_disconnect(self, device_id: str) -> None:
        self._events.add(device_id, "agent", "agent disconnected")

    def on_refused(self, device_id: str, reason: str) -> None:
        self._events.add(device_id, "agent-refused", f"agent refused: {reason}")

    async def stop(self) -> None:
        await self._events.stop()


class Corral(FlowRunsApi):
    """Start with :meth:`start`, stop with :meth:`stop`. See ``backend.api`` for the contract.

    The contract is the methods. The parts it is assembled from (``settings``,
    ``database``, ``runtime``, ``store``, ``hub``, ``supervisor``) stay reachable
    for tests, benchmarks and tools, but callers of the API (the window, the CLI,
    the ``corral`` package) use none of them; the rest is private.
    """

    def __init__(
        self,
        settings: Settings,
        database: Database,
        runtime: Runtime,
        secret: bytes | None,
        supervisor: Supervisor | None = None,
    ) -> None:
        self.settings = settings
        self.database = database
        self.runtime = runtime
        self._secret = secret
        self.supervisor = supervisor or Supervisor()
        self.store = DeviceStore(database, max_attempts=settings.job_max_attempts)
        self._event_log = EventLog(database, self.supervisor)
        self._hub_events = _HubEvents(self.store, self._event_log)
        self.hub = Hub(settings, self._hub_events)
        self._handlers = DeviceHandlers(settings, self.store, runtime, self.hub)
        self._jobs = JobManager(database)
        self._flow_runs = FlowRuns(database)
        self._flow_runner = FlowRunner(settings, database, self._flow_runs, self.store, self.hub)
        self._runs = RunService(settings.data_dir, database, self._flow_runs, self.store)
        self._listeners: list[DeviceListener] = []
        self._job_listeners: list[JobsListener] = []
        self._worker: Worker | None = None
        self._flow_worker: Worker | None = None
        self._reconciler: Reconciler | None = None
        self._stream: object | None = None
        self._lock: HostLock | None = None
        self._hosting = False
        self._publishing: asyncio.Task[None] | None = None
        self._refresh_tasks: set[asyncio.Task[None]] = set()
        self.supervisor.on_change = self._on_tasks_changed

    @classmethod
    async def start(
        cls,
        settings: Settings | None = None,
        *,
        role: Role = "auto",
        stream: bool = True,
        runtime: Runtime | None = None,
    ) -> Corral:
        """Open the database (embedded by default, migrated to head) and start serving.

        *role*: ``client`` never becomes the host (no lock, no sockets, no worker,
        no reconciler); ``host`` waits until the host lock is free; ``auto`` is the
        host if no other process is, else a client; ``standby`` (the window) is the
        host if no other process is, else takes over in the background as soon as
        the host stops. *runtime* replaces the Docker
        runtime (tests). Raises DatabaseUnavailable / MigrationError (see backend.db).
        """
        from backend.runtime.docker import DockerRuntime

        settings = settings or Settings()
        # Only the stream proxy signs with it; a client without one (a CLI
        # command) must not create it.
        secret = tokens.load_or_create_secret(settings.secret_path) if stream else None
        supervisor = Supervisor()
        database = await Database.open(settings, supervisor=supervisor)
        corral = cls(settings, database, runtime or DockerRuntime(settings), secret, supervisor)
        try:
            await corral._start(role, stream)
        except BaseException:
            with contextlib.suppress(Exception):  # logged by stop(); the cause matters more
                await corral.stop()
            raise
        return corral

    async def _start(self, role: Role, stream: bool) -> None:
        self.database.on_notify(channel("devices"), self._on_device_notify)
        self.database.on_notify(channel("job_changes"), self._on_jobs_notify)
        if stream or role != "client":
            await asyncio.to_thread(rundir.ensure_root, self.settings.runtime_dir)
        if stream:
            from backend.stream import StreamProxy

            assert self._secret is not None, "Corral(secret=None) cannot serve streams"
            proxy = StreamProxy(self.settings, self._secret)
            await proxy.start()
            self._stream = proxy
        if role == "client":
            return
        lock = HostLock(self.database, self.settings.runtime_dir)
        if not await lock.acquire(wait=role == "host"):
            if role == "standby":
                # Another process hosts; take over in the background once it stops
                # (_hold_host waits for the lock when it is not held).
                self._lock = lock
                self.supervisor.spawn(HOST_TASK, self._hold_host)
            return
        self._lock = lock
        try:
            await self._become_host()
        except BaseException:
            await self._stop_host_work(grace=0.0)
            await lock.release()
            raise
        self.supervisor.spawn(HOST_TASK, self._hold_host)

    @property
    def is_host(self) -> bool:
        """True while this process does host work (between taking the lock and losing it)."""
        return self._hosting

    @property
    def role(self) -> str:
        """``host``, ``client``, or ``standby`` (a host that lost its lock and waits to take it back)."""
        if self._hosting:
            return "host"
        return "standby" if self._lock is not None else "client"

    async def host(self) -> HostInfo | None:
        """Who holds the host lock now (None: no host runs). Reads only."""
        return await find_host(self.database)

    async def _hold_host(self) -> None:
        """Host work while the lock is held; after a loss, stop at once and take it back."""
        lock = self._lock
        assert lock is not None
        while True:
            if not lock.held:
                # Lost before watch() began (e.g. while host work was starting), or
                # after a failure: stop whatever still runs before waiting again.
                if self._hosting:
                    log.error("lost the host lock while starting host work: stopping it now")
                await self._drop_host()
                await self._retake(lock)
            try:
                if not self._hosting:
                    await self._become_host()
                reason = await lock.watch()
            except asyncio.CancelledError:
                raise  # stop(): it stops the host work itself and reports what failed
            except BaseException:
                await self._drop_host()
                raise
            log.error("lost the host lock (%s): stopping host work now, then taking it back", reason)
            await self._drop_host()

    async def _retake(self, lock: HostLock) -> None:
        """Wait for the lock; while Postgres is away (restarting), try again every 0.5 s."""
        warned = False
        while True:
            try:
                await lock.acquire(wait=True)
                return
            except DatabaseUnavailable as exc:
                if not warned:
                    log.warning("cannot take the host lock yet (%s); retrying until Postgres answers", exc)
                    warned = True
                await asyncio.sleep(_RETAKE_DELAY)

    async def _drop_host(self) -> None:
        assert self._lock is not None
        try:
            await self._stop_host_work(grace=0.0)
        finally:
            await self._lock.release()

    async def _become_host(self) -> None:
        log.info("host role taken: starting host work (%s)", self._lock.name if self._lock else "?")
        self._hosting = True
        self._event_log.start()
        # Devices that were up when the last host stopped get their hub socket back;
        # their agents reconnect on their own.
        for device in await self.store.list():
            if device.state in ACTIVE_STATES:
                await self._serve_device(device.id)
        # Runs a host killed between a run's start and its job's end are ended now.
        try:
            await self._flow_runs.reap_abandoned()
        except CorralError as exc:
            log.warning("could not end abandoned flow runs: %s", exc)
        # Two workers split the queue by kind: provisioning loads Docker and the
        # host, a flow run mostly waits on its devices, so fifty devices run
        # fifty flows at once while at most job_concurrency devices provision.
        device_handlers = self._handlers.handlers()
        self._worker = Worker(
            self.database,
            device_handlers,
            concurrency=self.settings.job_concurrency,
            lease_seconds=self.settings.job_lease_seconds,
            kinds=list(device_handlers),
        )
        flow_handlers = self._flow_runner.handlers()
        self._flow_worker = Worker(
            self.database,
            flow_handlers,
            concurrency=self.settings.flow_concurrency,
            lease_seconds=self.settings.job_lease_seconds,
            kinds=list(flow_handlers),
        )
        await self._worker.start()
        await self._flow_worker.start()
        ttl = self.settings.parked_ttl_hours
        self._reconciler = Reconciler(
            self.store,
            self.runtime,
            interval=self.settings.reconcile_interval,
            parked_ttl=timedelta(hours=ttl) if ttl > 0 else None,
            supervisor=self.supervisor,
        )
        await self._reconciler.start()
        self._on_tasks_changed()

    async def _serve_device(self, device_id: str) -> None:
        """Give a device its directory and hub socket back; a failure is that device's alone.

        A device controls what is in its directory: whatever it did there must never
        keep the host from serving the others. The device goes ``failed`` with the
        reason and gets a recovery provision job (unless a job is on it already).
        """
        try:
            await asyncio.to_thread(self._handlers.prepare_dir, device_id)
            await self.hub.listen(device_id)
        except CorralError as exc:
            reason = f"cannot serve its hub socket: {exc}"
            log.error("device %s %s", device_id, reason)
            try:
                await self.store.transition(device_id, DeviceState.FAILED, reason=reason)
                if device_id not in await self.store.devices_with_open_jobs():
                    await self.store.request_reprovision(device_id, f"recovering: {reason}")
            except CorralError as record_exc:
                log.error("could not record the failure of device %s: %s", device_id, record_exc)

    def _on_tasks_changed(self) -> None:
        if self._hosting and self._publishing is None:
            self._publishing = asyncio.create_task(self._publish_tasks(), name="host-status")

    async def _publish_tasks(self) -> None:
        """Write host.json for `corral doctor` (removes it once this process stops hosting)."""
        assert self._lock is not None
        await asyncio.sleep(0)  # one write for a burst of changes
        self._publishing = None
        tasks = self.supervisor.states() if self._hosting else None
        try:
            await asyncio.to_thread(publish_tasks, self.settings.runtime_dir, self._lock.name, tasks)
        except OSError as exc:
            log.warning("could not publish the host's task states: %s", exc)

    async def _stop_host_work(self, *, grace: float) -> None:
        """Stop the reconciler, the worker (running jobs get *grace* seconds) and the hub.

        Every step runs; the first failure is raised at the end. Idempotent.
        """

        async def stop_reconciler() -> None:
            if self._reconciler is not None:
                await self._reconciler.stop()
                self._reconciler = None

        async def stop_workers() -> None:
            # At once: running jobs of both get the same grace, not one after the other.
            workers = [worker for worker in (self._worker, self._flow_worker) if worker is not None]
            self._worker = self._flow_worker = None
            results = await asyncio.gather(*(w.stop(grace=grace) for w in workers), return_exceptions=True)
            for result in results:
                if isinstance(result, BaseException):
                    raise result

        was_hosting, self._hosting = self._hosting, False
        try:
            await run_steps(
                "stopping host work",
                [
                    ("the reconciler", stop_reconciler),
                    ("the job workers", stop_workers),
                    ("the flow runner", self._flow_runner.stop),
                    ("the hub", self.hub.stop),
                    ("the agent event log", lambda: self._event_log.stop(timeout=grace)),
                ],
            )
        finally:
            if was_hosting:
                if self._publishing is not None:
                    await asyncio.gather(self._publishing, return_exceptions=True)
                await self._publish_tasks()
                log.info("host role released: host work stopped")

    async def stop(self) -> None:
        """Stop everything: host work, background tasks, the stream proxy, the database.

        Devices keep running; the next start shows them again. Every step runs even
        when one fails (each failure is logged with its traceback); the first
        failure is then raised again. The embedded Postgres stops unless another
        Corral process still uses it.
        """

        async def release_lock() -> None:
            if self._lock is not None:
                await self._lock.release()
                self._lock = None

        async def stop_stream() -> None:
            if self._stream is not None:
                await self._stream.stop()  # type: ignore[attr-defined]
                self._stream = None

        async def cancel_refreshes() -> None:
            for task in list(self._refresh_tasks):
                task.cancel()
            await asyncio.gather(*self._refresh_tasks, return_exceptions=True)

        await run_steps(
            "stopping Corral",
            [
                ("the host lock watch", lambda: self.supervisor.stop(HOST_TASK)),
                ("host work", lambda: self._stop_host_work(grace=10.0)),
                ("agent event rows", self._hub_events.stop),
                ("flow run listeners", self._runs.stop),
                ("the host lock", release_lock),
                ("background tasks", self.supervisor.stop_all),
                ("the stream proxy", stop_stream),
                ("device refreshes", cancel_refreshes),
                ("the container runtime", self.runtime.close),
                ("the database", self.database.close),
            ],
        )

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
        """Docker, Postgres, this process's role, who the host is, and the background tasks."""
        try:
            await self.runtime.ping()
            docker_ok, docker_message = True, "Docker: connected"
        except DeviceRuntimeError as exc:
            docker_ok, docker_message = False, str(exc)
        try:
            await self.database.ping()
            db_ok, db_message = True, "Postgres: connected"
        except CorralError as exc:
            db_ok, db_message = False, str(exc)
        if self._hosting:
            host = "this process"
        elif not db_ok:
            host = "unknown (Postgres unreachable)"
        else:
            try:
                holder = await self.host()
                host = holder.describe() if holder else "none running"
            except CorralError as exc:
                host = f"unknown ({exc})"
        return Health(
            docker_ok,
            docker_message,
            db_ok,
            db_message,
            role=self.role,
            host=host,
            tasks=tuple(self.supervisor.states()),
        )

    async def jobs(self, state: str | None = None, limit: int = 500) -> list[JobInfo]:
        """Newest first; *state* filters (raises JobError for an unknown one)."""
        return [_job_info(job) for job in await self._jobs.list(state=state, limit=limit)]

    async def retry_job(self, job_id: int) -> JobInfo:
        """Queue a failed or cancelled job again; refused when its device is gone."""
        job = await self._jobs.get(job_id)
        if job.device_id is not None:
            device = await self.store.get(job.device_id)
            if device.state == DeviceState.REMOVED:
                raise InvalidRequest(f"job {job_id} was for {device.name}, which has been removed")
        return _job_info(await self._jobs.retry(job_id))

    async def cancel_job(self, job_id: int) -> JobInfo:
        """Cancel a queued job at once; ask a running one to stop at its next checkpoint.

        A provision cancelled while queued leaves its device ``failed`` ("provisioning
        cancelled"), as a running one does once its handler stops: otherwise the
        reconciler would find a device that should be up and start it again.
        """
        job = _job_info(await self._jobs.cancel(job_id))
        if job.kind == "provision" and job.state == "cancelled" and job.device_id is not None:
            await self.store.fail_unstarted(job.device_id, "provisioning cancelled")
        return job

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

    async def wait_jobs_done(
        self, device_ids: list[str], timeout: float, *, on_change: DeviceListener | None = None
    ) -> list[DeviceInfo]:
        """Wait until no job is queued or running on any of *device_ids*; returns their snapshots.

        Raises TimeoutError after *timeout* seconds. *on_change* sees every device change.
        """
        changed = asyncio.Event()
        wanted = set(device_ids)

        def listener(info: DeviceInfo) -> None:
            changed.set()
            if on_change is not None:
                on_change(info)

        unsubscribe = self.add_listener(listener)
        unsubscribe_jobs = self.add_jobs_listener(changed.set)
        try:
            async with asyncio.timeout(timeout):
                while True:
                    changed.clear()
                    if not wanted & await self.store.devices_with_open_jobs():
                        return [_info(await self.store.get(d)) for d in device_ids]
                    # Notifications wake us; the timeout is a fallback for a lost one.
                    with contextlib.suppress(TimeoutError):
                        await asyncio.wait_for(changed.wait(), 1.0)
        finally:
            unsubscribe()
            unsubscribe_jobs()

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
