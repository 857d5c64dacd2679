"""``corral doctor``: check each dependency and say what to do about a bad one.

It only reads (a client: no host lock, no sockets, no writes), except on first
use: checking the embedded Postgres creates its cluster, and it says so. Besides the
dependencies it shows who the host is and, when the host runs on this machine,
the state of its background tasks (published in the runtime directory).
"""

from __future__ import annotations

import asyncio
import os
import pwd
import re
import shutil
import socket
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING

from backend.config import Settings
from backend.exceptions import CorralError

if TYPE_CHECKING:
    from backend.db import Database

__all__ = ["Check", "device_uid_check", "display_problem", "run_checks"]


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
    problem = display_problem(os.environ)
    where = os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY") or ""
    checks.append(Check("display", problem is None, problem or f"{where} answers"))
    checks.append(device_uid_check(settings.effective_device_uid, os.geteuid()))
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


def device_uid_check(uid: int, operator_uid: int) -> Check:
    """Whoever has the devices' uid on this host owns every device's directory.

    That uid can read each device's agent credential and connect to its screen
    without a token, so it must be the operator's own or belong to no account.
    """
    if uid == operator_uid:
        return Check("device uid", True, f"devices run as your uid ({uid})")
    try:
        account = pwd.getpwuid(uid).pw_name
    except KeyError:
        return Check("device uid", True, f"devices run as uid {uid}, which no account on this host uses")
    return Check(
        "device uid",
        False,
        f"devices run as uid {uid}, which is the account {account!r}: it can reach every device's "
        "screen and credential; set CORRAL_DEVICE_UID to a uid no account uses",
    )


_LOCAL_DISPLAY = re.compile(r"^(?:unix)?:(\d+)(?:\.\d+)?$")


def display_problem(environ: Mapping[str, str]) -> str | None:
    """Why the window could not open here, or None when a display answers.

    Only local X displays (``:N``) are probed, by connecting to the X server's
    socket (abstract or in /tmp/.X11-unix); Wayland and remote displays are
    taken on trust. Blocks for a moment at most (a local connect).
    """
    if environ.get("WAYLAND_DISPLAY") or environ.get("QT_QPA_PLATFORM"):
        return None
    display = environ.get("DISPLAY", "")
    if not display:
        return "no display (DISPLAY is not set): the window needs one; CLI commands work without"
    match = _LOCAL_DISPLAY.match(display)
    if match is None:
        return None
    path = f"/tmp/.X11-unix/X{match[1]}"
    for address in ("\0" + path, path):
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as probe:
            probe.settimeout(2)
            try:
                probe.connect(address)
            except OSError:
                continue
            return None
    return f"DISPLAY={display}, but no X server answers there ({path}): start one or fix DISPLAY"
