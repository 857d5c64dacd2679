"""Settings from the environment (``CORRAL_*``), with defaults that run embedded."""

from __future__ import annotations

import ipaddress
import os
from collections.abc import Mapping
from functools import cached_property
from pathlib import Path
from typing import Literal

import platformdirs
from pydantic import Field, ValidationError, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

from backend.config.paths import DEVICES_DIR, DevicePaths

__all__ = ["Settings", "settings_problems", "unknown_variables"]

DeviceNetwork = Literal["none", "bridge"]
GridEncoding = Literal["raw", "tight"]


def _default_data_dir() -> Path:
    # Not root's ~/.local/share: as root, the embedded Postgres runs as another
    # user, which could not enter /root (0700), and Corral will not open it up.
    if os.geteuid() == 0:
        return Path("/var/lib/corral")
    return Path(platformdirs.user_data_dir("corral", appauthor=False))


def _default_runtime_dir() -> Path:
    # XDG_RUNTIME_DIR is per user and tmpfs. Root usually has none and gets
    # /run/corral, where no other user can create anything first; anyone else
    # without one falls back to /tmp, where backend.config.rundir refuses a
    # directory another user made.
    base = os.environ.get("XDG_RUNTIME_DIR")
    if base:
        return Path(base) / "corral"
    if os.geteuid() == 0:
        return Path("/run/corral")
    return Path(f"/tmp/corral-{os.getuid()}")


