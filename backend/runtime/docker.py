"""Devices as Docker containers: the :class:`~backend.runtime.base.Runtime` on the docker SDK.

Every SDK call runs in a thread through :class:`~backend.runtime.sdk.DockerConnection`
and fails only with :mod:`backend.runtime.exceptions`. The container contract
(name, labels, mounts, limits, user, healthcheck) is
:func:`backend.runtime.containers.container_config`; the image is built by
:mod:`backend.runtime.images`.
"""

from __future__ import annotations

import asyncio
import builtins
import contextlib
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import docker
import docker.errors

from backend.config.settings import Settings
from backend.runtime.base import DeviceSpec, Instance, ProgressCallback, Runtime
from backend.runtime.containers import (
    LABEL_DEVICE,
    LABEL_OWNER,
    choose_network_mode,
    container_config,
    container_name,
    instance_from_attrs,
    instance_from_summary,
    owner_id,
)
from backend.runtime.exceptions import InstanceError, RuntimeUnavailable
from backend.runtime.images import build_image
from backend.runtime.sdk import DockerConnection

__all__ = ["DockerRuntime"]

_CONFLICT = 409
_NOT_FOUND = 404
_NAME_CLAIM_TIMEOUT_S = 5.0


class DockerRuntime:
    """Runs each device as one container on a Docker daemon.

    It sees only its own installation's containers (label ``corral.owner``), so
    several Corral instances (or test sessions) can share a daemon.
    Constructing it never touches the daemon; the first call connects. Every
    method may raise RuntimeUnavailable (daemon unreachable); otherwise
    InstanceError, or ImageBuildError from :meth:`ensure_image` and
    :meth:`create`. Concurrent calls are fine: image builds of one kind are
    serialised, and racing ``create`` calls for one device end with one container.
    """

    def __init__(self, settings: Settings, connection: DockerConnection | None = None) -> None:
        self._settings = settings
        self._connection = connection or DockerConnection(settings.docker_host)
        self._image_locks: dict[str, asyncio.Lock] = {}
        self._network_mode: str | None = settings.device_network
        self._owner = owner_id(settings)

    @property
    def connection(self) -> DockerConnection:
        return self._connection

    async def ping(self) -> None:
        """Raise RuntimeUnavailable (with how to start the daemon) unless it answers."""

        def ping(client: docker.DockerClient) -> None:
            client.ping()

        await self._connection.call(ping, error=RuntimeUnavailable, action="ping the Docker daemon")

    async def ensure_image(
        self, kind: str, progress: ProgressCallback | None = None, *, force: bool = False
    ) -> str:
        """Build the image of *kind* if missing or stale (or always with *force*); return its tag.

        Concurrent calls for one kind wait for a single build.
        """
        lock = self._image_locks.setdefault(kind, asyncio.Lock())
        async with lock:
            return await build_image(self._connection, self._settings, kind, progress, force=force)

    async def create(self, spec: DeviceSpec) -> Instance:
        """Start the device's container; if one exists for the device, start it if needed and return it.

        The caller must have created ``spec.runtime_dir`` (0700, owned by the
        device uid). Builds the image first if it is missing or stale. A
        container that fails to start is removed again. Returns once the
        container runs; the screen answers on ``vnc.sock`` a moment later.
        """
        existing = await self._inspect(spec.device_id)
        if existing is not None:
            return await self._revive(spec, existing)
        image = await self.ensure_image(spec.kind)
        config = container_config(spec, self._settings, image, await self.network_mode(), self._owner)

        def create_and_start(client: docker.DockerClient) -> Mapping[str, Any] | None:
            host_config = client.api.create_host_config(**config.host)
            try:
                created = client.api.create_container(**config.create, host_config=host_config)
            except docker.errors.APIError as exc:
                if exc.status_code == _CONFLICT:
                    return None  # a concurrent create won the name
                raise
            container_id = created["Id"]
            try:
                client.api.start(container_id)
            except docker.errors.APIError:
                # Leave nothing behind: the next attempt starts from scratch.
                with contextlib.suppress(docker.errors.APIError):
                    client.api.remove_container(container_id, force=True)
                raise
            attrs: Mapping[str, Any] = client.api.inspect_container(container_id)
            return attrs

        attrs = await self._connection.call(
            create_and_start, error=InstanceError, action=f"create the container of device {spec.device_id}"
        )
        if attrs is not None:
            return instance_from_attrs(attrs)
        return await self._revive(spec, await self._claim_name(spec.device_id))

    async def find(self, device_id: str) -> Instance | None:
        """The device's container, running or not, or None."""
        attrs = await self._inspect(device_id)
        return instance_from_attrs(attrs) if attrs is not None else None

    async def logs(self, device_id: str, tail: int = 50) -> str:
        """The last *tail* lines the device's container wrote (stdout and stderr); "" if it has none."""

        def read(client: docker.DockerClient) -> str:
            for container_id in self._container_ids(client, device_id):
                try:
                    data = client.api.logs(container_id, stdout=True, stderr=True, tail=tail)
                except docker.errors.NotFound:
                    continue
                return data.decode("utf-8", "replace") if isinstance(data, bytes) else str(data)
            return ""

        return await self._connection.call(
            read, error=InstanceError, action=f"read the logs of device {device_id}"
        )

    async def remove(self, device_id: str) -> None:
        """Kill and delete the device's container(s). No error if there are none."""

        def remove(client: docker.DockerClient) -> None:
            for container_id in self._container_ids(client, device_id):
                try:
                    client.api.remove_container(container_id, force=True, v=True)
                except docker.errors.APIError as exc:
                    # Gone already, or a removal is under way: either way it goes.
                    if exc.status_code not in (_NOT_FOUND, _CONFLICT):
                        raise

        await self._connection.call(
            remove, error=InstanceError, action=f"remove the container of device {device_id}"
        )

    async def network_mode(self) -> str:
        """The network devices join: settings.device_network, else bridge if the daemon has one, else none."""
        if self._network_mode is None:

            def names(client: docker.DockerClient) -> builtins.list[str]:
                return [str(network["Name"]) for network in client.api.networks()]

            daemon_networks = await self._connection.call(
                names, error=InstanceError, action="list the daemon's networks"
            )
            self._network_mode = choose_network_mode(self._settings.device_network, daemon_networks)
        return self._network_mode

    async def close(self) -> None:
        """Release the connection pool. The runtime reconnects if used again."""
        await asyncio.to_thread(self._connection.close)

    async def list(self) -> builtins.list[Instance]:
        """Every device container of this Corral installation, running or not (one API call).

        That is, containers labelled ``corral.device`` whose ``corral.owner`` is
        this installation's (:func:`~backend.runtime.containers.owner_id`).
        """
        labels = [LABEL_DEVICE, f"{LABEL_OWNER}={self._owner}"]

        def summaries(client: docker.DockerClient) -> builtins.list[Mapping[str, Any]]:
            found: builtins.list[Mapping[str, Any]] = client.api.containers(
                all=True, filters={"label": labels}
            )
            return found

        found = await self._connection.call(summaries, error=InstanceError, action="list device containers")
        return [instance_from_summary(summary) for summary in found]

    # -- internals (blocking helpers run inside DockerConnection.call) ---------

    def _container_ids(self, client: docker.DockerClient, device_id: str) -> builtins.list[str]:
        """Ids of this installation's containers labelled as *device_id*, running ones first."""
        labels = [f"{LABEL_DEVICE}={device_id}", f"{LABEL_OWNER}={self._owner}"]
        summaries = client.api.containers(all=True, filters={"label": labels})
        ordered = sorted(summaries, key=lambda summary: summary.get("State") != "running")
        return [str(summary["Id"]) for summary in ordered]

    async def _inspect(self, device_id: str) -> Mapping[str, Any] | None:
        def inspect(client: docker.DockerClient) -> Mapping[str, Any] | None:
            for container_id in self._container_ids(client, device_id):
                try:
                    attrs: Mapping[str, Any] = client.api.inspect_container(container_id)
                except docker.errors.NotFound:
                    continue
                return attrs
            return None

        return await self._connection.call(
            inspect, error=InstanceError, action=f"find the container of {device_id}"
        )

    async def _claim_name(self, device_id: str) -> Mapping[str, Any]:
        """The container holding the device's name after a create lost the race for it.

        The daemon reserves a name a moment before the container shows up, so
        this polls inspect-by-name briefly. Raises InstanceError if the name
        belongs to a container that is not this installation's device.
        """
        name = container_name(device_id)

        def inspect(client: docker.DockerClient) -> Mapping[str, Any] | None:
            try:
                attrs: Mapping[str, Any] = client.api.inspect_container(name)
            except docker.errors.NotFound:
                return None
            return attrs

        deadline = time.monotonic() + _NAME_CLAIM_TIMEOUT_S
        while (
            attrs := await self._connection.call(inspect, error=InstanceError, action=f"inspect {name}")
        ) is None:
            if time.monotonic() > deadline:
                raise InstanceError(f"The name {name} is taken, but no container by that name appeared.")
            await asyncio.sleep(0.05)
        labels = (attrs.get("Config") or {}).get("Labels") or {}
        if labels.get(LABEL_DEVICE) != device_id or labels.get(LABEL_OWNER) != self._owner:
            raise InstanceError(
                f"A container named {name} exists but is not this Corral's device {device_id} "
                f"(it belongs to another Corral instance, or is not Corral's): `docker rm -f {name}`."
            )
        return attrs

    async def _revive(self, spec: DeviceSpec, attrs: Mapping[str, Any]) -> Instance:
        """Bring an existing container to running: start, unpause, or replace a dead one."""
        instance = instance_from_attrs(attrs)
        if instance.status in ("running", "restarting"):
            return instance
        if instance.status in ("dead", "removing"):
            await self.remove(spec.device_id)
            deadline = time.monotonic() + _NAME_CLAIM_TIMEOUT_S
            while await self._inspect(spec.device_id) is not None:
                if time.monotonic() > deadline:
                    raise InstanceError(f"The old container of {spec.device_id} is not going away.")
                await asyncio.sleep(0.1)
            return await self.create(spec)

        def wake(client: docker.DockerClient) -> Mapping[str, Any]:
            if instance.status == "paused":
                client.api.unpause(instance.instance_id)
            else:
                client.api.start(instance.instance_id)
            woken: Mapping[str, Any] = client.api.inspect_container(instance.instance_id)
            return woken

        woken = await self._connection.call(
            wake, error=InstanceError, action=f"start the container of {spec.device_id}"
        )
        return instance_from_attrs(woken)


if TYPE_CHECKING:

    def _implements_runtime(settings: Settings) -> Runtime:
        # mypy checks here that DockerRuntime satisfies the Runtime protocol.
        return DockerRuntime(settings)
