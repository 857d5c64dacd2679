"""``corral flow run`` and ``corral exec``: flows and single commands from a terminal.

Both go through the same calls as the window and the Python client
(:meth:`Corral.run_flow`, :meth:`Corral.command`): runs are jobs in Postgres that
the host carries out. With no host running, the command is the host until its
runs have ended.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import contextlib
import json
import re
import signal
import sys
import time
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TextIO

from backend.config import Settings
from backend.corral import DEVICE_KINDS, Corral
from backend.exceptions import CorralError
from backend.flows.checking import flow_files
from backend.flows.loading import load
from backend.flows.model import DEFAULT_ROLE, Flow, FlowError
from backend.flows.runs import new_batch
from backend.flows.runs_args import exec_args
from backend.flows.runs_errors import InvalidRun
from backend.flows.runs_report import RunReport, as_json, junit, summary, where
from backend.flows.runs_service import validate_command
from backend.types import FlowRunInfo

__all__ = [
    "FLOW_RUN_EPILOG",
    "add_exec_parser",
    "add_flow_run_parser",
    "exec_command",
    "flow_run",
    "printable",
]

FLOW_RUN_EPILOG = """\
examples:
  corral flow run login-check.yaml --device browser-1
  corral flow run flows/ --all --env USER=alice --env PASSWORD=secret
  corral flow run login-check.yaml --devices browser-1,browser-3 --parallel 1
  corral flow run pair.yaml --role viewer=browser-1 --role scanner=browser-2
  corral flow run login-check.yaml --kind browser --format junit -o report.xml
  corral flow run login-check.yaml --all --json > runs.json

Every flow and device is checked first (problems: exit 2, nothing runs). While
the runs go, a table shows each run's device, step n/m, current step, time and
verdict; a summary follows. Exit 0 only if every run passed, 1 otherwise; Ctrl-C
cancels every run of this batch (they end `cancelled`, the devices stay usable),
exit 130.
"""

EXEC_EPILOG = """\
examples:
  corral exec browser-1 ping
  corral exec browser-1 open_url https://example.org
  corral exec browser-1 tap "Log in"                   text selector (a regular expression)
  corral exec browser-1 tap target.css='#submit' timeout=5
  corral exec browser-1 input_text 'alice@example.org'
  corral exec browser-1 read_qr --json
  corral exec browser-1 screenshot -o shot.png