def default_concurrency(cpus: int | None = None, memory_bytes: int | None = None) -> int:
    """Jobs to run at once: two per core (a job mostly waits on Docker), one per GiB
    of memory (a booting browser device peaks near 300 MB), between 2 and 16."""
    cpus = cpus or os.cpu_count() or 2
    if memory_bytes is None:
        memory_bytes = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    return max(2, min(16, cpus * 2, memory_bytes // (1 << 30)))


class Settings(BaseSettings):
    """Everything Corral reads from its environment.

    ``CORRAL_DATABASE_URL`` unset means the embedded Postgres cluster in the data
    directory. Paths are created on demand by the components that own them.
    """

    # Each field's docstring is its description: README's settings table is
    # rendered from them (python -m backend.config.docs README.md).
    model_config = SettingsConfigDict(env_prefix="CORRAL_", extra="ignore", use_attribute_docstrings=True)

    data_dir: Path = Field(
        default_factory=_default_data_dir,
        json_schema_extra={
            "shown_default": "`$XDG_DATA_HOME/corral` (`~/.local/share/corral`), `/var/lib/corral` for root"
        },
    )
    """Database (the embedded Postgres cluster), signing secret, logs, wheel cache. As
    root, the embedded Postgres runs as the user ``pgserver``, which must be able to
    enter every directory above it; Corral refuses otherwise, never widens them."""
    runtime_dir: Path = Field(
        default_factory=_default_runtime_dir,
        json_schema_extra={
            "shown_default": "`$XDG_RUNTIME_DIR/corral`, else `/run/corral` for root, else `/tmp/corral-UID`"
        },
    )
    """The devices' private socket directories. Must be yours and writable by no one
    else, as every directory on the way to it: Corral refuses it otherwise."""
    database_url: str | None = None
    """``postgresql+asyncpg://user:pass@host/db`` of an external Postgres; unset runs
    the embedded one in the data directory."""
    docker_host: str | None = None
    """The Docker daemon; unset uses ``DOCKER_HOST``, else ``unix:///var/run/docker.sock``."""
    device_network: DeviceNetwork | None = None
    """What a device's browser can reach; unset picks ``bridge`` when Docker has one, else ``none``."""
    device_uid: int | None = Field(
        default=None, ge=0, json_schema_extra={"shown_default": "your uid (10001 for root)"}
    )
    """uid the device's processes run as, owner of its runtime directory."""
    device_cpus: float = Field(default=1.0, gt=0)
    """CPUs each device container may use."""
    device_memory_mb: int = Field(default=1024, ge=64)
    """Memory limit of each device container, in MiB."""
    image_prefix: str = "corral"
    """Device images are ``<prefix>/<kind>:latest``, built on first use."""
    agent_session_ttl: float = Field(default=60.0, gt=0, le=3600)
    """Seconds a session token lives: the agent derives one from its device's
    credential file for every connection; the hub admits each once."""
    agent_replace_interval: float = Field(default=5.0, ge=0)
    """A new agent connection replaces a device's live one at most this often;
    sooner it is refused (HTTP 429), so two holders of one credential cannot fight."""
    stream_token_ttl: float = Field(default=60.0, gt=0)
    """Seconds a pane's stream URL stays valid before it is opened."""
    stream_host: str = "127.0.0.1"
    """Address the stream proxy listens on."""
    stream_port: int = Field(default=0, ge=0, le=65535)
    """Port of the stream proxy; 0 picks a free one at start."""
    job_concurrency: int = Field(
        default_factory=lambda: default_concurrency(),
        ge=1,
        json_schema_extra={"shown_default": "2 per core, at most 1 per GiB of memory, 2..16"},
    )
    """Provisioning jobs run at once; the default is sized to this host."""
    flow_concurrency: int = Field(default=64, ge=1, le=1024)
    """Flow runs (and `corral exec` commands) carried out at once, over all devices; a run
    mostly waits on its device, so this is far above the provisioning limit."""
    job_max_attempts: int = Field(default=3, ge=1)
    """Attempts a job gets before it fails for good; a job keeps the number it was
    queued with, so set it where jobs are requested (the window, `corral provision`)."""
    job_lease_seconds: float = Field(default=5.0, gt=0)
    """A killed worker's jobs are requeued within about 1.3 x this."""
    reconcile_interval: float = Field(default=10.0, gt=0)
    """Seconds between passes that compare Docker's containers with the database."""
    parked_ttl_hours: float = Field(default=24.0, ge=0)
    """Devices left failed/stopped this long are removed; 0 keeps them forever."""
    boot_timeout: float = Field(default=60.0, gt=0)
    """Seconds a new device has to show its screen and connect its agent."""
    grid_encoding: GridEncoding = "raw"
    """What the control room's panes ask devices for: raw pixels (cheapest on one
    machine), or Tight/JPEG (less data: many panes of full-screen motion, video)."""

    @field_validator("database_url")
    @classmethod
    def _postgres_url(cls, value: str | None) -> str | None:
        # Users paste the URLs psql and libpq take; SQLAlchemy needs the driver named.
        if value is None or not value.strip():
            return None
        scheme, sep, rest = value.strip().partition("://")
        if not sep or scheme not in ("postgresql", "postgres", "postgresql+asyncpg"):
            raise ValueError("must be a Postgres URL: postgresql://user:password@host/database")
        return f"postgresql+asyncpg://{rest}"

    @field_validator("stream_host")
    @classmethod
    def _loopback(cls, value: str) -> str:
        try:
            loopback = ipaddress.IPv4Address(value).is_loopback
        except ValueError:
            loopback = False
        if not loopback:
            raise ValueError("must be an IPv4 loopback address such as 127.0.0.1 (the proxy is local only)")
        return value

    @cached_property
    def effective_device_uid(self) -> int:
        if self.device_uid is not None:
            return self.device_uid
        uid = os.getuid()
        return uid if uid != 0 else 10001

    @property
    def pgdata_dir(self) -> Path:
        return self.data_dir / "pgdata"

    @property
    def secret_path(self) -> Path:
        return self.data_dir / "secret.key"

    @property
    def devices_root(self) -> Path:
        """The folder holding every device's runtime directory."""
        return self.runtime_dir / DEVICES_DIR

    def device_dir(self, device_id: str) -> Path:
        """The private runtime directory of one device (VNC and hub sockets)."""
        return self.devices_root / device_id

    def device_paths(self, device_id: str) -> DevicePaths:
        """The device's runtime directory and the sockets in it."""
        return DevicePaths(self.device_dir(device_id))


def settings_problems(error: ValidationError) -> list[str]:
    """One line per bad ``CORRAL_*`` variable: its name, what is wrong, what it was."""
    lines = []
    for problem in error.errors():
        name = "CORRAL_" + "_".join(str(part) for part in problem["loc"]).upper()
        message = str(problem["msg"]).removeprefix("Value error, ")
        lines.append(f"{name}: {message} (got {problem.get('input')!r})")
    return lines


NOT_SETTINGS = frozenset({"CORRAL_REQUIRE", "CORRAL_DOCKERD_ARGS"})
"""``CORRAL_*`` variables read by the test suite and the installer, not by Settings."""


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """``CORRAL_*`` names in *environ* that are no setting (a typo is ignored otherwise)."""
    known = {f"CORRAL_{name.upper()}" for name in Settings.model_fields} | NOT_SETTINGS
    return sorted(name for name in environ if name.startswith("CORRAL_") and name not in known)
