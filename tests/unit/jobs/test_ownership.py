"""Only the jobs package writes the jobs table: others go through JobManager."""

from __future__ import annotations

import re
from pathlib import Path

import backend

_ROOT = Path(backend.__file__).parent
_WRITES = re.compile(
    r"\b(INSERT\s+INTO|UPDATE|DELETE\s+FROM)\s+jobs\b|(?<!class )\bJob\(|\bupdate\(Job\)", re.IGNORECASE
)


def test_no_module_outside_backend_jobs_writes_the_jobs_table() -> None:
    offenders = [
        f"{path.relative_to(_ROOT)}:{number}: {line.strip()}"
        for path in sorted(_ROOT.rglob("*.py"))
        if not path.is_relative_to(_ROOT / "jobs") and "migrations" not in path.parts
        for number, line in enumerate(path.read_text().splitlines(), 1)
        if _WRITES.search(line)
    ]
    assert offenders == []