One plain argument sets the command's main field (the URL, the text, the
selector); others are key=value (values are JSON when they parse as JSON). The
result is printed as text, or as JSON with --json. Exit 1 when the command fails,
2 for an unknown command, a bad argument or an unknown device.
"""

_HOSTING = (
    "no Corral host is running, so this command is the host until its runs have ended (Ctrl-C cancels them)"
)
_CANCEL_WAIT = 60.0
"""Seconds Ctrl-C waits for the runs to end cancelled before giving up on them."""
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")
_CONTROL_OR_NEWLINE = re.compile(r"[\x00-\x1f\x7f-\x9f]")


def printable(text: str, *, lines: bool = True) -> str:
    """*text* safe for a terminal: control characters (escape sequences) shown as ``\\x1b``.

    What runs print comes from devices (errors, page text, QR codes) and flow files:
    an escape sequence in it must not drive the operator's terminal. Newlines and tabs
    stay when *lines* is true.
    """
    pattern = _CONTROL if lines else _CONTROL_OR_NEWLINE
    return pattern.sub(lambda match: f"\\x{ord(match.group()):02x}", text)


# --- arguments -----------------------------------------------------------------------


def _key_value(text: str) -> tuple[str, str]:
    key, sep, value = text.partition("=")
    if not sep or not key.strip():
        raise argparse.ArgumentTypeError(f"expected KEY=VALUE, got {text!r}")
    return key.strip(), value


def _device_list(text: str) -> list[str]:
    names = [name.strip() for name in text.split(",") if name.strip()]
    if not names:
        raise argparse.ArgumentTypeError(f"expected device names separated by commas, got {text!r}")
    return names


def _parallel(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a whole number, got {text!r}") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"expected 1 or more, got {value}")
    return value


def add_flow_run_parser(
    flow_commands: argparse._SubParsersAction[argparse.ArgumentParser],
) -> argparse.ArgumentParser:
    """Add ``run`` to the ``corral flow`` actions (*flow_commands*: its subparsers)."""
    run = flow_commands.add_parser(
        "run",
        help="run flows on devices",
        description=(
            "Run flow files (Maestro's YAML) on devices: one run per device, or one run on the"
            " --role devices of a flow that declares roles."
        ),
        epilog=FLOW_RUN_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    run.add_argument("paths", nargs="+", metavar="FILE|DIR", help="flow files, or folders of them (*.yaml)")
    which = run.add_mutually_exclusive_group()
    which.add_argument("--device", action="append", default=[], metavar="NAME", help="a device (repeatable)")
    which.add_argument("--devices", type=_device_list, metavar="A,B", help="devices, separated by commas")
    which.add_argument("--all", action="store_true", help="every device")
    which.add_argument("--kind", choices=DEVICE_KINDS, help="every device of this kind")
    run.add_argument(
        "--role",
        action="append",
        type=_key_value,
        default=[],
        metavar="ROLE=DEVICE",
        help="the device that plays ROLE in a flow with roles (repeatable)",
    )
    run.add_argument("--parallel", type=_parallel, metavar="N", help="at most N runs at once (default: all)")
    run.add_argument(
        "--env", action="append", type=_key_value, default=[], metavar="KEY=VALUE", help="a flow variable"
    )
    run.add_argument("--json", action="store_true", help="the runs and their steps as JSON on stdout")
    run.add_argument(
        "--format", choices=("summary", "junit"), default="summary", help="report format (default summary)"
    )
    run.add_argument("-o", "--output", metavar="REPORT", help="write the report to this file")
    return run


def add_exec_parser(commands: argparse._SubParsersAction[argparse.ArgumentParser]) -> argparse.ArgumentParser:
    execute = commands.add_parser(
        "exec",
        help="run one command on a device",
        description="Run one agent command on a device and print its result.",
        epilog=EXEC_EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    execute.add_argument("device", metavar="DEVICE", help="device name or id")
    execute.add_argument("name", metavar="COMMAND", help="open_url, tap, input_text, screenshot, read_qr, …")
    execute.add_argument("words", nargs="*", metavar="ARG", help="the main field, or key=value")
    execute.add_argument("--json", action="store_true", help="print the result as JSON")
    execute.add_argument("-o", "--output", metavar="FILE", help="screenshot: write the PNG here")
    execute.add_argument("--timeout", type=float, metavar="SECONDS", help="how long the command may wait")
    return execute


# --- corral exec ---------------------------------------------------------------------


async def exec_command(args: argparse.Namespace) -> int:
    try:
        values = exec_args(args.name, args.words)
        validate_command(args.name, {**values, **({"timeout": args.timeout} if args.timeout else {})})
    except CorralError as exc:
        print(f"corral: {exc}", file=sys.stderr)
        return 2
    if args.timeout is not None and not args.timeout > 0:
        print(
            f"corral: --timeout: expected a positive number of seconds, got {args.timeout:g}", file=sys.stderr
        )
        return 2
    corral = await Corral.start(Settings(), role="auto", stream=False)
    try:
        try:
            await corral.device(args.device)
        except CorralError as exc:  # an unknown device is bad input (exit 2), not a failed command
            print(f"corral: {exc}", file=sys.stderr)
            return 2
        if corral.is_host:
            print(
                "no Corral host is running, so this command is the host until its command has ended",
                file=sys.stderr,
                flush=True,
            )
        try:
            data = await corral.command(args.device, args.name, values, args.timeout)
        except InvalidRun as exc:  # a device of a kind without that command
            print(f"corral: {exc}", file=sys.stderr)
            return 2
    finally:
        await corral.stop()
    png = data.pop("png", None)
    if args.output:
        if not isinstance(png, str):
            print(f"corral: {args.name} returned no image to write to {args.output}", file=sys.stderr)
            return 1
        try:
            image = base64.b64decode(png, validate=True)
        except (binascii.Error, ValueError):
            print("corral: the device sent an image that is not base64", file=sys.stderr)
            return 1
        await asyncio.to_thread(Path(args.output).write_bytes, image)
        data["written"] = args.output
    elif isinstance(png, str):
        data["png"] = f"<{len(png) * 3 // 4} bytes; write it with -o FILE>"
    if args.json:
        print(json.dumps(data, indent=2))
    else:
        print(printable(_plain(data)))
    return 0


def _plain(data: Mapping[str, Any]) -> str:
    """A result as a person reads it: a lone value bare, else ``key: value`` lines."""
    if not data:
        return "ok"
    if len(data) == 1:
        (value,) = data.values()
        return value if isinstance(value, str) else json.dumps(value)
    return "\n".join(
        f"{key}: {value if isinstance(value, str) else json.dumps(value)}" for key, value in data.items()
    )


# --- corral flow run -----------------------------------------------------------------


def _load(path: Path, env: Mapping[str, str]) -> Flow:
    return load(path, dict(env))


@dataclass
class _Unit:
    """What one run_flow call starts: a flow on one device, or on its role devices."""

    flow: Flow
    devices: list[str] = field(default_factory=list)
    roles: dict[str, str] = field(default_factory=dict)


def _has_roles(flow: Flow) -> bool:
    return bool(set(flow.roles) - {DEFAULT_ROLE})


async def flow_run(args: argparse.Namespace) -> int:
    env = dict(args.env)
    roles = dict(args.role)
    files, found = flow_files(args.paths)
    problems = [str(problem) for problem in found]
    loaded: list[Flow] = []
    for path in files:
        try:
            loaded.append(await asyncio.to_thread(_load, path, env))
        except FlowError as exc:
            problems.extend(str(problem) for problem in exc.problems)
        except OSError as exc:
            problems.append(f"{path}: cannot read: {exc.strerror or exc}")
    chose = bool(args.device or args.devices or args.all or args.kind)
    plain = [flow for flow in loaded if not _has_roles(flow)]
    for flow in loaded:
        if _has_roles(flow):
            missing = [role for role in flow.roles if role not in roles]
            if missing:
                problems.append(
                    f"{flow.path or flow.name}: flow declares roles; give --role {missing[0]}=DEVICE"
                    + (f" (and {', '.join(missing[1:])})" if missing[1:] else "")
                )
    declared = {role for flow in loaded if _has_roles(flow) for role in flow.roles}
    for role in sorted(set(roles) - declared):
        problems.append(f"--role {role}=…: no flow here declares the role {role!r}")
    if plain and not chose:
        problems.append("choose devices: --device NAME, --devices A,B, --all or --kind KIND")
    if problems:
        for problem in problems:
            print(f"corral: {problem}", file=sys.stderr)
        print(
            f"corral: nothing was run ({len(problems)} problem{'s' if len(problems) != 1 else ''})",
            file=sys.stderr,
        )
        return 2
    report_to_stdout = args.json or (args.format == "junit" and not args.output)
    out = sys.stderr if report_to_stdout else sys.stdout
    corral = await Corral.start(Settings(), role="auto", stream=False)
    try:
        try:
            devices = await _chosen_devices(corral, args) if plain else []
            role_ids = {role: (await corral.device(ref)).id for role, ref in roles.items()}
        except CorralError as exc:  # an unknown device, none of that kind: bad input, like a flow's
            print(f"corral: {exc}\ncorral: nothing was run (1 problem)", file=sys.stderr)
            return 2
        if corral.is_host:
            print(_HOSTING, file=out, flush=True)
        units = [
            _Unit(flow, roles={role: role_ids[role] for role in flow.roles})
            if _has_roles(flow)
            else _Unit(flow, devices=[device])
            for flow in loaded
            for device in (devices if not _has_roles(flow) else [""])
        ]
        names = {d.id: d.name for d in await corral.devices(include_removed=True)}
        batch = _Batch(corral, units, args.parallel or len(units), names, _display(out))
        interrupted = await batch.run()
        reports = [
            RunReport(run, await corral.flow_steps(run.id), names)
            for run in sorted(batch.finished.values(), key=lambda r: r.id)
        ]
    finally:
        await corral.stop()
    await _write_reports(args, reports, out)
    if interrupted:
        return 130
    return 0 if reports and all(r.run.state == "passed" for r in reports) else 1


async def _chosen_devices(corral: Corral, args: argparse.Namespace) -> list[str]:
    """Ids of the devices the options name; raises CorralError for an unknown one."""
    if args.all or args.kind:
        found = [d for d in await corral.devices() if not args.kind or d.kind == args.kind]
        if not found:
            raise CorralError("no devices" + (f" of kind {args.kind}" if args.kind else "") + " to run on")
        return [d.id for d in found]
    refs = args.device or args.devices or []
    return [(await corral.device(ref)).id for ref in refs]


async def _write_reports(args: argparse.Namespace, reports: list[RunReport], out: TextIO) -> None:
    text = summary(reports)
    if args.json:
        print(json.dumps([as_json(r) for r in reports], indent=2))
    print(printable(text), file=out)
    if args.format == "junit":
        xml = junit(reports)
        if args.output:
            await asyncio.to_thread(Path(args.output).write_text, xml)
            print(f"JUnit report: {args.output}", file=out)
        else:
            sys.stdout.write(xml)
    elif args.output:
        await asyncio.to_thread(Path(args.output).write_text, text + "\n")


# --- the batch and its live table ----------------------------------------------------


class _Display:
    """Shows runs while they go; :meth:`update` with the batch's current runs."""

    def __init__(self, out: TextIO, names: Mapping[str, str] | None = None) -> None:
        self.out = out
        self.names: Mapping[str, str] = names or {}

    def start(self) -> None: ...

    def update(self, runs: Sequence[FlowRunInfo]) -> None: ...

    def stop(self) -> None: ...

    def row(self, run: FlowRunInfo) -> tuple[str, str, str, str, str, str]:
        if run.started_at is None:
            elapsed = ""
        else:
            end = run.finished_at.timestamp() if run.finished_at else time.time()
            elapsed = f"{max(0.0, end - run.started_at.timestamp()):.1f}s"
        step = run.error if run.state == "failed" and run.error else run.current_step
        report = RunReport(run, (), self.names)
        cells = (where(report), run.name, f"{run.steps_done}/{run.steps_total}", step, elapsed, run.state)
        device, flow, count, current, elapsed, state = (printable(cell, lines=False) for cell in cells)
        return device, flow, count, current, elapsed, state


