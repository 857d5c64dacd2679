"""``corral doctor``: check each dependency and say what to do about a bad one."""

from __future__ import annotations

import asyncio
import os
import shutil
from dataclasses import dataclass

from backend.config import Settings
from backend.exceptions import CorralError

__all__ = ["Check", "run_checks"]


@dataclass(frozen=True, slots=True)
class Check:
    name: str
    ok: bool
    message: str


async def run_checks(settings: Settings) -> list[Check]:
    from backend.db import Database
    from backend.runtime.docker import DockerRuntime

    checks = []
    try:
        await DockerRuntime(settings).ping()
        checks.append(Check("docker", True, "daemon reachable"))
    except CorralError as exc:
        checks.append(Check("docker", False, str(exc)))
    try:
        database = await Database.open(settings)
        await database.close()
        where = settings.database_url or f"embedded in {settings.pgdata_dir}"
        checks.append(Check("postgres", True, f"reachable, schema current ({where})"))
    except CorralError as exc:
        checks.append(Check("postgres", False, str(exc)))
    display = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")
    checks.append(
        Check(
            "display",
            bool(display),
            display or "no DISPLAY: the window needs one (CLI commands work without)",
        )
    )
    kvm = await asyncio.to_thread(os.path.exists, "/dev/kvm")
    checks.append(
        Check("kvm", True, "/dev/kvm present" if kvm else "no /dev/kvm: android devices unavailable")
    )
    novnc = shutil.which("npm") is not None
    checks.append(Check("npm", novnc, "npm found" if novnc else "npm missing: run `make run` to install"))
    return checks
