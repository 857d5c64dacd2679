# ruff: noqa: N815 - field names are Maestro's YAML keys (appId, clearState…), as users write them
"""Maestro's flow syntax as pydantic models: the header and the arguments of every command.

One model per command, named and shaped as Maestro's documentation writes it
(``tapOn: {text, id, index, point}``, ``extendedWaitUntil: {visible, timeout}``
in milliseconds…), plus Corral's additions in the same style (``css`` and
``xpath`` selectors, ``readQr``, ``roles``). :data:`SPECS` says, per command,
which field a scalar shorthand fills (``tapOn: "Log in"`` is ``{text: "Log in"}``)
and whether the command may be written bare (``- back``). The JSON Schema for
editors is generated from these models (``backend.flows.schema``).

Maestro commands and keys Corral does not implement yet are listed in
:data:`UNSUPPORTED_COMMANDS` / :data:`UNSUPPORTED_KEYS` so ``check`` can say so
instead of "unknown".
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    WithJsonSchema,
    model_validator,
)

__all__ = [
    "COMMANDS_MARK",
    "SPECS",
    "UNSUPPORTED_COMMANDS",
    "UNSUPPORTED_HEADER_KEYS",
    "UNSUPPORTED_KEYS",
    "Args",
    "AssertVisible",
    "Condition",
    "CopyTextFrom",
    "EraseText",
    "EvalScript",
    "ExtendedWaitUntil",
    "Header",
    "InputText",
    "LaunchApp",
    "NoArgs",
    "OpenLink",
    "PressKey",
    "ReadQr",
    "Repeat",
    "RunFlow",
    "ScrollUntilVisible",
    "Selector",
    "Spec",
    "Swipe",
    "TakeScreenshot",
    "TapOn",
    "TimedArgs",
    "WithApp",
    "readable",
]

MAX_TIMEOUT_MS = 600_000
COMMANDS_MARK = "x-corral-commands"
"""Marks a nested command list in generated schemas; ``backend.flows.schema`` points it at ``Commands``."""


def _upper(value: Any) -> Any:
    return value.upper() if isinstance(value, str) else value


Direction = Annotated[Literal["DOWN", "UP", "LEFT", "RIGHT"], BeforeValidator(_upper)]
Commands = Annotated[Any, WithJsonSchema({"type": "array", COMMANDS_MARK: True})]
"""A nested command list: checked by the compiler (which keeps its lines), typed for editors."""

_CONFIG = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True, populate_by_name=True)


class Selector(BaseModel):
    """Which element: Maestro's ``text``, ``id``, ``index``, ``point``; Corral's ``css`` and ``xpath``."""

    model_config = _CONFIG
    text: str | None = Field(None, description="Regular expression matched against the element's whole text.")
    id: str | None = Field(None, description="Element id (DOM id on browser devices).")
    css: str | None = Field(None, description="CSS selector (Corral, browser devices).")
    xpath: str | None = Field(None, description="XPath expression (Corral, browser devices).")
    point: str | None = Field(None, description='"x,y" in pixels or "x%,y%" of the screen.')
    index: int | None = Field(None, ge=0, description="Which match, 0-based, when several elements match.")


Element = str | Selector
"""A selector, or a string meaning ``{text: …}``."""


class Args(BaseModel):
    """Keys every command accepts."""

    model_config = _CONFIG
    label: str | None = Field(None, description="Shown in reports instead of the generated label.")
    optional: bool = Field(False, description="A failure is reported as skipped and the flow goes on.")


class TimedArgs(Args):
    timeout: int | None = Field(
        None, gt=0, le=MAX_TIMEOUT_MS, description="Milliseconds to wait at most (default 10000)."
    )


class NoArgs(TimedArgs):
    """back, hideKeyboard, scroll, pasteText, waitForAnimationToEnd."""


class WithApp(TimedArgs):
    """stopApp, clearState: the app id is accepted and ignored on browser devices."""

    appId: str | None = None


class LaunchApp(TimedArgs):
    """Browser devices open the header's ``url``; ``clearState`` forgets cookies and storage first."""

    appId: str | None = None
    clearState: bool = False
    clearKeychain: bool = Field(False, description="Accepted; no keychain on browser devices.")
    stopApp: bool = Field(True, description="Accepted; the page is always reloaded.")
    permissions: dict[str, str] | None = Field(
        None, description="Accepted; browsers ask no permissions here."
    )


class OpenLink(TimedArgs):
    link: str = Field(min_length=1)
    autoVerify: bool | None = Field(None, description="Accepted; no effect on browser devices.")
    browser: bool | None = Field(None, description="Accepted; links always open in the device's browser.")


