"""``corral doctor``: check each dependency and say what to do about a bad one.

It only reads (a client: no host lock, no sockets, no writes), except on first
use: checking the embedded Postgres creates its cluster, and it says so. Besides the
dependencies it shows who the host is and, when the host runs on this machine,
the state of its background tasks (published in the runtime directory).
"""

from __future__ import annotations

import asyncio
import os
import shutil
from dataclasses import dataclass
from typing import TYPE_CHECKING

from backend.config import Settings
from backend.exceptions import CorralError

if TYPE_CHECKING:
    from backend.db import Database

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
        first_use = not Database.exists(settings)
        database = await Database.open(settings)
        try:
            where = settings.database_url or f"embedded in {settings.pgdata_dir}"
            made = "; created it now (first use)" if first_use else ""
            checks.append(Check("postgres", True, f"reachable, schema current ({where}{made})"))
            checks.extend(await _host_checks(settings, database))
        finally:
            await database.close()
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


async def _host_checks(settings: Settings, database: Database) -> list[Check]:
    from backend.host import find_host, published_tasks

    host = await find_host(database)
    if host is None:
        return [
            Check(
                "host",
                True,
                "none running: the window or `corral serve` is the host;"
                " `corral provision`/`rm` host their own jobs",
            )
        ]
    checks = [Check("host", True, host.describe())]
    tasks = await asyncio.to_thread(published_tasks, settings.runtime_dir, host.name)
    if tasks is None:
        checks.append(Check("tasks", True, "the host's background tasks are not visible from here"))
    for task in tasks or []:
        checks.append(Check(f"task {task.name}", task.status != "failing", task.describe()))
    return checks
