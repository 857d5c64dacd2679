"""Safe YAML: size, aliases, depth and tags are refused before anything is built; lines kept."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from backend.flows import FlowError, load, parse
from backend.flows.yamlsafe import Map, Seq, read_documents


def problems(text: str) -> list[str]:
    with pytest.raises(FlowError) as info:
        parse(text, "bomb.yaml")
    return [str(problem) for problem in info.value.problems]


def test_a_10_mb_text_is_refused_at_once() -> None:
    text = "- inputText: " + "x" * 10_000_000 + "\n"
    started = time.perf_counter()
    assert problems(text) == [
        "bomb.yaml: the file is 10,000,014 bytes; flow files may be at most 1,048,576 bytes"
    ]
    assert time.perf_counter() - started < 1.0


def test_a_10_mb_file_is_refused_before_it_is_read(tmp_path: Path) -> None:
    path = tmp_path / "big.yaml"
    with path.open("wb") as file:
        file.truncate(10 * 1024 * 1024)  # sparse: reading it would show in the time
    started = time.perf_counter()
    with pytest.raises(FlowError) as info:
        load(path)
    assert [problem.message for problem in info.value.problems] == [
        "the file is 10,485,760 bytes; flow files may be at most 1,048,576 bytes"
    ]
    assert time.perf_counter() - started < 0.5


BILLION_LAUGHS = """\
url: x
env: &a ["lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol", "lol"]
b: &b [*a, *a, *a, *a, *a, *a, *a, *a, *a]
c: &c [*b, *b, *b, *b, *b, *b, *b, *b, *b]
d: &d [*c, *c, *c, *c, *c, *c, *c, *c, *c]
e: &e [*d, *d, *d, *d, *d, *d, *d, *d, *d]
f: &f [*e, *e, *e, *e, *e, *e, *e, *e, *e]
g: &g [*f, *f, *f, *f, *f, *f, *f, *f, *f]
h: &h [*g, *g, *g, *g, *g, *g, *g, *g, *g]
i: &i [*h, *h, *h, *h, *h, *h, *h, *h, *h]
---
- inputText: *i
"""


def test_billion_laughs_is_refused_fast() -> None:
    started = time.perf_counter()
    assert problems(BILLION_LAUGHS) == ["bomb.yaml:3: YAML aliases (*a) are not allowed in flow files"]
    assert time.perf_counter() - started < 0.5


def test_deep_nesting_is_refused() -> None:
    assert problems("- " + "[" * 100 + "]" * 100 + "\n") == ["bomb.yaml:1: nested more than 64 levels deep"]


def test_tags_other_than_plain_values_are_refused() -> None:
    text = "- inputText: !!python/object/apply:os.system ['true']\n- openLink: !custom x\n"
    assert problems(text) == [
        "bomb.yaml:1: YAML tag tag:yaml.org,2002:python/object/apply:os.system is not allowed in flow files",
        "bomb.yaml:2: YAML tag !custom is not allowed in flow files",
    ]


def test_a_key_given_twice() -> None:
    assert problems("- tapOn:\n    text: a\n    text: b\n") == ["bomb.yaml:3: `text` is given twice"]


def test_an_unclosed_quote_names_the_line_it_opens_on() -> None:
    # The problem is found at the end of the file; the quote that causes it is on line 4.
    assert problems('url: x\n---\n- back\n- tapOn: "Log in\n- back\n') == [
        "bomb.yaml:6: invalid YAML: while scanning a quoted scalar (line 4) found unexpected end of stream"
    ]


def test_invalid_yaml_names_its_line() -> None:
    assert problems("url: x\n---\n- back\n- tapOn: a: b\n- scroll\n") == [
        "bomb.yaml:4: invalid YAML: mapping values are not allowed in this context"
    ]


def test_more_than_two_documents() -> None:
    assert problems("url: x\n---\n- back\n---\n- back\n") == [
        "bomb.yaml: expected a header (keys), a line `---`, then a list of commands"
    ]


def test_lines_and_plain_values() -> None:
    (header, commands) = read_documents(
        "url: x\nwhen: 2024-01-02\n---\n- back\n- tapOn:\n    index: 2\n", "f"
    )
    assert isinstance(header, Map) and isinstance(commands, Seq)
    assert header == {"url": "x", "when": "2024-01-02"}  # a date stays the text written, as in Maestro
    assert header.lines == {"url": 1, "when": 2}
    assert commands.lines == [4, 5]
    assert commands[1] == {"tapOn": {"index": 2}}
    assert commands[1]["tapOn"].lines == {"index": 6}


def test_not_utf8(tmp_path: Path) -> None:
    path = tmp_path / "latin1.yaml"
    path.write_bytes("- inputText: caf\xe9\n".encode("latin-1"))
    with pytest.raises(FlowError) as info:
        load(path)
    assert [problem.message for problem in info.value.problems] == ["not UTF-8 text (byte 16)"]


def test_a_folder_is_not_a_flow(tmp_path: Path) -> None:
    with pytest.raises(FlowError) as info:
        load(tmp_path)
    assert [problem.message for problem in info.value.problems] == ["is a folder, not a flow file"]
