"""``corral flow check``: no database, no Docker; ok lines or problems by line; exit 2 on any problem."""

from __future__ import annotations

from pathlib import Path

import pytest

from backend.cli import main


def write(folder: Path, name: str, text: str) -> Path:
    path = folder / name
    path.write_text(text)
    return path


def test_a_good_flow(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "ok.yaml", "url: x\nenv:\n  U: a\n---\n- launchApp\n- inputText: ${U}\n")
    assert main(["flow", "check", str(path)]) == 0
    assert capsys.readouterr().out == f"ok: {path} (2 steps)\n"


def test_every_problem_with_its_line_and_exit_2(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "bad.yaml", "url: x\n---\n- tapOn: a\n- setLocation: {}\n- inputText: ${WHO}\n")
    assert main(["flow", "check", str(path)]) == 2
    assert capsys.readouterr().out == (
        f"{path}:4: setLocation: `setLocation` is not supported by Corral yet\n"
        f"{path}:5: inputText: missing variable `${{WHO}}`: define it in env, --env or runFlow env\n"
    )


def test_env_satisfies_variables(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    path = write(tmp_path, "env.yaml", "url: x\n---\n- inputText: ${WHO}\n")
    assert main(["flow", "check", str(path), "--env", "WHO=me", "--env", "EXTRA=a=b"]) == 0
    assert capsys.readouterr().out == f"ok: {path} (1 step)\n"


def test_a_folder_checks_its_yaml_files(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    write(tmp_path, "a.yaml", "- back\n")
    write(tmp_path, "b.yml", "roles: {one: browser, two: browser}\n---\n- one: [back]\n- two: [scroll]\n")
    write(tmp_path, "notes.txt", "not a flow")
    assert main(["flow", "check", str(tmp_path)]) == 0
    assert capsys.readouterr().out == (
        f"ok: {tmp_path}/a.yaml (1 step)\nok: {tmp_path}/b.yml (2 steps, roles one, two)\n"
    )


def test_missing_file_and_empty_folder(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    empty = tmp_path / "empty"
    empty.mkdir()
    assert main(["flow", "check", str(tmp_path / "nope.yaml"), str(empty)]) == 2
    assert capsys.readouterr().out == (
        f"{tmp_path}/nope.yaml: no such file\n{empty}: no *.yaml or *.yml flow files in this folder\n"
    )


def test_a_bad_env_is_a_usage_error(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        main(["flow", "check", "x.yaml", "--env", "NOVALUE"])
    assert info.value.code == 2
    assert "expected KEY=VALUE, got 'NOVALUE'" in capsys.readouterr().err


def test_help_has_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["flow", "check", "--help"])
    assert "corral flow check login-check.yaml" in capsys.readouterr().out


def test_the_help_shows_what_checking_the_shipped_example_prints(
    capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(Path(__file__).resolve().parents[3])  # the repository root
    with pytest.raises(SystemExit):
        main(["flow", "check", "--help"])
    assert "corral flow check login-check.yaml             ok: login-check.yaml (13 steps)" in (
        capsys.readouterr().out
    )
    assert main(["flow", "check", "examples/flows/login-check.yaml"]) == 0
    assert capsys.readouterr().out == "ok: examples/flows/login-check.yaml (13 steps)\n"
