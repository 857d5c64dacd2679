"""``${…}`` references in flow strings: finding, classifying and substituting them.

Corral substitutes names, never JavaScript: ``${USER}`` (a variable of the flow's
scope: header ``env``, the caller's ``--env``, a ``runFlow``'s ``env``),
``${output.token}`` (what this role's ``evalScript`` put in ``output``),
``${maestro.copiedText}`` (this role's last ``copyTextFrom``) and, in flows with
roles, ``${viewer.qr}`` (a value another role captured: see :class:`Ref`).
Anything else inside ``${…}`` (``${'a' + b}``, ``${x || 1}``) is reported by
``check`` as unsupported. Substitution is one pass: a value put in is never
scanned again, so a password containing ``${`` stays as typed.
"""

from __future__ import annotations

import json
import re
from collections.abc import Callable, Collection, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Ref", "classify", "malformed", "references", "render", "substitute", "substitute_all", "texts"]

_REFERENCE = re.compile(r"\$\{([^{}]*)\}")
_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_-]*(\.[A-Za-z_][A-Za-z0-9_-]*)*$")

RefKind = Literal["env", "output", "copied", "role", "unsupported", "unknown"]


@dataclass(frozen=True, slots=True)
class Ref:
    """One ``${…}`` reference.

    ``kind``: ``env`` (a scope variable), ``output`` (this role's ``output.<path>``),
    ``copied`` (``maestro.copiedText``), ``role`` (``<role>.<name>``: ``role`` and
    ``name`` set, e.g. ``viewer`` / ``qr`` or ``viewer`` / ``output.token``),
    ``unsupported`` (not a dotted name) or ``unknown`` (a dotted name nothing defines).
    """

    text: str
    kind: RefKind
    role: str | None = None
    name: str = ""

    def __str__(self) -> str:
        return "${" + self.text + "}"


def references(text: str) -> Iterator[str]:
    """The inner text of every ``${…}`` in *text*, stripped."""
    for match in _REFERENCE.finditer(text):
        yield match.group(1).strip()


def malformed(text: str) -> list[str]:
    """Each ``${`` of *text* that does not open a plain ``${…}`` (nested braces, no closing ``}``)."""
    starts = {match.start() for match in _REFERENCE.finditer(text)}
    found = []
    for index in range(len(text)):
        if text.startswith("${", index) and index not in starts:
            found.append(text[index : index + 24] + ("…" if len(text) > index + 24 else ""))
    return found


def classify(inner: str, roles: Collection[str]) -> Ref:
    """What ``${inner}`` refers to, given the flow's declared *roles*."""
    if not _NAME.match(inner):
        return Ref(inner, "unsupported")
    head, _, rest = inner.partition(".")
    if not rest:
        return Ref(inner, "env", name=inner)
    if head == "output":
        return Ref(inner, "output", name=rest)
    if inner == "maestro.copiedText":
        return Ref(inner, "copied")
    if head in roles:
        return Ref(inner, "role", role=head, name=rest)
    return Ref(inner, "unknown")


def substitute(text: str, value_of: Callable[[str], str]) -> str:
    """*text* with every ``${inner}`` replaced by ``value_of(inner)`` (one pass)."""
    return _REFERENCE.sub(lambda match: value_of(match.group(1).strip()), text)


def _literal(command: str, key: str) -> bool:
    """Whether argument *key* of *command* is left as written (evalScript's script is JavaScript)."""
    return command == "evalScript" and key == "script"


def texts(raw: Mapping[str, Any], command: str) -> list[str]:
    """Every string of *command*'s arguments *raw* that variables are substituted in."""
    found: list[str] = []

    def walk(value: Any) -> None:
        if isinstance(value, str):
            found.append(value)
        elif isinstance(value, Mapping):
            for item in value.values():
                walk(item)
        elif isinstance(value, list):
            for item in value:
                walk(item)

    walk({key: value for key, value in raw.items() if not _literal(command, key)})
    return found


def substitute_all(raw: Mapping[str, Any], command: str, value_of: Callable[[str], str]) -> dict[str, Any]:
    """A copy of *command*'s arguments *raw* (plain dicts and lists) with every variable substituted."""

    def walk(value: Any) -> Any:
        if isinstance(value, str):
            return substitute(value, value_of)
        if isinstance(value, Mapping):
            return {name: walk(item) for name, item in value.items()}
        if isinstance(value, list):
            return [walk(item) for item in value]
        return value

    return {key: value if _literal(command, key) else walk(value) for key, value in raw.items()}


def render(value: Any) -> str:
    """A captured value as text: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
