"""The three ways to get a :class:`Flow`: from a file, from text, from the sources of another.

``load`` and ``parse`` read ``runFlow`` files from the disk (relative to the
file that names them) and block while they do: call them from a thread in
async code. ``from_sources`` touches no disk: the host rebuilds the flow a
client checked from :attr:`Flow.sources`.
"""

from __future__ import annotations

import dataclasses
import os
import stat
from collections.abc import Mapping
from pathlib import Path

from backend.flows.compiler import compile_flow
from backend.flows.model import Flow, FlowError, FlowProblem
from backend.flows.yamlsafe import MAX_BYTES

__all__ = ["FLOW_SUFFIXES", "from_sources", "load", "parse", "read_text"]

FLOW_SUFFIXES = (".yaml", ".yml")
"""What a flow file's name ends with (after following links)."""


def read_text(key: str) -> str:
    """The text of flow file *key* from the disk; FlowError (before reading) when it cannot be one.

    A flow file (given, found in a folder, or named by a ``runFlow``, which may be any
    path) is a regular file whose real name ends in ``.yaml`` or ``.yml``, at most
    MAX_BYTES long. A flow handed to the operator must not make ``flow check`` print
    another file's lines in its errors (``runFlow: ../.env``, ``/etc/shadow``, a link
    named ``x.yaml`` to them), block on a FIFO, or read ``/dev/zero`` without end.
    """
    path = Path(key)
    try:
        if path.is_dir():
            raise FlowError([_problem(key, "is a folder, not a flow file")])
        real = path.resolve(strict=True)
        if real.suffix.lower() not in FLOW_SUFFIXES:
            linked = f" (it links to {real})" if path.is_symlink() else ""
            raise FlowError([_problem(key, f"is not a flow file: flow files end in .yaml or .yml{linked}")])
        # Non-blocking: opening a FIFO must not wait for a writer (it is refused just below).
        descriptor = os.open(path, os.O_RDONLY | os.O_NONBLOCK | os.O_CLOEXEC)
        with os.fdopen(descriptor, "rb") as handle:
            info = os.fstat(handle.fileno())
            if not stat.S_ISREG(info.st_mode):
                raise FlowError([_problem(key, "is not a regular file")])
            if info.st_size > MAX_BYTES:
                too_big = f"the file is {info.st_size:,} bytes; flow files may be at most {MAX_BYTES:,} bytes"
                raise FlowError([_problem(key, too_big)])
            data = handle.read(MAX_BYTES + 1)  # bounded even if it grew since fstat
    except FileNotFoundError:
        raise FlowError([_problem(key, "no such file")]) from None
    except OSError as exc:
        raise FlowError([_problem(key, f"cannot read: {exc.strerror or exc}")]) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FlowError([_problem(key, f"not UTF-8 text (byte {exc.start})")]) from None


def _problem(key: str, message: str) -> FlowProblem:
    return FlowProblem(key, None, None, message)


def load(path: str | Path, env: Mapping[str, str] | None = None) -> Flow:
    """Read and check the flow file at *path* (and its runFlow files). Raises FlowError. Blocks."""
    key = Path(path).as_posix()
    flow = compile_flow(read_text, key, dict(env or {}))
    return dataclasses.replace(flow, path=Path(path))


def parse(text: str, file: str = "flow.yaml", env: Mapping[str, str] | None = None) -> Flow:
    """Check the flow *text* as if read from *file* (runFlow files are read from the disk)."""

    def read(key: str) -> str:
        return text if key == file else read_text(key)

    return compile_flow(read, file, dict(env or {}))


def from_sources(sources: Mapping[str, str], main: str, env: Mapping[str, str] | None = None) -> Flow:
    """The flow whose files are *sources* (path -> text, as in :attr:`Flow.sources`); no disk."""

    def read(key: str) -> str:
        if key not in sources:
            raise FlowError([FlowProblem(key, None, None, "not among the flow's files")])
        return sources[key]

    return compile_flow(read, main, dict(env or {}))
