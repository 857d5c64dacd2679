"""Flow commands (Maestro's names, :mod:`backend.flows.syntax`) onto agent commands.

:func:`agent_commands` turns one validated command into the agent commands that
do it (usually one; ``launchApp`` with ``clearState`` is two), converting
Maestro's milliseconds into the agent's seconds. :func:`describe` writes the
label a person reads in reports: ``tapOn text "Log in"``.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from agent.commands import (
    DEFAULT_TIMEOUT,
    AgentCommand,
    Assert,
    Back,
    ClearState,
    CopyText,
    EraseText,
    EvalScript,
    HideKeyboard,
    InputText,
    OpenUrl,
    PressKey,
    ReadQr,
    Screenshot,
    Scroll,
    ScrollUntilVisible,
    StopApp,
    Swipe,
    Tap,
    Target,
    WaitForAnimation,
    WaitUntil,
)
from backend.flows import syntax

__all__ = [
    "AGENT_NAMES",
    "Context",
    "agent_commands",
    "describe",
    "script_of",
    "seconds",
    "target",
    "variables_named_in",
]

AGENT_NAMES: dict[str, tuple[str, ...]] = {
    "launchApp": ("clear_state", "open_url"),
    "openLink": ("open_url",),
    "tapOn": ("tap",),
    "longPressOn": ("tap",),
    "doubleTapOn": ("tap",),
    "inputText": ("input_text",),
    "pasteText": ("input_text",),
    "eraseText": ("erase_text",),
    "pressKey": ("press_key",),
    "back": ("back",),
    "hideKeyboard": ("hide_keyboard",),
    "scroll": ("scroll",),
    "scrollUntilVisible": ("scroll_until_visible",),
    "swipe": ("swipe",),
    "assertVisible": ("assert",),
    "assertNotVisible": ("assert",),
    "extendedWaitUntil": ("wait_until",),
    "waitForAnimationToEnd": ("wait_for_animation",),
    "copyTextFrom": ("copy_text",),
    "takeScreenshot": ("screenshot",),
    "evalScript": ("eval_script",),
    "stopApp": ("stop_app",),
    "clearState": ("clear_state",),
    "readQr": ("read_qr",),
}
"""The agent commands each flow command may send (to check a role's device kind runs them)."""

_DEFAULT_MS = {"scrollUntilVisible": 20_000}
"""Maestro's own defaults where they differ from the agent's 10 s."""


@dataclass(frozen=True, slots=True)
class Context:
    """What a command needs beyond its arguments, resolved when it runs."""

    url: str | None = None
    """The flow header's ``url`` (``launchApp`` opens it)."""
    copied: str | None = None
    """This role's ``maestro.copiedText`` (``pasteText`` types it)."""
    output: dict[str, object] | None = None
    env: dict[str, str] | None = None


def seconds(milliseconds: int | None, command: str = "") -> float:
    """Maestro's milliseconds as the agent's seconds (the default when not given)."""
    if milliseconds is None:
        milliseconds = _DEFAULT_MS.get(command)
    return DEFAULT_TIMEOUT if milliseconds is None else milliseconds / 1000


def target(selector: syntax.Selector | str) -> Target:
    """An agent :class:`Target` from a Maestro selector (a string is ``text``). ValueError if invalid."""
    if isinstance(selector, str):
        return Target(text=selector)
    return Target(
        text=selector.text,
        id=selector.id,
        css=selector.css,
        xpath=selector.xpath,
        point=selector.point,
        index=selector.index or 0,
    )


def agent_commands(name: str, args: syntax.Args, context: Context) -> list[AgentCommand]:
    """The agent commands that run flow command *name*; ValueError (pydantic's) when args don't fit."""
    timeout = seconds(getattr(args, "timeout", None), name)
    match args:
        case syntax.LaunchApp():
            if not context.url:
                raise ValueError("on browser devices it opens the header's `url`, and this flow has none")
            first: list[AgentCommand] = [ClearState(timeout=timeout)] if args.clearState else []
            return [*first, OpenUrl(url=context.url, timeout=timeout)]
        case syntax.OpenLink():
            return [OpenUrl(url=args.link, timeout=timeout)]
        case syntax.TapOn():
            repeat = 2 if name == "doubleTapOn" else args.repeat
            return [
                Tap(target=target(args), long_press=name == "longPressOn", repeat=repeat, timeout=timeout)
            ]
        case syntax.InputText():
            return [InputText(text=args.text, timeout=timeout)]
        case syntax.EraseText():
            return [EraseText(chars=args.charactersToErase, timeout=timeout)]
        case syntax.PressKey():
            return [PressKey(key=args.key, timeout=timeout)]
        case syntax.ScrollUntilVisible():
            direction = args.direction.lower()
            return [ScrollUntilVisible(target=target(args.element), direction=direction, timeout=timeout)]  # type: ignore[arg-type]
        case syntax.Swipe():
            swipe_direction = args.direction.lower() if args.direction else None
            return [
                Swipe(
                    start=args.start,
                    end=args.end,
                    direction=swipe_direction,  # type: ignore[arg-type]
                    duration_ms=args.duration,
                    timeout=timeout,
                )
            ]
        case syntax.AssertVisible():
            return [Assert(target=target(args), visible=name == "assertVisible", timeout=timeout)]
        case syntax.ExtendedWaitUntil():
            visible = target(args.visible) if args.visible is not None else None
            gone = target(args.notVisible) if args.notVisible is not None else None
            return [WaitUntil(visible=visible, not_visible=gone, timeout=timeout)]
        case syntax.CopyTextFrom():
            return [CopyText(target=target(args), timeout=timeout)]
        case syntax.TakeScreenshot():
            return [Screenshot(timeout=timeout)]
        case syntax.EvalScript():
            script = script_of(args.script)
            return [
                EvalScript(
                    script=script,
                    output=dict(context.output or {}),
                    env=variables_named_in(script, context.env or {}),
                    timeout=timeout,
                )
            ]
        case syntax.ReadQr():
            return [ReadQr(timeout=timeout)]
        case syntax.WithApp():
            return [StopApp(timeout=timeout) if name == "stopApp" else ClearState(timeout=timeout)]
        case syntax.NoArgs():
            return [_bare(name, timeout, context)]
    raise ValueError(f"`{name}` cannot run as one command")  # pragma: no cover - runFlow/repeat are blocks


def _bare(name: str, timeout: float, context: Context) -> AgentCommand:
    if name == "pasteText":
        if context.copied is None:
            raise ValueError("nothing to paste: no copyTextFrom ran before in this role")
        return InputText(text=context.copied, timeout=timeout)
    bare: dict[str, type[AgentCommand]] = {
        "back": Back,
        "hideKeyboard": HideKeyboard,
        "scroll": Scroll,
        "waitForAnimationToEnd": WaitForAnimation,
    }
    return bare[name](timeout=timeout)


def script_of(text: str) -> str:
    """The JavaScript of an ``evalScript``: ``${…}`` unwrapped, as Maestro writes it."""
    stripped = text.strip()
    if stripped.startswith("${") and stripped.endswith("}"):
        return stripped[2:-1].strip() or stripped
    return stripped


def _selector(selector: syntax.Selector | str) -> str:
    try:
        return target(selector).describe()
    except ValueError:
        return repr(selector) if isinstance(selector, str) else "(no selector)"


def describe(
    name: str, args: syntax.Args, url: str | None = None, written: Mapping[str, Any] | None = None
) -> str:
    """The label of a step: ``tapOn text "Log in"``, ``inputText "${PASSWORD}"``, ``launchApp <url>``.

    *written* is the command's arguments as the flow wrote them (before variables were
    substituted): an ``inputText`` label shows its text as written, so a value typed from
    a variable (a password given with ``--env``) never lands in a label, which is stored
    in Postgres and shown on every screen that follows the run.
    """
    if args.label:
        return args.label
    detail = ""
    match args:
        case syntax.LaunchApp():
            detail = url or args.appId or ""
        case syntax.WithApp():
            detail = args.appId or ""
        case syntax.OpenLink():
            detail = args.link
        case syntax.TapOn():
            detail = _selector(args) + (f" x{args.repeat}" if args.repeat > 1 else "")
        case syntax.InputText():
            typed = written.get("text", args.text) if written is not None else args.text
            detail = f'"{typed}"'
        case syntax.EraseText():
            detail = str(args.charactersToErase)
        case syntax.PressKey():
            detail = args.key
        case syntax.ScrollUntilVisible():
            detail = f"{_selector(args.element)} {args.direction}"
        case syntax.Swipe():
            detail = args.direction or f"{args.start} → {args.end}"
        case syntax.AssertVisible() | syntax.CopyTextFrom():
            detail = _selector(args)
        case syntax.ExtendedWaitUntil():
            if args.visible is not None:
                detail = f"visible {_selector(args.visible)}"
            elif args.notVisible is not None:
                detail = f"notVisible {_selector(args.notVisible)}"
        case syntax.TakeScreenshot():
            detail = args.path
        case syntax.EvalScript():
            detail = _shorten(script_of(args.script))
        case syntax.ReadQr():
            detail = f"from {args.from_}" if args.from_ else ""
    return f"{name} {detail}".strip()


def _shorten(text: str, limit: int = 60) -> str:
    one_line = " ".join(text.split())
    return one_line if len(one_line) <= limit else one_line[: limit - 1] + "…"


def variables_named_in(script: str, env: Mapping[str, str]) -> dict[str, str]:
    """The variables *script* names (as a word): all a device gets of the flow's env.

    A device is not trusted with the rest: in a flow with roles, the viewer's
    script must not receive the password the scanner types.
    """
    words = set(re.findall(r"[A-Za-z_$][A-Za-z0-9_$]*", script))
    quoted = set(re.findall(r"""["']([^"'\\]{1,256})["']""", script))
    return {name: value for name, value in env.items() if name in words or name in quoted}
