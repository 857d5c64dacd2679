"""Named SQL blocks from ``sql/queries.sql`` (``-- name --`` then a one-line description)."""

from __future__ import annotations

import re
from pathlib import Path

__all__ = ["QUERIES", "parse_queries"]

_HEADER = re.compile(r"^-- (\w+) --$", re.MULTILINE)


def parse_queries(source: str) -> dict[str, str]:
    """Split *source* into {name: sql}; each block's description comment is dropped."""
    parts = _HEADER.split(source)
    queries: dict[str, str] = {}
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        lines = [line for line in body.strip().splitlines() if not line.startswith("--")]
        queries[name] = "\n".join(lines).rstrip().rstrip(";")
    return queries


QUERIES = parse_queries((Path(__file__).parent / "sql" / "queries.sql").read_text())
