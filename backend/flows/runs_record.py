"""Recording a run's steps as they happen: the :class:`~backend.flows.Observer` of a flow job.

Each step is written twice: a ``flow_steps`` row (``running``) when it starts,
updated with its outcome when it ends; the run's ``current_step`` and
``steps_done`` follow in the same transactions, so the CLI's table and the
window's panes (woken by the ``flow_runs`` NOTIFY) show where every run is.

Images never go into rows: a screenshot's PNG is written to
``<data_dir>/flows/<run id>/<seq>-<command>.png`` (directory 0700, file 0600,
never following a link), and the row keeps the path relative to the data directory.
Only PNG bytes are written: the window decodes these files, and a device must not
choose which of Qt's image decoders parses them.

What a device sends is untrusted: results, errors and the labels made from its
values are made storable (:func:`storable`: NUL, which Postgres text and jsonb
refuse, becomes U+FFFD) and errors are cut at :data:`MAX_ERROR_CHARS`, so a device
cannot make its step's row unwritable or a run's error megabytes long.
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import os
import re
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

from sqlalchemy import func, update

from backend.db import Database
from backend.db.models import FlowRun, FlowStep
from backend.flows.model import StepEvent, StepOutcome

__all__ = [
    "FLOWS_DIR",
    "MAX_ERROR_CHARS",
    "PNG_SIGNATURE",
    "StepRecorder",
    "screenshot_path",
    "storable",
    "storable_error",
    "write_private",
]

FLOWS_DIR = "flows"
"""The folder of run screenshots inside the data directory."""
MAX_ERROR_CHARS = 4096
"""A step's or run's error is cut here (a device chooses its errors' text)."""
PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"
_UNSAFE = re.compile(r"[^A-Za-z0-9_.-]+")

Progress = Callable[[int, int, str], Awaitable[None]]
"""(steps done, steps total, label of the step now running) -> None; the job's progress."""


def storable(value: Any) -> Any:
    """*value* (text, or JSON-like data) with every NUL in its strings and keys replaced by U+FFFD."""
    if isinstance(value, str):
        return value.replace("\x00", "\ufffd") if "\x00" in value else value
    if isinstance(value, Mapping):
        return {storable(key): storable(item) for key, item in value.items()}
    if isinstance(value, list):
        return [storable(item) for item in value]
    return value


def storable_error(error: str | None) -> str | None:
    """An error as rows keep it: storable, at most MAX_ERROR_CHARS characters."""
    if error is None:
        return None
    text: str = storable(error)
    return text if len(text) <= MAX_ERROR_CHARS else text[: MAX_ERROR_CHARS - 1] + "…"


def screenshot_path(run_id: int, seq: int, command: str) -> Path:
    """Where step *seq* of run *run_id* keeps its screenshot, relative to the data directory."""
    name = _UNSAFE.sub("_", command)[:40] or "step"
    return Path(FLOWS_DIR) / str(run_id) / f"{seq}-{name}.png"


def write_private(root: Path, relative: Path, data: bytes) -> None:
    """Write *data* to ``root/relative``: folders 0700, the file 0600, created new, links refused.

    Blocking: call it in a thread. Raises OSError.
    """
    path = root / relative
    folder = root
    for part in relative.parent.parts:
        folder = folder / part
        folder.mkdir(mode=0o700, exist_ok=True)
    flags = os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW | getattr(os, "O_CLOEXEC", 0)
    descriptor = os.open(path, flags, 0o600)
    with os.fdopen(descriptor, "wb") as handle:
        handle.write(data)


class StepRecorder:
    """Observer for run *run_id*; *devices* maps role -> device id (for the rows)."""

    def __init__(
        self,
        database: Database,
        data_dir: Path,
        run_id: int,
        devices: Mapping[str, str],
        steps_total: int,
        progress: Progress | None = None,
    ) -> None:
        self._database = database
        self._data_dir = data_dir
        self._run_id = run_id
        self._devices = dict(devices)
        self._total = steps_total
        self._progress = progress
        self._running: dict[tuple[str, int], int] = {}
        """(role, top-level index) -> steps of it running now (a runFlow's children share one index)."""
        self._finished: set[tuple[str, int]] = set()

    @property
    def steps_done(self) -> int:
        done = {key for key in self._finished if not self._running.get(key)}
        return min(len(done), self._total) if self._total else len(done)

    async def step_started(self, step: StepEvent) -> None:
        key = (step.role, step.index)
        self._running[key] = self._running.get(key, 0) + 1
        async with self._database.session() as session, session.begin():
            session.add(
                FlowStep(
                    run_id=self._run_id,
                    seq=step.seq,
                    role=step.role,
                    device_id=self._devices.get(step.role),
                    index=step.index,
                    label=storable(step.label),
                    command=step.command,
                    file=step.file,
                    line=step.line,
                    state="running",
                )
            )
            await session.execute(
                update(FlowRun)
                .where(FlowRun.id == self._run_id)
                .values(current_step=self._current(step), steps_done=self.steps_done)
            )
        if self._progress is not None:
            await self._progress(self.steps_done, self._total, storable(step.label))

    async def step_finished(
        self,
        step: StepEvent,
        outcome: StepOutcome,
        *,
        error: str | None,
        data: Mapping[str, Any],
        duration: float,
    ) -> None:
        key = (step.role, step.index)
        self._running[key] = max(0, self._running.get(key, 0) - 1)
        self._finished.add(key)
        kept, screenshot = await self._split_images(step, data)
        async with self._database.session() as session, session.begin():
            await session.execute(
                update(FlowStep)
                .where(FlowStep.run_id == self._run_id, FlowStep.seq == step.seq)
                .values(
                    state=outcome,
                    error=storable_error(error),
                    data=storable(kept),
                    screenshot=screenshot,
                    finished_at=func.now(),
                    duration_ms=duration * 1000.0,
                )
            )
            await session.execute(
                update(FlowRun).where(FlowRun.id == self._run_id).values(steps_done=self.steps_done)
            )
        if self._progress is not None:
            await self._progress(self.steps_done, self._total, storable(step.label))

    def _current(self, step: StepEvent) -> str:
        """What the run's row shows as its current step (the role is named when there are several)."""
        label: str = storable(step.label)
        return label if len(self._devices) <= 1 else f"{step.role}: {label}"

    async def _split_images(
        self, step: StepEvent, data: Mapping[str, Any]
    ) -> tuple[dict[str, Any], str | None]:
        """The result without its PNG, and where the PNG went (None if it had none)."""
        kept = {key: value for key, value in data.items() if key != "png"}
        encoded = data.get("png")
        if not isinstance(encoded, str):
            return kept, None
        try:
            png = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            kept["png_error"] = "the device sent a screenshot that is not base64"
            return kept, None
        if not png.startswith(PNG_SIGNATURE):
            kept["png_error"] = "the device sent a screenshot that is not a PNG image"
            return kept, None
        relative = screenshot_path(self._run_id, step.seq, step.command)
        await asyncio.to_thread(write_private, self._data_dir, relative, png)
        return kept, str(relative)
