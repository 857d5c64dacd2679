"""`corral exec` words -> command args."""

from __future__ import annotations

import pytest

from backend.flows.runs_args import exec_args, main_field
from backend.flows.runs_errors import InvalidRun
from backend.flows.runs_handler import command_label
from backend.flows.runs_service import validate_command


def test_the_main_field_of_each_command() -> None:
    assert {name: main_field(name) for name in ("ping", "open_url", "tap", "input_text", "erase_text")} == {
        "ping": None,
        "open_url": "url",
        "tap": "target",
        "input_text": "text",
        "erase_text": "chars",
    }
    assert main_field("wait_until") == "visible"


@pytest.mark.parametrize(
    ("name", "words", "expected"),
    [
        ("open_url", ["https://example.org/a=b"], {"url": "https://example.org/a=b"}),
        ("tap", ["Log in"], {"target": {"text": "Log in"}}),
        ("tap", ["target.css=#submit", "timeout=5"], {"target": {"css": "#submit"}, "timeout": 5}),
        ("tap", ['target={"id": "go"}', "long_press=true"], {"target": {"id": "go"}, "long_press": True}),
        ("input_text", ["123"], {"text": "123"}),
        ("wait_until", ["Ready"], {"visible": {"text": "Ready"}}),
        ("ping", [], {}),
    ],
)
def test_words_become_args(name: str, words: list[str], expected: dict[str, object]) -> None:
    assert exec_args(name, words) == expected


@pytest.mark.parametrize(
    ("name", "words", "message"),
    [
        ("fly", [], r"^unknown command 'fly'; known commands: assert, back, clear_state, "),
        ("ping", ["now"], r"^ping takes no arguments, got 'now'$"),
        ("tap", ["a", "b"], r"^tap: one plain argument sets target; got 2 \('a b'\)"),
        ("open_url", ["x", "url=y"], r"^open_url: url given twice$"),
        ("tap", ["target=1", "target.css=x"], r"^target is set to a value and also has fields$"),
    ],
)
def test_bad_words_are_refused(name: str, words: list[str], message: str) -> None:
    with pytest.raises(InvalidRun, match=message):
        exec_args(name, words)


@pytest.mark.parametrize(
    ("name", "args", "label"),
    [
        ("ping", {}, "ping"),
        ("open_url", {"url": "https://example.org", "timeout": 5}, "open_url url=https://example.org"),
        ("tap", {"target": {"css": "#submit"}}, "tap target.css=#submit"),
        # What the handler gets: the args validated, every default filled in.
        (
            "wait_until",
            validate_command("wait_until", {"visible": {"text": "Never"}, "timeout": 30}),
            "wait_until visible.text=Never",
        ),
        (
            "tap",
            validate_command("tap", {"target": {"text": "Log in", "index": 2}}),
            "tap target.text=Log in target.index=2",
        ),
    ],
)
def test_a_single_commands_label_shows_what_was_given(name: str, args: dict[str, object], label: str) -> None:
    # The label of `corral exec`'s run and step (Flow runs panel, pane overlay, `corral jobs`).
    assert command_label(name, args) == label


def test_a_single_command_label_hides_typed_text() -> None:
    from backend.flows.runs_handler import command_label

    assert command_label("input_text", {"text": "hunter2", "timeout": 5}) == "input_text text=<7 characters>"
    assert command_label("open_url", {"url": "https://example.org"}) == "open_url url=https://example.org"
