"""The driver interface: one device kind's hands.

A driver owns what it drives (the browser process, the emulator connection) from
:meth:`Driver.start` to :meth:`Driver.stop` and runs one validated command at a
time per call of :meth:`Driver.run`; the client calls :meth:`run` concurrently
for commands in flight at the same moment, so a driver must not assume it is
alone. It reports what it notices on its own through the *emit* callback given
at construction (``emit(kind, data)``, kinds of :class:`agent.protocol.Event`).
"""

from __future__ import annotations

import abc
from collections.abc import Callable
from typing import Any, ClassVar

from agent.commands import AgentCommand, commands_for

__all__ = ["Driver", "EmitEvent"]

EmitEvent = Callable[[str, dict[str, Any]], None]
"""``emit(kind, data)``: queue an event for the hub. Never blocks, never raises."""


class Driver(abc.ABC):
    """Runs :mod:`agent.commands` on one device kind."""

    kind: ClassVar[str]

    @property
    def commands(self) -> dict[str, type[AgentCommand]]:
        """The commands this driver runs, by wire name (announced in ``hello``)."""
        return commands_for(self.kind)

    @abc.abstractmethod
    async def start(self) -> None:
        """Start driving; returns quickly. A device that cannot start yet is retried in the
        background and its commands fail with :class:`agent.exceptions.DeviceUnavailable`
        meanwhile. Raises :class:`agent.exceptions.DriverStartError` when it can never work."""

    @abc.abstractmethod
    async def stop(self) -> None:
        """Stop everything :meth:`start` started. Idempotent; never raises."""

    @abc.abstractmethod
    async def run(self, command: AgentCommand) -> dict[str, Any]:
        """Do *command* and return its result (see the command's docstring).

        Raises :class:`agent.exceptions.CommandFailed` with a one-line message
        naming what it waited for when the command cannot be done.
        """
