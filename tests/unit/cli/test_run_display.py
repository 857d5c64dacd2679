"""What `corral flow run` and `corral exec` print: device and flow text never drives the terminal."""

from __future__ import annotations

import io
from datetime import UTC, datetime

from rich.console import Console

from backend.cli_runs import _LiveDisplay, _PlainDisplay, printable
from backend.types import FlowRunInfo

# What a hostile device answers as its error: rich markup, a title-setting and a colour escape.
HOSTILE = "[/] [link=file:///etc/shadow]x[/link] \x1b]0;PWNED\x07\x1b[31mred\x1b[0m\nnext"


def _run(error: str) -> FlowRunInfo:
    now = datetime(2026, 1, 1, tzinfo=UTC)
    return FlowRunInfo(
        id=1,
        batch="b",
        name="login",
        file="login.yaml",
        devices={"device": "d1"},
        state="failed",
        error=error,
        failed_role="device",
        steps_total=4,
        steps_done=1,
        current_step="tapOn [bold]",
        created_at=now,
        started_at=now,
        finished_at=now,
    )


def test_control_characters_are_shown_escaped() -> None:
    assert printable("a\x1b[2Jb\x07\tc\nd\x9b") == "a\\x1b[2Jb\\x07\tc\nd\\x9b"
    assert printable("a\nb\r", lines=False) == "a\\x0ab\\x0d"


def test_the_live_table_shows_markup_as_text_and_no_escape_sequences() -> None:
    display = _LiveDisplay(io.StringIO())
    display.names = {"d1": "browser-1"}
    display.update([_run(HOSTILE)])
    out = io.StringIO()
    Console(file=out, width=400, force_terminal=True, color_system=None).print(display._table())
    text = out.getvalue()
    assert "[/] [link=file:///etc/shadow]x[/link] \\x1b]0;PWNED\\x07\\x1b[31mred\\x1b[0m\\x0anext" in text
    assert "\x1b]0;" not in text
    assert "\x07" not in text


def test_the_plain_display_prints_one_line_without_escape_sequences() -> None:
    out = io.StringIO()
    display = _PlainDisplay(out)
    display.names = {"d1": "browser-1"}
    display.update([_run(HOSTILE)])
    lines = out.getvalue().splitlines()
    assert len(lines) == 1
    assert "\x1b" not in lines[0]
    assert lines[0].startswith("browser-1  login  1/4  failed  0.0s  [/] [link=file:///etc/shadow]x[/link]")
