"""``corral flow check``: check flow files and folders without running anything.

Pure and blocking (it reads files): the CLI calls :func:`check_paths` in a thread.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path

from backend.flows.loading import FLOW_SUFFIXES, load
from backend.flows.model import DEFAULT_ROLE, Flow, FlowError, FlowProblem

__all__ = ["FLOW_SUFFIXES", "CheckReport", "check_paths", "flow_files", "summary"]


@dataclass(frozen=True, slots=True)
class CheckReport:
    lines: list[str]
    """One ``ok: …`` line per good file, one line per problem (``file:line: command: message``)."""
    ok: bool


def flow_files(paths: Iterable[str | Path]) -> tuple[list[Path], list[FlowProblem]]:
    """The flow files named by *paths*: files as given, folders as their ``*.yaml``/``*.yml`` files."""
    files: list[Path] = []
    problems: list[FlowProblem] = []
    for given in paths:
        path = Path(given)
        if path.is_dir():
            found = sorted(p for p in path.iterdir() if p.suffix in FLOW_SUFFIXES and p.is_file())
            if not found:
                problems.append(
                    FlowProblem(str(path), None, None, "no *.yaml or *.yml flow files in this folder")
                )
            files.extend(found)
        else:
            files.append(path)
    return files, problems


def summary(flow: Flow) -> str:
    """``7 steps`` or ``5 steps, roles viewer, scanner``."""
    steps = f"{flow.steps} step{'' if flow.steps == 1 else 's'}"
    if list(flow.roles) == [DEFAULT_ROLE]:
        return steps
    return f"{steps}, roles {', '.join(flow.roles)}"


def check_paths(paths: Iterable[str | Path], env: Mapping[str, str]) -> CheckReport:
    """Check every flow named by *paths* (in their order) with *env*, the ``--env`` values. Blocks."""
    lines: list[str] = []
    ok = True
    for given in paths:
        files, problems = flow_files([given])
        for problem in problems:
            lines.append(str(problem))
            ok = False
        for file in files:
            try:
                flow = load(file, env)
            except FlowError as exc:
                lines.extend(str(problem) for problem in exc.problems)
                ok = False
                continue
            lines.append(f"ok: {file} ({summary(flow)})")
    return CheckReport(lines, ok=ok)
