"""The commands a device agent executes: one typed model per command, one registry per kind.

The backend's flow runner turns each flow step (Maestro's YAML, see
``backend.flows``) into calls of these commands and sends them to the device's
agent as ``command`` messages (``name`` = :attr:`AgentCommand.name`, ``args`` =
the model's fields). The agent validates ``args`` against the same model before
its driver acts, so both sides agree on every field. Pure: no I/O.

Every command waits on its own: a command that needs something on the screen
(an element to tap, a text to assert, a QR code to read) polls until it is
there or ``timeout`` seconds have passed, then fails naming what it waited for.
Flows never need sleeps.

Results (the ``data`` of a ``result`` message) are JSON objects; what each
command returns is said in its docstring. Images travel as base64 PNG.
"""

from __future__ import annotations

from typing import Any, ClassVar, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

__all__ = [
    "COMMANDS",
    "DEFAULT_TIMEOUT",
    "AgentCommand",
    "Assert",
    "Back",
    "ClearState",
    "CopyText",
    "EraseText",
    "EvalScript",
    "HideKeyboard",
    "InputText",
    "OpenUrl",
    "Ping",
    "PressKey",
    "ReadQr",
    "Screenshot",
    "Scroll",
    "ScrollUntilVisible",
    "StopApp",
    "Swipe",
    "Tap",
    "Target",
    "WaitForAnimation",
    "WaitUntil",
    "command_model",
    "commands_for",
    "parse_command",
]

DEFAULT_TIMEOUT = 10.0
"""Seconds a command waits for what it needs when the flow does not say (Maestro waits about as long)."""
MAX_TIMEOUT = 600.0


