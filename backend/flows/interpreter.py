"""Running a compiled flow: one lane per role, each command through the executor.

Contract (see ``backend.flows``): :func:`execute` never talks to a device; it
calls the executor once per agent command and reports each step to the
observer (started, then finished: passed, failed, or skipped for an optional
step that failed). Lanes run concurrently. A step that reads another role's
value (``${viewer.qr}``) waits until that role sets it, and fails naming the
variable when that role ends without setting it, or when every other role is
waiting too (nothing could ever set it).

The first failing step that is not optional fails its lane and the run: the
other lanes are cancelled, their running steps reported failed with
``cancelled: role <role> failed``. Cancelling :func:`execute`'s task cancels
every lane the same way (running steps reported ``cancelled``) and then raises
CancelledError. An exception from the observer ends the run and propagates.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from pydantic import ValidationError

from agent.commands import Assert
from backend.flows import syntax
from backend.flows.mapping import Context, agent_commands, describe, target
from backend.flows.model import Call, Executor, Flow, FlowOutcome, Observer, StepEvent, StepOutcome
from backend.flows.program import Block, Leaf, Node, Program
from backend.flows.variables import classify, references, render, substitute, substitute_all, texts

__all__ = ["CONDITION_TIMEOUT", "MAX_ITERATIONS", "execute"]

CONDITION_TIMEOUT = 1.0
"""Seconds a ``when``/``while`` visibility check waits: the answer now, not after a wait."""
MAX_ITERATIONS = 10_000
"""A ``repeat`` stops (and fails) after this many rounds: a ``while`` that never ends is a bug."""
_PLATFORMS = {"browser": "web", "android": "android"}


class _StepError(Exception):
    """A step could not start (a variable, an argument): its message is the step's error."""


class _Failed(Exception):
    """A lane's step failed: the run's outcome."""

    def __init__(self, role: str, label: str, error: str) -> None:
        super().__init__(f"{label}: {error}")
        self.role, self.label, self.error = role, label, error


class _Abandoned(Exception):
    """A step inside an optional runFlow/repeat failed: the block ends, the lane goes on."""


@dataclass
class _Lane:
    role: str
    kind: str
    output: dict[str, Any] = field(default_factory=dict)
    captured: dict[str, str] = field(default_factory=dict)
    """``qr`` (or readQr's ``as``) and ``copiedText``."""
    index: int = 0
    finished: bool = False
    waiting: str | None = None
    """The ``${role.name}`` this lane waits for, while it waits."""
    waiting_for: tuple[_Lane, str] | None = None

    def blocked(self) -> bool:
        """Whether this lane waits for a value that is still not there."""
        if self.waiting_for is None:
            return False
        owner, name = self.waiting_for
        return owner.value(name) is None and not owner.finished

    def value(self, name: str) -> Any:
        """A captured value by name (``qr``, ``copiedText``, ``output.a.b``), None when not set."""
        if name.startswith("output."):
            return _path(self.output, name.removeprefix("output."))
        return self.captured.get(name)


def _path(values: Mapping[str, Any], dotted: str) -> Any:
    current: Any = values
    for part in dotted.split("."):
        if not isinstance(current, Mapping) or part not in current:
            return None
        current = current[part]
    return current


async def execute(flow: Flow, executor: Executor, observer: Observer) -> FlowOutcome:
    """Run *flow*: see the module docstring for the contract."""
    return await _Run(flow, executor, observer).run()