class TapOn(TimedArgs, Selector):
    repeat: int = Field(1, ge=1, le=100, description="Taps in a row.")
    retryTapIfNoChange: bool | None = Field(None, description="Accepted; taps are not retried.")
    waitToSettleTimeoutMs: int | None = Field(None, description="Accepted; no effect.")


class InputText(TimedArgs):
    text: str


class EraseText(TimedArgs):
    charactersToErase: int = Field(50, ge=1, le=10_000)


class PressKey(TimedArgs):
    key: str = Field(min_length=1, max_length=64, description="Enter, Backspace, Tab, Escape, Home, Back…")


class ScrollUntilVisible(TimedArgs):
    element: Element
    direction: Direction = "DOWN"
    speed: int | None = Field(None, ge=0, le=100, description="Accepted; no effect.")
    visibilityPercentage: int | None = Field(None, ge=0, le=100, description="Accepted; no effect.")
    centerElement: bool | None = Field(None, description="Accepted; no effect.")


class Swipe(TimedArgs):
    start: str | None = Field(None, description='"x,y" or "x%,y%".')
    end: str | None = None
    direction: Direction | None = None
    duration: int = Field(400, ge=0, le=60_000, description="Milliseconds.")

    @model_validator(mode="after")
    def _either(self) -> Swipe:
        if (self.direction is None) == (self.start is None or self.end is None):
            raise ValueError("say either start and end, or direction")
        return self


class AssertVisible(TimedArgs, Selector):
    """assertVisible and assertNotVisible."""


class ExtendedWaitUntil(TimedArgs):
    visible: Element | None = None
    notVisible: Element | None = None

    @model_validator(mode="after")
    def _one(self) -> ExtendedWaitUntil:
        if (self.visible is None) == (self.notVisible is None):
            raise ValueError("say exactly one of visible or notVisible")
        return self


class CopyTextFrom(TimedArgs, Selector):
    """Stores the text in ``${maestro.copiedText}`` (and ``${<role>.copiedText}``)."""


class TakeScreenshot(TimedArgs):
    path: str = Field(min_length=1, max_length=200, description="The screenshot's name.")


class EvalScript(TimedArgs):
    script: str = Field(min_length=1, description="``${output.x = …}``: JavaScript run on the device.")


class ReadQr(TimedArgs):
    """Corral: decode a QR code or barcode on the screen; stores ``${<role>.qr}`` (or ``as``)."""

    from_: str | None = Field(None, alias="from", description="Read another role's screen.")
    as_: str | None = Field(
        None, alias="as", pattern=r"^[A-Za-z_][A-Za-z0-9_]*$", description="Store as ${<role>.<as>}."
    )


class Condition(BaseModel):
    """``when`` / ``while``: an element visible or not, the platform, or a literal true/false."""

    model_config = _CONFIG
    visible: Element | None = None
    notVisible: Element | None = None
    platform: str | None = Field(None, description="Web (browser devices), Android or iOS.")
    true_: str | bool | None = Field(None, alias="true", description="true or false (a variable's value).")


class RunFlow(Args):
    file: str | None = Field(None, description="Path relative to this file.")
    env: dict[str, str | int | float | bool | None] | None = None
    commands: Commands | None = None
    when: Condition | None = None

    @model_validator(mode="after")
    def _one(self) -> RunFlow:
        if (self.file is None) == (self.commands is None):
            raise ValueError("say either file or commands")
        return self


class Repeat(Args):
    times: int | None = Field(None, ge=1, le=10_000)
    while_: Condition | None = Field(None, alias="while")
    commands: Commands

    @model_validator(mode="after")
    def _bounded(self) -> Repeat:
        if self.times is None and self.while_ is None:
            raise ValueError("say times, while, or both")
        return self


class Header(BaseModel):
    """The config document before ``---``."""

    model_config = ConfigDict(extra="forbid", frozen=True, coerce_numbers_to_str=True)
    appId: str | None = None
    url: str | None = Field(None, description="What launchApp opens on browser devices.")
    name: str | None = None
    tags: list[str] = Field(default_factory=list)
    env: dict[str, str | int | float | bool | None] = Field(default_factory=dict)
    roles: dict[str, str] | None = Field(
        None, description="Corral: role -> device kind, e.g. {viewer: browser, scanner: browser}."
    )


@dataclass(frozen=True, slots=True)
class Spec:
    """How a command is written: its model, the field a scalar fills, whether it may be bare."""

    name: str
    model: type[Args]
    shorthand: str | None = None
    bare: bool = False


