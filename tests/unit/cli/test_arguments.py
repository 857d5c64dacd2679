import pytest

from backend.cli import build_parser, main


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (["provision", "--kind", "browser", "--count", "0"], "from 1 to 64, got 0"),
        (["provision", "--kind", "browser", "--count", "abc"], "got 'abc'"),
        (["provision", "--kind", "browser", "--count", "65"], "from 1 to 64"),
        (["provision", "--kind", "toaster"], "invalid choice: 'toaster'"),
        (["provision", "--kind", "toaster"], "browser"),
        (["provision"], "required: --kind"),
        (["frobnicate"], "invalid choice"),
        (["rm"], "rm needs device ids/names or --all"),
        (
            ["provision", "--kind", "browser", "--timeout", "-5"],
            "expected a positive number of seconds, got -5",
        ),
        (["provision", "--kind", "browser", "--timeout", "soon"], "expected a number of seconds, got 'soon'"),
        (["jobs", "--limit", "-3"], "expected 1 or more, got -3"),
        (["images", "build", "android"], "unknown kind 'android'; this build has: browser"),
    ],
)
def test_usage_errors_exit_2_and_say_what_is_valid(argv, message, capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(argv)
    assert info.value.code == 2
    assert message in capsys.readouterr().err


def test_help_teaches_with_examples(capsys) -> None:
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--help"])
    out = capsys.readouterr().out
    for text in (
        "corral provision --kind browser --count 4 --wait",
        "corral rm --all",
        "CORRAL_DATABASE_URL",
    ):
        assert text in out


def test_good_arguments_parse() -> None:
    args = build_parser().parse_args(["provision", "--kind", "browser", "--count", "4", "--wait"])
    assert (args.kind, args.count, args.wait) == ("browser", 4, True)


def test_ui_without_a_display_explains_instead_of_crashing(monkeypatch, capsys) -> None:
    for name in ("DISPLAY", "WAYLAND_DISPLAY", "QT_QPA_PLATFORM"):
        monkeypatch.delenv(name, raising=False)
    assert main(["ui"]) == 1
    assert "no display" in capsys.readouterr().err


def test_bad_settings_in_the_environment_name_the_variable(monkeypatch, capsys) -> None:
    monkeypatch.setenv("CORRAL_GRID_ENCODING", "h264")
    monkeypatch.setenv("CORRAL_JOB_CONCURRENCY", "lots")

    assert main(["devices"]) == 2
    err = capsys.readouterr().err
    assert "CORRAL_GRID_ENCODING: Input should be 'raw' or 'tight' (got 'h264')" in err
    assert "CORRAL_JOB_CONCURRENCY:" in err and "'lots'" in err
    assert "Traceback" not in err
