"""Random YAML-ish text never makes the parser raise anything but FlowError."""

from __future__ import annotations

import asyncio
import contextlib
import time
from typing import Any

import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from backend.flows import Call, FlowError, FlowProblem, StepEvent, execute, from_sources, parse
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


_KEYS = [
    "text",
    "id",
    "css",
    "index",
    "point",
    "times",
    "while",
    "when",
    "commands",
    "file",
    "env",
    "visible",
    "notVisible",
    "timeout",
    "optional",
    "label",
    "element",
    "direction",
    "start",
    "end",
    "from",
    "as",
    "clearState",
    "link",
    "charactersToErase",
    "key",
    "path",
    "repeat",
    "viewer",
    "below",
]
_TEXTS = [
    "a",
    "Log in",
    "${A}",
    "${output.x}",
    "${viewer.qr}",
    "${maestro.copiedText}",
    "${x +}",
    "DOWN",
    "50%,50%",
    "sub.yaml",
    "#id",
    "true",
    "",
]
_values = st.recursive(
    st.none() | st.booleans() | st.integers(-2, 20) | st.sampled_from(_TEXTS),
    lambda children: (
        st.lists(children, max_size=3) | st.dictionaries(st.sampled_from(_KEYS), children, max_size=3)
    ),
    max_leaves=12,
)
_command = st.sampled_from(sorted(SPECS)) | st.dictionaries(
    st.sampled_from([*sorted(SPECS), "setLocation", "viewer", "nope"]), _values, min_size=1, max_size=1
)
_header = st.fixed_dictionaries(
    {"url": st.sampled_from(["file:///a.html", "${A}"])},
    optional={
        "env": st.dictionaries(st.sampled_from(["A", "B"]), st.sampled_from(_TEXTS), max_size=2),
        "roles": st.dictionaries(
            st.sampled_from(["viewer", "scanner", "tapOn"]), st.sampled_from(["browser", "x"])
        ),
        "name": st.sampled_from(_TEXTS),
    },
)


async def _answer(call: Call) -> dict[str, Any]:
    if call.command.name == "assert":
        raise RuntimeError("not visible")
    return {"text": "t", "output": {"x": 1}}


class _Quiet:
    async def step_started(self, step: StepEvent) -> None:
        pass

    async def step_finished(self, step: StepEvent, outcome: str, **details: Any) -> None:
        pass


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_header, st.lists(_command, max_size=8))
def test_structured_flows_check_and_run(header: dict[str, Any], commands: list[Any]) -> None:
    text = yaml.safe_dump(header) + "---\n" + yaml.safe_dump(commands)
    try:
        flow = from_sources({"f.yaml": text, "sub.yaml": "- back\n"}, "f.yaml")
    except FlowError as exc:
        problems = exc.problems
    else:
        problems = []
    assert all(problem.file in ("f.yaml", "sub.yaml") for problem in problems)
    if problems:
        return
    outcome = asyncio.run(execute(flow, _answer, _Quiet()))
    assert outcome.passed or outcome.error
