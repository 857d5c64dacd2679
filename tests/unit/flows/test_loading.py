"""Reading flow files from the disk: only regular .yaml/.yml files, never another file's content."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from backend.flows import FlowError, load

SECRET = "AWS_SECRET_ACCESS_KEY: wJalrXUtnFEMI-sekrit\n"


def _problems(path: Path) -> list[str]:
    with pytest.raises(FlowError) as info:
        load(path)
    return [str(problem) for problem in info.value.problems]


def test_run_flow_of_a_file_that_is_not_a_flow_is_refused_without_its_content(tmp_path: Path) -> None:
    (tmp_path / ".env").write_text(SECRET)
    main = tmp_path / "main.yaml"
    main.write_text("url: x\n---\n- runFlow: .env\n")
    problems = _problems(main)
    assert problems == [
        f"{tmp_path}/main.yaml:3: runFlow: cannot read `{tmp_path}/.env`:"
        " is not a flow file: flow files end in .yaml or .yml"
    ]
    assert "sekrit" not in "".join(problems)


def test_a_link_named_yaml_to_another_file_is_refused_without_its_content(tmp_path: Path) -> None:
    secret = tmp_path / "credentials"
    secret.write_text(SECRET)
    (tmp_path / "common.yaml").symlink_to(secret)
    main = tmp_path / "main.yaml"
    main.write_text("url: x\n---\n- runFlow: common.yaml\n")
    problems = _problems(main)
    assert problems == [
        f"{tmp_path}/main.yaml:3: runFlow: cannot read `{tmp_path}/common.yaml`:"
        f" is not a flow file: flow files end in .yaml or .yml (it links to {secret})"
    ]
    # The main file too: a folder of flows may hold such a link.
    assert _problems(tmp_path / "common.yaml") == [
        f"{tmp_path}/common.yaml: is not a flow file: flow files end in .yaml or .yml (it links to {secret})"
    ]


def test_run_flow_of_dev_zero_is_refused_at_once(tmp_path: Path) -> None:
    main = tmp_path / "main.yaml"
    main.write_text("url: x\n---\n- runFlow: /dev/zero\n")
    started = time.monotonic()
    assert _problems(main) == [
        f"{tmp_path}/main.yaml:3: runFlow: cannot read `/dev/zero`:"
        " is not a flow file: flow files end in .yaml or .yml"
    ]
    assert time.monotonic() - started < 1.0


def test_a_fifo_named_like_a_flow_is_refused_without_waiting_for_a_writer(tmp_path: Path) -> None:
    os.mkfifo(tmp_path / "pipe.yaml")
    main = tmp_path / "main.yaml"
    main.write_text("url: x\n---\n- runFlow: pipe.yaml\n")
    started = time.monotonic()
    assert _problems(main) == [
        f"{tmp_path}/main.yaml:3: runFlow: cannot read `{tmp_path}/pipe.yaml`: is not a regular file"
    ]
    assert time.monotonic() - started < 1.0
