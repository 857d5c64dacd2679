"""The compiled form of a flow that the interpreter runs (``Flow.program``).

Arguments stay as written (after shorthand expansion) until a step runs: the
interpreter substitutes variables then, validates them with the command's
model and builds the agent commands, so values captured at run time
(``${output.x}``, ``${viewer.qr}``) reach the command as any other.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any

from backend.flows.syntax import Spec

__all__ = ["Block", "Leaf", "Node", "Program"]


@dataclass(frozen=True, slots=True)
class Leaf:
    """One command that sends agent commands: one step in reports."""

    spec: Spec
    raw: Mapping[str, Any]
    file: str
    line: int
    url: str | None
    """The header ``url`` in effect (``launchApp`` opens it), unsubstituted."""

    @property
    def command(self) -> str:
        return self.spec.name


@dataclass(frozen=True, slots=True)
class Block:
    """``runFlow`` or ``repeat``: commands run as one top-level step."""

    spec: Spec
    raw: Mapping[str, Any]
    """The arguments without ``commands``."""
    file: str
    line: int
    body: tuple[Node, ...]
    defaults: Mapping[str, str] = field(default_factory=dict)
    """A runFlow file's own header ``env``: its variables unless the caller has them."""
    target: str | None = None
    """The runFlow file, as a key of ``Flow.sources`` (None for inline commands and repeat)."""

    @property
    def command(self) -> str:
        return self.spec.name


Node = Leaf | Block


@dataclass(frozen=True, slots=True)
class Program:
    lanes: Mapping[str, tuple[Node, ...]]
    """Role -> its top-level commands, in order."""
    env: Mapping[str, str]