class _Model(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class Target(_Model):
    """What a command acts on: exactly one of text, id, css, xpath or point.

    ``text`` is a regular expression matched against an element's whole visible
    text (as Maestro does), case-sensitive; ``id`` matches the element id (the
    DOM ``id`` on browser devices, the resource id on Android); ``css`` and
    ``xpath`` are Corral's additions for browser devices. ``point`` is ``"x,y"``
    in pixels or ``"x%,y%"`` of the screen. ``index`` picks the n-th match
    (0-based, in document order) when several elements match.
    """

    text: str | None = Field(default=None, max_length=4096)
    id: str | None = Field(default=None, max_length=1024)
    css: str | None = Field(default=None, max_length=4096)
    xpath: str | None = Field(default=None, max_length=4096)
    point: str | None = Field(default=None, pattern=r"^\s*\d+(\.\d+)?%?\s*,\s*\d+(\.\d+)?%?\s*$")
    index: int = Field(default=0, ge=0, le=10_000)

    @model_validator(mode="after")
    def _one_kind(self) -> Target:
        given = [name for name in ("text", "id", "css", "xpath", "point") if getattr(self, name) is not None]
        if len(given) != 1:
            raise ValueError(
                "say exactly one of text, id, css, xpath or point"
                + (f" (got {', '.join(given)})" if given else "")
            )
        return self

    def describe(self) -> str:
        """A short human form for step labels and errors: ``text "Log in"``, ``css "#user"``."""
        for name in ("text", "id", "css", "xpath", "point"):
            value = getattr(self, name)
            if value is not None:
                suffix = f" [{self.index}]" if self.index else ""
                return f'{name} "{value}"{suffix}'
        return "?"


class AgentCommand(_Model):
    """Base of every command. ``name`` is the wire name; ``kinds`` the device kinds that run it."""

    name: ClassVar[str]
    kinds: ClassVar[frozenset[str]] = frozenset({"browser"})
    timeout: float = Field(default=DEFAULT_TIMEOUT, gt=0, le=MAX_TIMEOUT)


class Ping(AgentCommand):
    """Answers ``{"pong": <agent time>}``."""

    name: ClassVar[str] = "ping"
    kinds: ClassVar[frozenset[str]] = frozenset({"browser", "android"})


class OpenUrl(AgentCommand):
    """Load *url* in the device's browser and wait for its load event. Returns ``{"url": final url}``."""

    name: ClassVar[str] = "open_url"
    url: str = Field(min_length=1, max_length=65_536)


class ClearState(AgentCommand):
    """Forget cookies, storage and cache (Maestro's ``launchApp: {clearState: true}``). Returns ``{}``."""

    name: ClassVar[str] = "clear_state"


class StopApp(AgentCommand):
    """Leave the current page for the device's start page. Returns ``{}``."""

    name: ClassVar[str] = "stop_app"


class Tap(AgentCommand):
    """Wait for *target* to be visible and enabled, then click it (``long_press``: hold 1 s).

    ``repeat`` clicks that many times. Returns ``{"x": …, "y": …}``, the point clicked.
    """

    name: ClassVar[str] = "tap"
    target: Target
    long_press: bool = False
    repeat: int = Field(default=1, ge=1, le=100)


class InputText(AgentCommand):
    """Type *text* into the focused element, as keystrokes. Returns ``{}``."""

    name: ClassVar[str] = "input_text"
    text: str = Field(max_length=65_536)


class EraseText(AgentCommand):
    """Press Backspace *chars* times in the focused element. Returns ``{}``."""

    name: ClassVar[str] = "erase_text"
    chars: int = Field(default=50, ge=1, le=10_000)


class PressKey(AgentCommand):
    """Press one key by Maestro's name (``Enter``, ``Backspace``, ``Tab``, ``Escape``, ``Home``,
    ``Back``, arrows…). Returns ``{}``."""

    name: ClassVar[str] = "press_key"
    key: str = Field(min_length=1, max_length=64)


class Back(AgentCommand):
    """Go back in the browser's history. Returns ``{}``."""

    name: ClassVar[str] = "back"


class HideKeyboard(AgentCommand):
    """No on-screen keyboard on browser devices: does nothing. Returns ``{}``."""

    name: ClassVar[str] = "hide_keyboard"


class Scroll(AgentCommand):
    """Scroll the page one screen in *direction*. Returns ``{}``."""

    name: ClassVar[str] = "scroll"
    direction: Literal["down", "up", "left", "right"] = "down"


class ScrollUntilVisible(AgentCommand):
    """Scroll in *direction* until *target* is visible, or fail after ``timeout``. Returns ``{}``."""

    name: ClassVar[str] = "scroll_until_visible"
    target: Target
    direction: Literal["down", "up", "left", "right"] = "down"


class Swipe(AgentCommand):
    """Drag from *start* to *end* (points as in :class:`Target`), or one screen in *direction*.

    Returns ``{}``.
    """

    name: ClassVar[str] = "swipe"
    start: str | None = None
    end: str | None = None
    direction: Literal["down", "up", "left", "right"] | None = None
    duration_ms: int = Field(default=400, ge=0, le=60_000)

    @model_validator(mode="after")
    def _either(self) -> Swipe:
        if (self.direction is None) == (self.start is None or self.end is None):
            raise ValueError("say either start and end, or direction")
        return self


class Assert(AgentCommand):
    """Wait until *target* is visible (``visible: true``) or gone (``false``); fail after ``timeout``.

    Returns ``{}``.
    """

    name: ClassVar[str] = "assert"
    target: Target
    visible: bool = True


class WaitUntil(AgentCommand):
    """Maestro's ``extendedWaitUntil``: wait for *visible* to appear or *not_visible* to go.

    Returns ``{}``.
    """

    name: ClassVar[str] = "wait_until"
    visible: Target | None = None
    not_visible: Target | None = None

    @model_validator(mode="after")
    def _one(self) -> WaitUntil:
        if (self.visible is None) == (self.not_visible is None):
            raise ValueError("say exactly one of visible or not_visible")
        return self


class WaitForAnimation(AgentCommand):
    """Wait until the screen stops changing (two equal screenshots), at most ``timeout``. Returns ``{}``."""

    name: ClassVar[str] = "wait_for_animation"


class CopyText(AgentCommand):
    """Wait for *target*; return its visible text as ``{"text": …}``."""

    name: ClassVar[str] = "copy_text"
    target: Target


class Screenshot(AgentCommand):
    """The screen as ``{"png": <base64>, "width": …, "height": …}``."""

    name: ClassVar[str] = "screenshot"


class ReadQr(AgentCommand):
    """Wait until a QR code (or barcode) is on the screen; return ``{"text", "format", "codes"}``.

    ``codes`` lists every code found, in reading order; ``text`` is the first.
    """

    name: ClassVar[str] = "read_qr"


class EvalScript(AgentCommand):
    """Run JavaScript in the device's JavaScript engine (the page, on browser devices).

    The script sees ``output`` (an object it may change) and ``env`` (the flow's
    variables) as globals, as Maestro's ``evalScript`` does. Returns
    ``{"value": <the script's value, JSON>, "output": <output after the script>}``.
    """

    name: ClassVar[str] = "eval_script"
    script: str = Field(min_length=1, max_length=65_536)
    output: dict[str, Any] = Field(default_factory=dict)
    env: dict[str, str] = Field(default_factory=dict)


COMMANDS: dict[str, type[AgentCommand]] = {
    model.name: model
    for model in (
        Ping,
        OpenUrl,
        ClearState,
        StopApp,
        Tap,
        InputText,
        EraseText,
        PressKey,
        Back,
        HideKeyboard,
        Scroll,
        ScrollUntilVisible,
        Swipe,
        Assert,
        WaitUntil,
        WaitForAnimation,
        CopyText,
        Screenshot,
        ReadQr,
        EvalScript,
    )
}
"""Every command by wire name. Android adds its commands (and kinds) here."""


def commands_for(kind: str) -> dict[str, type[AgentCommand]]:
    """The commands devices of *kind* run."""
    return {name: model for name, model in COMMANDS.items() if kind in model.kinds}


def command_model(name: str) -> type[AgentCommand]:
    """The model of command *name*; KeyError when there is none."""
    return COMMANDS[name]


def parse_command(name: str, args: dict[str, Any]) -> AgentCommand:
    """Validate *args* for command *name*. Raises KeyError (unknown name) or ValidationError."""
    return COMMANDS[name].model_validate(args)


# Re-exported so callers can catch it without importing pydantic.
CommandArgsError = ValidationError
