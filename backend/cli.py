"""``corral``: the control room, and the same backend from a terminal.

Exit status: 0 success, 1 the operation failed (the message says why and what to
do), 2 a usage error.

Roles (see backend.corral): ``devices``, ``jobs`` and ``doctor`` only read: they
are clients (no host lock, no sockets, no worker, no writes). ``jobs retry`` and
``jobs cancel`` write their request as clients. ``provision``, ``rm``, ``flow
run`` and ``exec`` queue jobs; if no host is running they host until those jobs
have ended, then stop (``flow run`` and ``exec``: backend.cli_runs).
On a data directory with no database yet, ``devices`` and ``jobs`` say so and
create nothing; ``doctor`` creates the embedded cluster (it checks that Postgres
works) and says so. ``flow check`` reads flow files only: no database, no Docker.
"""

from __future__ import annotations

import argparse
import asyncio
import dataclasses
import json
import logging
import os
import sys
from collections.abc import Callable, Coroutine, Sequence
from datetime import UTC, datetime
from typing import Any

from pydantic import ValidationError

from backend import cli_runs
from backend.config import Settings, settings_problems, unknown_variables
from backend.corral import DEVICE_KINDS, Corral, Role
from backend.devices.states import DeviceState
from backend.devices.store import MAX_BATCH
from backend.exceptions import CorralError
from backend.jobs.store import JOB_STATES
from backend.types import DeviceInfo, JobInfo

__all__ = ["main"]

EPILOG = """\
examples:
  corral                                   open the control room (same as `corral ui`)
  corral provision --kind browser --count 4 --wait
  corral devices                           table of devices; --json for scripts
  corral rm browser-3                      remove one device (by name or id)
  corral rm --all                          remove every device
  corral jobs --state failed               failed jobs; `corral jobs retry ID` queues one again
  corral images build                      build the browser device image now
  corral serve                             run the backend without a window
  corral doctor                            check Docker, Postgres and the display
  corral flow check login-check.yaml       check a flow file (no device, no database)
  corral flow run login-check.yaml --device browser-1    run it (see `corral flow run -h`)
  corral exec browser-1 open_url https://example.org     one command (see `corral exec -h`)

host and clients: one Corral process at a time is the host (the window or `corral
serve`): it runs the jobs and serves the devices. `devices`, `jobs` and `doctor`
only read. `provision` and `rm` queue jobs for the running host and return (or
follow them with --wait); `flow run` and `exec` follow their runs to the end. If
no host is running, they act as the host until the jobs they queued have ended,
then stop. `jobs retry|cancel` only queue the request.

environment: CORRAL_DATABASE_URL (default: embedded Postgres), CORRAL_DATA_DIR,
CORRAL_DEVICE_NETWORK (none|bridge), DOCKER_HOST; see README.md for the rest.
"""