SPECS: dict[str, Spec] = {
    spec.name: spec
    for spec in (
        Spec("launchApp", LaunchApp, "appId", bare=True),
        Spec("openLink", OpenLink, "link"),
        Spec("tapOn", TapOn, "text"),
        Spec("longPressOn", TapOn, "text"),
        Spec("doubleTapOn", TapOn, "text"),
        Spec("inputText", InputText, "text"),
        Spec("eraseText", EraseText, "charactersToErase", bare=True),
        Spec("pressKey", PressKey, "key"),
        Spec("back", NoArgs, bare=True),
        Spec("hideKeyboard", NoArgs, bare=True),
        Spec("scroll", NoArgs, bare=True),
        Spec("scrollUntilVisible", ScrollUntilVisible, "element"),
        Spec("swipe", Swipe),
        Spec("assertVisible", AssertVisible, "text"),
        Spec("assertNotVisible", AssertVisible, "text"),
        Spec("extendedWaitUntil", ExtendedWaitUntil),
        Spec("waitForAnimationToEnd", NoArgs, bare=True),
        Spec("copyTextFrom", CopyTextFrom, "text"),
        Spec("pasteText", NoArgs, bare=True),
        Spec("takeScreenshot", TakeScreenshot, "path"),
        Spec("evalScript", EvalScript, "script"),
        Spec("stopApp", WithApp, "appId", bare=True),
        Spec("clearState", WithApp, "appId", bare=True),
        Spec("readQr", ReadQr, bare=True),
        Spec("runFlow", RunFlow, "file"),
        Spec("repeat", Repeat),
    )
}
"""Every command Corral runs, by its name in flow files."""

UNSUPPORTED_COMMANDS = frozenset(
    {
        "addMedia",
        "assertNoDefectsWithAI",
        "assertNoDefectsWithAi",
        "assertScreenshot",
        "assertTrue",
        "assertWithAI",
        "clearKeychain",
        "extractTextWithAI",
        "inputRandomEmail",
        "inputRandomNumber",
        "inputRandomPersonName",
        "inputRandomText",
        "killApp",
        "retry",
        "runScript",
        "setAirplaneMode",
        "setClipboard",
        "setLocation",
        "setOrientation",
        "setPermissions",
        "startRecording",
        "stopRecording",
        "toggleAirplaneMode",
        "travel",
    }
)
"""Maestro commands Corral does not run yet (``check`` names them as such)."""

UNSUPPORTED_KEYS = frozenset(
    {
        "enabled",
        "checked",
        "focused",
        "selected",
        "below",
        "above",
        "leftOf",
        "rightOf",
        "containsChild",
        "childOf",
        "containsDescendants",
        "traits",
        "width",
        "height",
        "tolerance",
        "delay",
        "from",
        "cropOn",
        "arguments",
    }
)
"""Maestro keys Corral does not implement yet (``from`` only where Maestro means an element)."""

UNSUPPORTED_HEADER_KEYS = frozenset(
    {"onFlowStart", "onFlowComplete", "jsEngine", "properties", "androidWebViewHierarchy"}
)


_BRANCHES = frozenset({"str", "int", "float", "bool", "none", "Selector", "Condition"})
"""Names pydantic puts in an error's location for the member of a union that failed."""


def readable(exc: ValidationError, key: str | None = None) -> str:
    """A pydantic error as one line: ``times: Input should be a valid integer (got 'x')``.

    With *key*, only the errors of that top-level key.
    """
    parts = []
    for error in exc.errors():
        loc = [str(part) for part in error["loc"]]
        if key is not None and loc[:1] != [key]:
            continue
        branches = {part for part in loc if part in _BRANCHES or "[" in part}
        where = ".".join(part for part in loc if part not in branches)
        got = error.get("input")
        message = str(error["msg"]).removeprefix("Value error, ")
        if error["type"] == "extra_forbidden":
            parts.append(f"unknown key `{where}`")
            continue
        if loc and loc[-1] in ("str", "Selector"):  # the value itself fits neither form
            if "str" in branches and isinstance(got, dict):
                continue  # the selector map's own error says what is wrong in it
            if not isinstance(got, dict):
                parts.append(f"{where}: expected a text or a map of selector keys")
                continue
        shown = f" (got {got!r})" if isinstance(got, (str, int, float, bool)) and len(repr(got)) <= 60 else ""
        parts.append(f"{where}: {message}{shown}" if where else message)
    return "; ".join(dict.fromkeys(parts))
