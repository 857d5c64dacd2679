"""``corral exec`` arguments: words on a command line -> a command's args (pure).

``corral exec browser-1 open_url https://example.org``: one plain word is the
command's main field (:func:`main_field`: its first required field, else its
first). A word ``key=value`` sets a field; the value is JSON when it parses as
JSON (``timeout=5``, ``visible=false``, ``target={"css": "#user"}``), else a
string; a dotted key sets a nested field (``target.css=#user``). A selector
field given as a plain word is a text selector: ``tap "Log in"``.
"""

from __future__ import annotations

import json
import re
import typing
from collections.abc import Sequence
from typing import Any

from agent.commands import COMMANDS, Target
from backend.flows.runs_errors import InvalidRun

__all__ = ["exec_args", "main_field"]

_KEY = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*=")


def main_field(name: str) -> str | None:
    """The field a plain word of ``corral exec NAME WORD`` sets, or None for a command without fields."""
    fields = {key: info for key, info in COMMANDS[name].model_fields.items() if key != "timeout"}
    required = [key for key, info in fields.items() if info.is_required()]
    return required[0] if required else next(iter(fields), None)


def _is_target(name: str, field: str) -> bool:
    annotation = COMMANDS[name].model_fields[field].annotation
    return annotation is Target or Target in typing.get_args(annotation)


def exec_args(name: str, words: Sequence[str]) -> dict[str, Any]:
    """The args for command *name* from *words*. Raises InvalidRun (unknown command, two plain words…)."""
    if name not in COMMANDS:
        raise InvalidRun(f"unknown command {name!r}; known commands: {', '.join(sorted(COMMANDS))}")
    args: dict[str, Any] = {}
    plain = []
    for word in words:
        if _KEY.match(word):
            key, _, text = word.partition("=")
            _set(args, key.split("."), _value(text))
        else:
            plain.append(word)
    if plain:
        field = main_field(name)
        if field is None:
            raise InvalidRun(f"{name} takes no arguments, got {' '.join(plain)!r}")
        if len(plain) > 1:
            raise InvalidRun(
                f"{name}: one plain argument sets {field}; got {len(plain)} ({' '.join(plain)!r}):"
                " quote it, or give the others as key=value"
            )
        if field in args:
            raise InvalidRun(f"{name}: {field} given twice")
        args[field] = {"text": plain[0]} if _is_target(name, field) else plain[0]
    return args


def _value(text: str) -> Any:
    try:
        return json.loads(text)
    except ValueError:
        return text


def _set(args: dict[str, Any], path: list[str], value: Any) -> None:
    node = args
    for part in path[:-1]:
        child = node.setdefault(part, {})
        if not isinstance(child, dict):
            raise InvalidRun(f"{part} is set to a value and also has fields")
        node = child
    if path[-1] in node:
        raise InvalidRun(f"{'.'.join(path)} given twice")
    node[path[-1]] = value
