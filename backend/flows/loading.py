"""The three ways to get a :class:`Flow`: from a file, from text, from the sources of another.

``load`` and ``parse`` read ``runFlow`` files from the disk (relative to the
file that names them) and block while they do: call them from a thread in
async code. ``from_sources`` touches no disk: the host rebuilds the flow a
client checked from :attr:`Flow.sources`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from pathlib import Path

from backend.flows.compiler import compile_flow
from backend.flows.model import Flow, FlowError, FlowProblem
from backend.flows.yamlsafe import MAX_BYTES

__all__ = ["from_sources", "load", "parse", "read_text"]


def read_text(key: str) -> str:
    """The text of flow file *key* from the disk; FlowError (before reading) when too big or unreadable."""
    path = Path(key)
    try:
        size = path.stat().st_size
        if path.is_dir():
            raise FlowError([FlowProblem(key, None, None, "is a folder, not a flow file")])
        if size > MAX_BYTES:
            raise FlowError(
                [
                    FlowProblem(
                        key,
                        None,
                        None,
                        f"the file is {size:,} bytes; flow files may be at most {MAX_BYTES:,} bytes",
                    )
                ]
            )
        data = path.read_bytes()[: MAX_BYTES + 1]
    except FileNotFoundError:
        raise FlowError([FlowProblem(key, None, None, "no such file")]) from None
    except OSError as exc:
        raise FlowError([FlowProblem(key, None, None, f"cannot read: {exc.strerror or exc}")]) from None
    try:
        return data.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise FlowError([FlowProblem(key, None, None, f"not UTF-8 text (byte {exc.start})")]) from None


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
