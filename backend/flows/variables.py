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
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any, Literal

__all__ = ["Ref", "classify", "map_strings", "references", "render", "strings_in", "substitute"]

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


def classify(inner: str, roles: Mapping[str, str] | frozenset[str] | set[str]) -> Ref:
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


def strings_in(value: Any) -> Iterator[str]:
    """Every string inside *value* (nested dicts and lists), keys excluded."""
    if isinstance(value, str):
        yield value
    elif isinstance(value, dict):
        for item in value.values():
            yield from strings_in(item)
    elif isinstance(value, list):
        for item in value:
            yield from strings_in(item)


def map_strings(value: Any, change: Callable[[str], str]) -> Any:
    """A copy of *value* (plain dicts and lists) with *change* applied to every string."""
    if isinstance(value, str):
        return change(value)
    if isinstance(value, dict):
        return {key: map_strings(item, change) for key, item in value.items()}
    if isinstance(value, list):
        return [map_strings(item, change) for item in value]
    return value


def render(value: Any) -> str:
    """A captured value as text: strings as they are, anything else as JSON."""
    return value if isinstance(value, str) else json.dumps(value, ensure_ascii=False)
