"""What a device's container looks like: names, labels and the create request.

Pure functions, no I/O: :func:`container_config` turns a :class:`DeviceSpec` and
the settings into the arguments of the docker SDK's low-level
``create_container`` / ``create_host_config``, so the whole contract is
unit-testable without a daemon.
"""

from __future__ import annotations

import hashlib
import re
import socket
from collections.abc import Collection, Mapping
from dataclasses import dataclass
from typing import Any

from backend.config.paths import CONTAINER_RUN_DIR, VNC_SOCKET
from backend.config.settings import Settings
from backend.runtime.base import DeviceSpec, Instance

__all__ = [
    "LABEL_DEVICE",
    "LABEL_KIND",
    "LABEL_NAME",
    "LABEL_OWNER",
    "ContainerConfig",
    "choose_network_mode",
    "container_config",
    "container_name",
    "instance_from_attrs",
    "instance_from_summary",
    "owner_id",
]

LABEL_DEVICE = "corral.device"
LABEL_KIND = "corral.kind"
LABEL_NAME = "corral.name"
LABEL_OWNER = "corral.owner"
"""Which Corral installation a container belongs to; see :func:`owner_id`."""

CONTAINER_HOME = "/tmp/home"
SHM_SIZE = "256m"
TMP_SIZE = "512m"
PIDS_LIMIT = 1024
"""Chromium runs a few hundred threads, and the pids cgroup counts threads."""
STOP_TIMEOUT_S = 2
"""The entrypoint exits well within this on SIGTERM; docker stop kills after it."""

_SECOND_NS = 1_000_000_000
HEALTHCHECK: dict[str, Any] = {
    # Healthy once Xvnc listens: the socket appears when the RFB server is up.
    "test": ["CMD", "test", "-S", f"{CONTAINER_RUN_DIR}/{VNC_SOCKET}"],
    "interval": 2 * _SECOND_NS,
    "timeout": 2 * _SECOND_NS,
    "retries": 3,
    "start_period": 30 * _SECOND_NS,
}


@dataclass(frozen=True, slots=True)
class ContainerConfig:
    """Arguments for ``APIClient.create_container(**create, host_config=create_host_config(**host))``."""

    create: dict[str, Any]
    host: dict[str, Any]


def owner_id(settings: Settings, hostname: str | None = None) -> str:
    """A stable id of this Corral installation: its host name and data directory, hashed.

    Several Corral instances (or test sessions) may share one Docker daemon; the
    runtime lists, finds and removes only containers carrying its own owner id,
    so one instance's reconciler never removes another's devices as orphans.
    """
    host = hostname if hostname is not None else socket.gethostname()
    key = f"{host}\0{settings.data_dir.expanduser().resolve()}"
    return hashlib.sha256(key.encode()).hexdigest()[:16]


def container_name(device_id: str) -> str:
    return f"corral-{device_id}"


def choose_network_mode(configured: str | None, daemon_networks: Collection[str]) -> str:
    """The device's network: the configured one, else ``bridge`` if the daemon has it, else ``none``.

    Daemons started with ``--bridge=none`` have no ``bridge`` network; a device
    there is isolated rather than failing to start.
    """
    if configured:
        return configured
    return "bridge" if "bridge" in daemon_networks else "none"


def container_config(
    spec: DeviceSpec,
    settings: Settings,
    image: str,
    network_mode: str,
    owner: str,
) -> ContainerConfig:
    """The create request for *spec*'s container.

    The caller must have created ``spec.runtime_dir`` (0700, owned by the device
    uid); the bind mount is a ``Mount`` of type bind, which fails instead of
    letting the daemon create a root-owned directory. No ports are published.
    ``CORRAL_DEVICE_ID`` and ``CORRAL_DEVICE_NAME`` override the same keys in
    ``spec.env``.
    """
    uid = settings.effective_device_uid
    environment = {
        **spec.env,
        "CORRAL_DEVICE_ID": spec.device_id,
        "CORRAL_DEVICE_NAME": spec.name,
        "HOME": CONTAINER_HOME,
    }
    create: dict[str, Any] = {
        "image": image,
        "name": container_name(spec.device_id),
        "labels": {
            LABEL_DEVICE: spec.device_id,
            LABEL_KIND: spec.kind,
            LABEL_NAME: spec.name,
            LABEL_OWNER: owner,
        },
        "environment": environment,
        "user": f"{uid}:{uid}",
        "healthcheck": dict(HEALTHCHECK),
        "stop_signal": "SIGTERM",
        "stop_timeout": STOP_TIMEOUT_S,
        "detach": True,
    }
    memory = f"{settings.device_memory_mb}m"
    host: dict[str, Any] = {
        "mounts": [
            {
                "Type": "bind",
                "Source": str(spec.runtime_dir),
                "Target": CONTAINER_RUN_DIR,
                "ReadOnly": False,
            }
        ],
        "network_mode": network_mode,
        "cap_drop": ["ALL"],
        "security_opt": ["no-new-privileges"],
        "read_only": True,
        "tmpfs": {"/tmp": f"rw,nosuid,nodev,size={TMP_SIZE},mode=1777"},
        "shm_size": SHM_SIZE,
        "pids_limit": PIDS_LIMIT,
        "mem_limit": memory,
        # Equal to mem_limit: no swap on top, the device is killed at its limit.
        "memswap_limit": memory,
        "nano_cpus": int(settings.device_cpus * _SECOND_NS),
    }
    return ContainerConfig(create=create, host=host)


def instance_from_attrs(attrs: Mapping[str, Any]) -> Instance:
    """An :class:`Instance` from a container's inspect data (``Container.attrs``)."""
    state = attrs.get("State") or {}
    labels = (attrs.get("Config") or {}).get("Labels") or {}
    status = str(state.get("Status", "unknown"))
    exit_code = state.get("ExitCode")
    return Instance(
        device_id=str(labels.get(LABEL_DEVICE, "")),
        instance_id=str(attrs.get("Id", "")),
        status=status,
        exit_code=int(exit_code) if exit_code is not None and status != "running" else None,
    )


_EXITED = re.compile(r"^Exited \((-?\d+)\)")


def instance_from_summary(summary: Mapping[str, Any]) -> Instance:
    """An :class:`Instance` from one entry of the container list (no inspect needed).

    The list gives the state as a word and the exit code only inside the
    human-readable status ("Exited (137) 5 seconds ago").
    """
    labels = summary.get("Labels") or {}
    status = str(summary.get("State", "unknown"))
    match = _EXITED.match(str(summary.get("Status", "")))
    return Instance(
        device_id=str(labels.get(LABEL_DEVICE, "")),
        instance_id=str(summary.get("Id", "")),
        status=status,
        exit_code=int(match[1]) if match and status != "running" else None,
    )