class _Run:
    def __init__(self, flow: Flow, executor: Executor, observer: Observer) -> None:
        if not isinstance(flow.program, Program):
            raise TypeError("execute() needs a flow from backend.flows.load/parse/from_sources")
        self.program: Program = flow.program
        self.executor = executor
        self.observer = observer
        self.lanes = {role: _Lane(role, kind) for role, kind in flow.roles.items()}
        self.seq = 0
        self.changed = asyncio.Event()
        self.failed_role: str | None = None
        self.failure: _Failed | None = None
        self.tasks: dict[str, asyncio.Task[None]] = {}

    def notify(self) -> None:
        """Wake every step waiting for a value (a value was set, a lane ended or started waiting)."""
        self.changed.set()
        self.changed = asyncio.Event()

    async def run(self) -> FlowOutcome:
        self.tasks = {
            role: asyncio.create_task(self.lane(lane), name=f"flow lane {role}")
            for role, lane in self.lanes.items()
        }
        tasks = list(self.tasks.values())
        try:
            pending = set(tasks)
            while pending:
                done, pending = await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
                for task in done:
                    error = None if task.cancelled() else task.exception()
                    if error is not None and not isinstance(error, _Failed):
                        for other in pending:
                            other.cancel()
                        await asyncio.gather(*pending, return_exceptions=True)
                        raise error
        except asyncio.CancelledError:
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            raise
        if self.failure is not None:
            return FlowOutcome(passed=False, error=str(self.failure), failed_role=self.failure.role)
        return FlowOutcome(passed=True)

    async def lane(self, lane: _Lane) -> None:
        try:
            for index, node in enumerate(self.program.lanes.get(lane.role, ()), start=1):
                lane.index = index
                await self.node(lane, node, dict(self.program.env), inherited_optional=False)
        except _Failed as failure:
            # The first failure ends the run: the other lanes are cancelled now, before
            # they can see this lane end and report failures of their own.
            if self.failure is None:
                self.failure, self.failed_role = failure, failure.role
                for role, task in self.tasks.items():
                    if role != lane.role:
                        task.cancel()
            raise
        finally:
            lane.finished = True
            self.notify()

    async def node(self, lane: _Lane, node: Node, scope: dict[str, str], *, inherited_optional: bool) -> None:
        if isinstance(node, Leaf):
            await self.leaf(lane, node, scope, inherited_optional)
        elif node.command == "runFlow":
            await self.run_flow(lane, node, scope, inherited_optional)
        else:
            await self.repeat(lane, node, scope, inherited_optional)

    # -- blocks -------------------------------------------------------------

    async def block_args(self, lane: _Lane, node: Block, scope: dict[str, str], inherited: bool) -> Any:
        try:
            raw = await self.resolve(lane, node.raw, scope, node.command)
            # The body was compiled already; the model only needs to know there is one.
            body: dict[str, Any] = {} if "file" in raw else {"commands": []}
            return node.spec.model.model_validate({**raw, **body})
        except (_StepError, ValidationError) as exc:
            error = syntax.readable(exc) if isinstance(exc, ValidationError) else str(exc)
            await self.failed_without_start(lane, node, scope, error, inherited)
            return None

    async def body(
        self, lane: _Lane, nodes: tuple[Node, ...], scope: dict[str, str], inherited: bool, optional: bool
    ) -> None:
        try:
            for child in nodes:
                await self.node(lane, child, scope, inherited_optional=inherited or optional)
        except _Abandoned:
            if not optional:
                raise

    async def run_flow(self, lane: _Lane, node: Block, scope: dict[str, str], inherited: bool) -> None:
        args = await self.block_args(lane, node, scope, inherited)
        if not isinstance(args, syntax.RunFlow):
            return
        if args.when is not None and not await self.holds(lane, node, scope, args.when, inherited):
            return
        child = {**node.defaults, **scope}
        child.update(
            {name: render(value) if value is not None else "" for name, value in (args.env or {}).items()}
        )
        await self.body(lane, node.body, child, inherited, args.optional)

    async def repeat(self, lane: _Lane, node: Block, scope: dict[str, str], inherited: bool) -> None:
        args = await self.block_args(lane, node, scope, inherited)
        if not isinstance(args, syntax.Repeat):
            return
        rounds = 0
        while args.times is None or rounds < args.times:
            if args.while_ is not None and not await self.holds(lane, node, scope, args.while_, inherited):
                return
            if rounds == MAX_ITERATIONS:
                error = f"still repeating after {MAX_ITERATIONS} rounds"
                await self.failed_without_start(lane, node, scope, error, inherited)
                return
            await self.body(lane, node.body, scope, inherited, args.optional)
            rounds += 1

    async def holds(
        self, lane: _Lane, node: Block, scope: dict[str, str], condition: syntax.Condition, inherited: bool
    ) -> bool:
        """Whether *node*'s ``when``/``while`` holds; a condition that cannot be read fails the block."""
        try:
            return await self.condition(lane, condition)
        except _StepError as exc:
            await self.failed_without_start(lane, node, scope, str(exc), inherited)
            return False

    async def condition(self, lane: _Lane, condition: syntax.Condition) -> bool:
        """Whether *condition* holds now (every part of it)."""
        if condition.platform is not None and condition.platform.lower() != _PLATFORMS.get(lane.kind):
            return False
        if condition.true_ is not None:
            value = condition.true_
            if isinstance(value, str):
                if value.strip().lower() not in ("true", "false", ""):
                    raise _StepError(f"`true:` expects true or false, got {value!r}")
                value = value.strip().lower() == "true"
            if not value:
                return False
        for element, visible in ((condition.visible, True), (condition.notVisible, False)):
            if element is None:
                continue
            check = Assert(target=target(element), visible=visible, timeout=CONDITION_TIMEOUT)
            try:
                await self.executor(Call(lane.role, check))
            except Exception:  # the element is not (or still) there: that is the answer
                return False
        return True

    # -- steps --------------------------------------------------------------

    def event(self, lane: _Lane, node: Node, label: str) -> StepEvent:
        self.seq += 1
        return StepEvent(self.seq, lane.role, lane.index, label, node.command, node.file, node.line)

    async def leaf(self, lane: _Lane, node: Leaf, scope: dict[str, str], inherited: bool) -> None:
        try:
            raw = await self.resolve(lane, node.raw, scope, node.command)
            url = (
                substitute(node.url, (await self.values(lane, [node.url], scope)).__getitem__)
                if node.url
                else None
            )
            args = node.spec.model.model_validate(raw)
            context = Context(url=url, copied=lane.captured.get("copiedText"), output=lane.output, env=scope)
            commands = agent_commands(node.command, args, context)
        except (_StepError, ValidationError, ValueError) as exc:
            error = syntax.readable(exc) if isinstance(exc, ValidationError) else str(exc)
            await self.failed_without_start(lane, node, scope, error, inherited)
            return
        role = args.from_ if isinstance(args, syntax.ReadQr) and args.from_ else lane.role
        event = self.event(lane, node, describe(node.command, args, url, written=node.raw))
        await self.observer.step_started(event)
        started = asyncio.get_running_loop().time()
        data: dict[str, Any] = {}
        try:
            for command in commands:
                data = await self.executor(Call(role, command))
            data = self.capture(lane, node.command, args, data)
        except asyncio.CancelledError:
            with contextlib.suppress(Exception):  # the cancel goes on whatever the observer does
                await self.finished(event, "failed", self.cancel_reason(lane), {}, started)
            raise
        except Exception as exc:
            await self.report_failure(
                lane, event, str(exc) or type(exc).__name__, started, args.optional, inherited
            )
            return
        await self.finished(event, "passed", None, data, started)

    def capture(self, lane: _Lane, command: str, args: syntax.Args, data: dict[str, Any]) -> dict[str, Any]:
        """Keep what *command* captured; the step's data for the observer."""
        if command == "copyTextFrom":
            lane.captured["copiedText"] = render(data.get("text", ""))
        elif isinstance(args, syntax.ReadQr):
            if not isinstance(data.get("text"), str):
                raise ValueError("read_qr returned no text")
            lane.captured[args.as_ or "qr"] = data["text"]
        elif command == "evalScript" and isinstance(data.get("output"), dict):
            lane.output = dict(data["output"])
        elif isinstance(args, syntax.TakeScreenshot):
            return {**data, "name": args.path}
        else:
            return data
        self.notify()
        return data

    async def finished(
        self, event: StepEvent, outcome: StepOutcome, error: str | None, data: dict[str, Any], started: float
    ) -> None:
        duration = asyncio.get_running_loop().time() - started
        await self.observer.step_finished(event, outcome, error=error, data=data, duration=duration)

    async def report_failure(
        self, lane: _Lane, event: StepEvent, error: str, started: float, optional: bool, inherited: bool
    ) -> None:
        """Report a failed step; raise to end its lane (or its optional block) unless it is optional."""
        skipped = optional or inherited
        await self.finished(event, "skipped" if skipped else "failed", error, {}, started)
        if optional:
            return
        if inherited:
            raise _Abandoned
        raise _Failed(lane.role, event.label, error)

    async def failed_without_start(
        self, lane: _Lane, node: Node, scope: dict[str, str], error: str, inherited: bool
    ) -> None:
        """A step that failed before reaching the device: reported as started and failed at once."""
        label, optional = _written(node)
        event = self.event(lane, node, label)
        await self.observer.step_started(event)
        await self.report_failure(lane, event, error, asyncio.get_running_loop().time(), optional, inherited)

    def cancel_reason(self, lane: _Lane) -> str:
        if self.failed_role is not None and self.failed_role != lane.role:
            return f"cancelled: role {self.failed_role} failed"
        return "cancelled"

    # -- variables ----------------------------------------------------------

    async def resolve(
        self, lane: _Lane, raw: Mapping[str, Any], scope: dict[str, str], command: str
    ) -> dict[str, Any]:
        """*raw* with every variable substituted (waiting for other roles' values)."""
        values = await self.values(lane, texts(raw, command), scope)
        return substitute_all(raw, command, values.__getitem__)

    async def values(self, lane: _Lane, strings: list[str], scope: dict[str, str]) -> dict[str, str]:
        found: dict[str, str] = {}
        for text in strings:
            for inner in references(text):
                if inner not in found:
                    found[inner] = await self.value(lane, inner, scope)
        return found

    async def value(self, lane: _Lane, inner: str, scope: dict[str, str]) -> str:
        ref = classify(inner, self.lanes.keys())
        shown = "${" + inner + "}"
        if ref.kind == "env":
            if ref.name not in scope:
                raise _StepError(f"missing variable `{shown}`")
            return scope[ref.name]
        if ref.kind == "output":
            value = lane.value(f"output.{ref.name}")
            if value is None:
                raise _StepError(f"`{shown}` is not set: no evalScript of this flow set it before")
            return render(value)
        if ref.kind == "copied":
            if "copiedText" not in lane.captured:
                raise _StepError(f"`{shown}` is not set: no copyTextFrom ran before")
            return lane.captured["copiedText"]
        if ref.kind == "role" and ref.role is not None:
            return await self.role_value(lane, self.lanes[ref.role], ref.name, shown)
        raise _StepError(f"`{shown}` is not supported")

    async def role_value(self, lane: _Lane, owner: _Lane, name: str, shown: str) -> str:
        """*owner*'s value *name*, waiting while *owner* may still set it."""
        try:
            while True:
                value = owner.value(name)
                if value is not None:
                    return render(value)
                if owner is lane:
                    raise _StepError(f"`{shown}` is not set: no earlier command of role {lane.role} set it")
                if owner.finished:
                    raise _StepError(f"`{shown}` was never set: role {owner.role} ended without setting it")
                others = [other for other in self.lanes.values() if other is not lane]
                if all(other.finished or other.blocked() for other in others):
                    waits = owner.waiting or "nothing"
                    raise _StepError(
                        f"`{shown}` can never be set: role {owner.role} is waiting for {waits} too"
                    )
                if lane.waiting is None:
                    lane.waiting, lane.waiting_for = shown, (owner, name)
                    self.notify()
                await self.changed.wait()
        finally:
            lane.waiting, lane.waiting_for = None, None


def _written(node: Node) -> tuple[str, bool]:
    """The label and optional flag as written (when the arguments could not be used)."""
    raw = node.raw
    label = raw.get("label")
    if isinstance(label, str) and "${" not in label:
        shown = label
    else:
        shorthand = node.spec.shorthand
        value = raw.get(shorthand) if shorthand else None
        if node.command == "runFlow" and isinstance(node, Block) and node.target:
            value = raw.get("file")
        shown = f"{node.command} {value}" if isinstance(value, (str, int)) else node.command
    return shown, raw.get("optional") is True