def _number(text: str, convert: type[int] | type[float], wanted: str) -> int | float:
    """*text* as a number, or the usage error "expected *wanted*, got …"."""
    try:
        return convert(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected {wanted}, got {text!r}") from None


def _count(text: str) -> int:
    wanted = f"a whole number from 1 to {MAX_BATCH}"
    value = int(_number(text, int, wanted))
    if not 1 <= value <= MAX_BATCH:
        raise argparse.ArgumentTypeError(f"expected {wanted}, got {value}")
    return value


def _kind(text: str) -> str:
    if text not in DEVICE_KINDS:
        raise argparse.ArgumentTypeError(f"unknown kind {text!r}; this build has: {', '.join(DEVICE_KINDS)}")
    return text


def _positive(text: str) -> int:
    value = int(_number(text, int, "a whole number"))
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more, got {value}")
    return value


def _seconds(text: str) -> float:
    value = float(_number(text, float, "a number of seconds"))
    if not value > 0:
        raise argparse.ArgumentTypeError(f"expected a positive number of seconds, got {text}")
    return value


def _env_pair(text: str) -> tuple[str, str]:
    name, equals, value = text.partition("=")
    if not equals or not name.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return name.strip(), value


FLOW_EPILOG = """\
examples:
  corral flow check login-check.yaml             ok: login-check.yaml (13 steps)
  corral flow check flows/ --env USER=alice      every *.yaml/*.yml in flows/
  a problem reads `file:line: command: message`; exit status 2 if any.
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="corral",
        description="Corral: provision, watch and drive a farm of virtual devices on this workstation.",
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("-v", "--verbose", action="store_true", help="log what the backend does")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")

    commands.add_parser("ui", help="open the control room window (default)")
    commands.add_parser("serve", help="run the backend (hub, workers) without a window until Ctrl-C")

    provision = commands.add_parser(
        "provision",
        help="create devices",
        description=(
            "Queue new devices; with --wait, show progress until they are ready. If no Corral"
            " host is running, this command is the host until its jobs have ended."
        ),
    )
    provision.add_argument("--kind", required=True, choices=DEVICE_KINDS, help="device kind")
    provision.add_argument("--count", type=_count, default=1, help=f"how many (1..{MAX_BATCH}, default 1)")
    provision.add_argument(
        "--wait", action="store_true", help="wait until their jobs have ended (ready, or failed for good)"
    )
    provision.add_argument(
        "--timeout", type=_seconds, default=600.0, help="seconds to wait or to host (default 600)"
    )

    devices = commands.add_parser("devices", help="list devices")
    devices.add_argument("--json", action="store_true", help="one JSON array, for scripts")
    devices.add_argument("--all", action="store_true", help="include removed devices")

    remove = commands.add_parser(
        "rm",
        help="remove devices and their containers",
        description=(
            "Queue removal; with --wait, wait until the devices are gone. If no Corral host is"
            " running, this command is the host until its jobs have ended."
        ),
    )
    remove.add_argument("refs", nargs="*", metavar="ID|NAME", help="devices to remove")
    remove.add_argument("--all", action="store_true", help="remove every device")
    remove.add_argument("--wait", action="store_true", help="wait until their remove jobs have ended")
    remove.add_argument(
        "--timeout", type=_seconds, default=120.0, help="seconds to wait or to host (default 120)"
    )

    jobs = commands.add_parser(
        "jobs",
        help="list, retry or cancel jobs",
        description=(
            "Without an action: the newest jobs, with state, attempts, progress and error (reads"
            " only). retry/cancel write the request; the running host carries it out."
        ),
    )
    jobs.add_argument("--state", choices=JOB_STATES, help="only jobs in this state")
    jobs.add_argument("--json", action="store_true", help="one JSON array, for scripts")
    jobs.add_argument("--limit", type=_positive, default=50, help="how many (default 50)")
    job_commands = jobs.add_subparsers(dest="jobs_command", metavar="ACTION")
    for action, text in (("retry", "queue a failed or cancelled job again"), ("cancel", "cancel a job")):
        job_command = job_commands.add_parser(action, help=text)
        job_command.add_argument("job_id", type=int, metavar="ID")

    images = commands.add_parser("images", help="device images")
    image_commands = images.add_subparsers(dest="images_command", metavar="ACTION", required=True)
    build = image_commands.add_parser("build", help="build device images (only what changed)")
    build.add_argument(
        "kinds", nargs="*", type=_kind, metavar="KIND", help=f"{' or '.join(DEVICE_KINDS)}; default: all"
    )
    build.add_argument("--force", action="store_true", help="rebuild even if up to date")

    db = commands.add_parser("db", help="database schema")
    db_commands = db.add_subparsers(dest="db_command", metavar="ACTION", required=True)
    db_commands.add_parser("upgrade", help="migrate to the newest schema (done on every start too)")
    down = db_commands.add_parser("downgrade", help="migrate down to a revision")
    down.add_argument("revision", help="target revision, e.g. base")

    commands.add_parser("doctor", help="check Docker, Postgres and the display; show the host (reads only)")

    flow = commands.add_parser(
        "flow",
        help="check and run flows (Maestro's YAML format)",
        epilog=FLOW_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    flow_commands = flow.add_subparsers(dest="flow_command", metavar="ACTION", required=True)
    check = flow_commands.add_parser(
        "check",
        help="check flow files without running them (no device, no database)",
        description="Check flow files: each unknown command, bad argument, missing variable or role, by line",
        epilog=FLOW_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    check.add_argument(
        "paths", nargs="+", metavar="FILE", help="flow files, or folders of *.yaml/*.yml files"
    )
    check.add_argument(
        "--env",
        type=_env_pair,
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a variable (repeatable)",
    )
    cli_runs.add_flow_run_parser(flow_commands)
    cli_runs.add_exec_parser(commands)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.INFO if args.verbose else logging.WARNING,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
    )
    try:
        Settings()
    except ValidationError as exc:
        for line in settings_problems(exc):
            print(f"corral: {line}", file=sys.stderr)
        return 2
    for name in unknown_variables(os.environ):
        print(f"corral: warning: {name} is not a setting (ignored); see README.md", file=sys.stderr)
    if args.command in (None, "ui"):
        from backend.doctor import display_problem

        problem = display_problem(os.environ)
        if problem is not None:
            print(
                f"corral: {problem}.\n"
                "        Run it from your desktop, or use the commands: `corral devices`, `corral --help`.",
                file=sys.stderr,
            )
            return 1
        from app.main import run  # the UI is optional for headless use

        return int(run(Settings()))
    if args.command == "rm" and not args.refs and not args.all:
        parser.error("rm needs device ids/names or --all")
    command = _COMMANDS[args.command]
    try:
        code = asyncio.run(command(args))
        sys.stdout.flush()  # here, where a closed pipe is still ours to handle
        return code
    except CorralError as exc:
        print(f"corral: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
    except BrokenPipeError:
        # `corral jobs | head`: the reader left; that is not an error of ours.
        # Point stdout at /dev/null so the interpreter's final flush stays quiet.
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 141
    except OSError as exc:
        # A data directory that cannot be made or written (a file in the way, /proc, a full disk).
        where = f" {exc.filename}" if exc.filename else ""
        print(f"corral: cannot use{where}: {exc.strerror or exc}", file=sys.stderr)
        return 1


async def _open(role: Role) -> Corral:
    return await Corral.start(Settings(), role=role, stream=False)


_NO_HOST = "no Corral host is running (open the window or run `corral serve`)"
_HOSTING = (
    "no Corral host is running, so this command is the host until the jobs it queued have ended"
    " (Ctrl-C hands them back to the queue)"
)


def _age(info: DeviceInfo | JobInfo) -> str:
    seconds = int((datetime.now(UTC) - info.created_at).total_seconds())
    for unit, size in (("d", 86400), ("h", 3600), ("m", 60)):
        if seconds >= size:
            return f"{seconds // size}{unit}"
    return f"{seconds}s"


def _table(rows: list[DeviceInfo]) -> str:
    header = ("ID", "NAME", "KIND", "STATE", "AGE", "DETAIL")
    lines = [
        (
            d.id,
            d.name,
            d.kind,
            d.state,
            _age(d),
            d.reason or ("" if d.state in ("ready", "removed") else d.progress_message),
        )
        for d in rows
    ]
    return _columns(header, lines)


def _jobs_table(rows: list[JobInfo]) -> str:
    header = ("ID", "KIND", "DEVICE", "STATE", "TRY", "PROGRESS", "AGE", "DETAIL")
    lines = [
        (
            str(j.id),
            j.kind,
            j.device_id or "-",
            j.state + (" (cancelling)" if j.cancel_requested and j.state == "running" else ""),
            f"{j.attempts}/{j.max_attempts}",
            f"{int(j.progress * 100)}%",
            _age(j),
            # A job that succeeded after a retry keeps the old error; it no longer matters.
            _last_line(j.progress_message if j.state == "succeeded" else j.error or j.progress_message),
        )
        for j in rows
    ]
    return _columns(header, lines)


def _last_line(text: str) -> str:
    lines = text.strip().splitlines()
    return lines[-1] if lines else ""


def _columns(header: tuple[str, ...], lines: Sequence[tuple[str, ...]]) -> str:
    widths = [max(len(str(row[i])) for row in [header, *lines]) for i in range(len(header) - 1)]
    out = []
    for row in [header, *lines]:
        cells = [str(cell).ljust(width) for cell, width in zip(row, widths, strict=False)]
        out.append("  ".join([*cells, str(row[-1])]).rstrip())
    return "\n".join(out)


def _as_json(info: DeviceInfo) -> dict[str, Any]:
    return {
        "id": info.id,
        "name": info.name,
        "kind": info.kind,
        "state": info.state,
        "reason": info.reason,
        "progress": info.progress,
        "progress_message": info.progress_message,
        "created_at": info.created_at.isoformat(),
        "updated_at": info.updated_at.isoformat(),
    }


def _print_progress(info: DeviceInfo) -> None:
    detail = info.reason or info.progress_message
    print(f"  {info.name:<14} {info.state:<12} {int(info.progress * 100):>3}%  {detail}", flush=True)


def _no_database_yet() -> bool:
    """True before the first command that writes: listing must not create the embedded cluster."""
    from backend.db import Database

    return not Database.exists(Settings())


async def _devices(args: argparse.Namespace) -> int:
    rows: list[DeviceInfo] = []
    empty = "no devices yet" if _no_database_yet() else None
    if empty is None:
        empty = "no devices"
        corral = await _open("client")
        try:
            rows = await corral.devices(include_removed=args.all)
        finally:
            await corral.stop()
    if args.json:
        print(json.dumps([_as_json(d) for d in rows], indent=2))
    elif rows:
        print(_table(rows))
    else:
        print(f"{empty}; create some with: corral provision --kind browser --count 2")
    return 0


async def _provision(args: argparse.Namespace) -> int:
    corral = await _open("auto")
    try:
        await corral.runtime.ping()
        created = await corral.provision(args.kind, args.count)
        print(f"requested {len(created)} {args.kind} device(s): {', '.join(d.name for d in created)}")
        ids = [d.id for d in created]
        if corral.is_host:
            print(_HOSTING, flush=True)
        elif not args.wait:
            print("the running Corral host provisions them; follow with `corral devices`")
            return 0
        try:
            final = await corral.wait_jobs_done(ids, args.timeout, on_change=_print_progress)
        except TimeoutError:
            print(f"corral: devices not ready after {args.timeout:g}s; see `corral devices`", file=sys.stderr)
            return 1
    finally:
        await corral.stop()
    print(_table(final))
    return 0 if all(d.state == DeviceState.READY for d in final) else 1


async def _remove(args: argparse.Namespace) -> int:
    corral = await _open("auto")
    try:
        if args.all:
            targets = await corral.devices()
        else:
            targets = [await corral.device(ref) for ref in args.refs]
        if not targets:
            print("no devices to remove")
            return 0
        # Removal needs Docker; say so now rather than after three failed attempts.
        await corral.runtime.ping()
        ids = [d.id for d in targets]
        await corral.remove(ids)
        print(f"removing {', '.join(d.name for d in targets)}")
        if corral.is_host:
            print(_HOSTING, flush=True)
        elif not args.wait:
            print("the running Corral host removes them; follow with `corral devices`")
            return 0
        try:
            final = await corral.wait_jobs_done(ids, args.timeout)
        except TimeoutError:
            print(f"corral: removal not finished after {args.timeout:g}s", file=sys.stderr)
            return 1
    finally:
        await corral.stop()
    failed = [d for d in final if d.state != DeviceState.REMOVED]
    for d in failed:
        why = d.reason or f"still {d.state}, no reason recorded (see `corral jobs`)"
        print(f"corral: {d.name} not removed: {why}", file=sys.stderr)
    return 1 if failed else 0


async def _jobs(args: argparse.Namespace) -> int:
    if _no_database_yet():
        if args.jobs_command in ("retry", "cancel"):
            print(f"corral: no job with id {args.job_id} (no database yet)", file=sys.stderr)
            return 1
        print("[]" if args.json else "no jobs yet")
        return 0
    corral = await _open("client")
    try:
        if args.jobs_command in ("retry", "cancel"):
            if args.jobs_command == "retry":
                job = await corral.retry_job(args.job_id)
                print(f"job {job.id} ({job.kind}) queued again")
            else:
                job = await corral.cancel_job(args.job_id)
                outcome = "cancel requested" if job.state == "running" else job.state
                print(f"job {job.id} ({job.kind}): {outcome}")
            if job.state in ("queued", "running") and await corral.host() is None:
                print(f"{_NO_HOST}: the job waits for one")
            return 0
        rows = await corral.jobs(state=args.state, limit=args.limit)
    finally:
        await corral.stop()
    if args.json:
        print(json.dumps([_job_json(j) for j in rows], indent=2))
    elif rows:
        print(_jobs_table(rows))
    else:
        print("no jobs" + (f" in state {args.state}" if args.state else ""))
    return 0


def _job_json(job: JobInfo) -> dict[str, Any]:
    data = dataclasses.asdict(job)
    data["created_at"] = job.created_at.isoformat()
    data["updated_at"] = job.updated_at.isoformat()
    return data


async def _serve(args: argparse.Namespace) -> int:
    import signal

    # Handlers first: a SIGTERM while starting (or while waiting for the host
    # lock) must stop cleanly too, not kill the process mid-way.
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    starting = asyncio.create_task(Corral.start(Settings(), role="host", stream=True))
    stopping = asyncio.create_task(stop.wait())
    await asyncio.wait({starting, stopping}, return_when=asyncio.FIRST_COMPLETED)
    if not starting.done():
        starting.cancel()  # Corral.start stops what it started
        await asyncio.gather(starting, return_exceptions=True)
        return 0
    corral = starting.result()
    print(f"corral: serving (host); stream proxy on port {corral.stream_port}. Ctrl-C to stop.", flush=True)
    try:
        await stopping
    finally:
        await corral.stop()
    return 0


async def _images(args: argparse.Namespace) -> int:
    from backend.runtime.docker import DockerRuntime

    runtime = DockerRuntime(Settings())
    await runtime.ping()
    for kind in args.kinds or DEVICE_KINDS:

        def progress(fraction: float, message: str, kind: str = kind) -> None:
            print(f"  {kind}: {int(fraction * 100):>3}% {message}", flush=True)

        reference = await runtime.ensure_image(kind, progress, force=args.force)
        print(f"{kind}: {reference}")
    return 0


async def _db(args: argparse.Namespace) -> int:
    from backend.db import Database, migrate

    database = await Database.open(Settings(), migrate_schema=False)
    try:
        if args.db_command == "upgrade":
            await migrate.upgrade(database.url)
            print(f"database at revision {migrate.head_revision()}")
        else:
            await migrate.downgrade(database.url, args.revision)
            print(f"database at revision {args.revision}")
    finally:
        await database.close()
    return 0


async def _doctor(args: argparse.Namespace) -> int:
    from backend.doctor import run_checks

    ok = True
    for check in await run_checks(Settings()):
        ok = ok and check.ok
        print(f"{'ok ' if check.ok else 'BAD'}  {check.name:<18} {check.message}")
    return 0 if ok else 1


async def _flow_check(args: argparse.Namespace) -> int:
    from backend.flows.checking import check_paths

    report = await asyncio.to_thread(check_paths, args.paths, dict(args.env))
    for line in report.lines:
        print(line)
    return 0 if report.ok else 2


_FLOW_ACTIONS: dict[str, Callable[[argparse.Namespace], Coroutine[Any, Any, int]]] = {
    "check": _flow_check,
    "run": cli_runs.flow_run,
}


async def _flow(args: argparse.Namespace) -> int:
    return await _FLOW_ACTIONS[args.flow_command](args)


_COMMANDS: dict[str, Callable[[argparse.Namespace], Coroutine[Any, Any, int]]] = {
    "devices": _devices,
    "jobs": _jobs,
    "provision": _provision,
    "rm": _remove,
    "serve": _serve,
    "images": _images,
    "db": _db,
    "doctor": _doctor,
    "flow": _flow,
    "exec": cli_runs.exec_command,
}


if __name__ == "__main__":
    sys.exit(main())
