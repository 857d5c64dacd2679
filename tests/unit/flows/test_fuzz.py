"""Random YAML-ish text never makes the parser raise anything but FlowError."""

from __future__ import annotations

import contextlib
import time

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.flows import FlowError, FlowProblem, parse
from backend.flows.syntax import SPECS

_FRAGMENTS = [
    *SPECS,
    "setLocation",
    "roles",
    "viewer",
    "url",
    "env",
    "appId",
    "commands",
    "times",
    "while",
    "visible",
    "file",
    "text",
    "id",
    "index",
    "point",
    "${A}",
    "${output.x}",
    "${viewer.qr}",
    "${'",
    "&a",
    "*a",
    "!!str",
    "!!python/name:os.system",
    "---",
    "- ",
    ": ",
    "\n",
    "\n  ",
    "\n    - ",
    "[",
    "]",
    "{",
    "}",
    ",",
    "'",
    '"',
    "#",
    "|",
    ">",
    "?",
    "%YAML 1.1",
    "\t",
    "\x00",
    "\ufeff",
    "1",
    "-1",
    "true",
    "null",
    "50%,50%",
    "a.yaml",
    "x" * 50,
]


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.sampled_from(_FRAGMENTS), max_size=60).map("".join))
def test_fragments_of_flows(text: str) -> None:
    problems = _problems(text)
    assert problems is None or problems
    assert all(problem.file == "fuzz.yaml" for problem in problems or [])


def _problems(text: str) -> list[FlowProblem] | None:
    try:
        parse(text, "fuzz.yaml")
    except FlowError as exc:
        return exc.problems
    return None


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_any_text(text: str) -> None:
    with contextlib.suppress(FlowError):
        parse(text, "fuzz.yaml")


def test_the_fuzz_is_quick() -> None:
    started = time.perf_counter()
    test_fragments_of_flows()
    assert time.perf_counter() - started < 30