class _PlainDisplay(_Display):
    """One line whenever a run moves (for logs and pipes)."""

    def __init__(self, out: TextIO) -> None:
        super().__init__(out)
        self._seen: dict[int, tuple[str, int, str]] = {}

    def update(self, runs: Sequence[FlowRunInfo]) -> None:
        for run in runs:
            key = (run.state, run.steps_done, run.current_step)
            if self._seen.get(run.id) != key:
                self._seen[run.id] = key
                device, flow, count, step, elapsed, verdict = self.row(run)
                print(
                    f"{device}  {flow}  {count}  {verdict}  {elapsed}  {step}".rstrip(),
                    file=self.out,
                    flush=True,
                )


class _LiveDisplay(_Display):
    """rich's Live table on a terminal, redrawn on every change and each second."""

    def __init__(self, out: TextIO) -> None:
        from rich.console import Console
        from rich.live import Live

        super().__init__(out)
        self._runs: Sequence[FlowRunInfo] = ()
        self._live = Live(console=Console(file=out), refresh_per_second=4, get_renderable=self._table)

    def _table(self) -> Any:
        from rich.table import Table
        from rich.text import Text

        table = Table(box=None, header_style="bold")
        for title in ("DEVICE", "FLOW", "STEP", "CURRENT", "TIME", "VERDICT"):
            table.add_column(title, no_wrap=title != "CURRENT")
        colours = {"passed": "green", "failed": "red", "cancelled": "yellow", "running": "cyan"}
        for run in self._runs:
            *cells, verdict = self.row(run)
            # Text, not markup: labels and errors come from flow files and devices ("[/]").
            table.add_row(*(Text(cell) for cell in cells), Text(verdict, style=colours.get(verdict, "white")))
        return table

    def start(self) -> None:
        self._live.start()

    def update(self, runs: Sequence[FlowRunInfo]) -> None:
        self._runs = runs

    def stop(self) -> None:
        self._live.refresh()
        self._live.stop()


def _display(out: TextIO) -> _Display:
    return _LiveDisplay(out) if out.isatty() else _PlainDisplay(out)


class _Batch:
    """Starts *units* (at most *parallel* runs at once), follows them, cancels them on Ctrl-C."""

    def __init__(
        self, corral: Corral, units: list[_Unit], parallel: int, names: Mapping[str, str], display: _Display
    ) -> None:
        self._corral = corral
        self._pending = deque(units)
        self._parallel = parallel
        self._display = display
        display.names = names
        self.batch = new_batch()
        self.runs: dict[int, FlowRunInfo] = {}
        self.finished: dict[int, FlowRunInfo] = {}
        self._changed = asyncio.Event()
        self._interrupt = asyncio.Event()

    async def run(self) -> bool:
        """Run the batch to its end; True if Ctrl-C cancelled it."""
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, self._interrupt.set)
        unsubscribe = self._corral.add_flow_runs_listener(self._on_change)
        self._display.start()
        try:
            await self._start_more()
            while self._pending or len(self.finished) < len(self.runs):
                if self._interrupt.is_set():
                    await self._cancel_all()
                    return True
                waits = {
                    asyncio.ensure_future(self._changed.wait()),
                    asyncio.ensure_future(self._interrupt.wait()),
                }
                await asyncio.wait(waits, timeout=1.0, return_when=asyncio.FIRST_COMPLETED)
                for task in waits:
                    task.cancel()
                await asyncio.gather(*waits, return_exceptions=True)
                self._changed.clear()
                await self._refresh()
                if not self._interrupt.is_set():
                    await self._start_more()
            return False
        finally:
            self._display.stop()
            unsubscribe()
            loop.remove_signal_handler(signal.SIGINT)

    def _on_change(self, info: FlowRunInfo) -> None:
        if info.batch == self.batch:
            self._changed.set()

    async def _refresh(self) -> None:
        for run in await self._corral.flow_runs(batch=self.batch, limit=100_000):
            self.runs[run.id] = run
            if run.finished:
                self.finished[run.id] = run
        self._display.update(sorted(self.runs.values(), key=lambda r: r.id))

    async def _start_more(self) -> None:
        """Start pending units, at most *parallel* runs at once and one run per device at a time.

        Two flows on one device at once would act on the same page; the batch's
        next run on a device starts when its previous one there has ended.
        """
        while len(self.runs) - len(self.finished) < self._parallel:
            busy = {
                device
                for run in self.runs.values()
                if run.id not in self.finished
                for device in run.devices.values()
            }
            unit = next((u for u in self._pending if not busy & {*u.devices, *u.roles.values()}), None)
            if unit is None:
                break
            self._pending.remove(unit)
            started = await self._corral.run_flow(
                unit.flow, devices=unit.devices, roles=unit.roles or None, batch=self.batch
            )
            for run in started:
                self.runs[run.id] = run
        await self._refresh()

    async def _cancel_all(self) -> None:
        """Ctrl-C: nothing more starts; every open run is cancelled and awaited (a while)."""
        self._pending.clear()
        for run_id in [r for r in self.runs if r not in self.finished]:
            with contextlib.suppress(CorralError):
                await self._corral.cancel_flow_run(run_id)
        open_ids = [r for r in self.runs if r not in self.finished]
        with contextlib.suppress(TimeoutError):
            await self._corral.wait_flow_runs(open_ids, _CANCEL_WAIT)
        await self._refresh()
