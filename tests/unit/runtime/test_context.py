"""Image inputs, their content hash and the build context."""

from __future__ import annotations

import importlib.metadata
import tarfile
from pathlib import Path

import pytest

from backend.runtime.context import (
    agent_requirements,
    build_context,
    content_hash,
    image_inputs,
    known_kinds,
)

INPUTS = {"Dockerfile": b"FROM x\n", "entrypoint.sh": b"#!/bin/bash\n", "agent-src/agent/a.py": b"A = 1\n"}
REQUIREMENTS = ["pydantic==2.0", "websockets==13.0"]


def test_hash_is_stable_and_order_independent() -> None:
    reordered = dict(reversed(list(INPUTS.items())))

    assert content_hash(INPUTS, REQUIREMENTS) == content_hash(INPUTS, REQUIREMENTS)
    assert content_hash(reordered, list(reversed(REQUIREMENTS))) == content_hash(INPUTS, REQUIREMENTS)
    assert len(content_hash(INPUTS, REQUIREMENTS)) == 64


@pytest.mark.parametrize(
    ("inputs", "requirements", "base"),
    [
        ({**INPUTS, "entrypoint.sh": b"#!/bin/sh\n"}, REQUIREMENTS, ""),  # content
        ({**INPUTS, "agent-src/agent/b.py": b""}, REQUIREMENTS, ""),  # a new (empty) file
        ({k.replace("a.py", "c.py"): v for k, v in INPUTS.items()}, REQUIREMENTS, ""),  # a rename
        (INPUTS, ["pydantic==2.1", "websockets==13.0"], ""),  # a requirement
        (INPUTS, REQUIREMENTS, "other/base:bookworm"),  # the base image
    ],
)
def test_hash_changes_with_any_input(inputs: dict[str, bytes], requirements: list[str], base: str) -> None:
    assert content_hash(inputs, requirements, base) != content_hash(INPUTS, REQUIREMENTS)


def test_hash_does_not_confuse_path_and_content_boundaries() -> None:
    assert content_hash({"ab": b"c"}, []) != content_hash({"a": b"bc"}, [])


def test_browser_inputs_cover_recipe_and_agent() -> None:
    inputs = image_inputs("browser")

    assert {"Dockerfile", "entrypoint.sh", "start/index.html"} <= set(inputs)
    assert "agent-src/agent/protocol.py" in inputs
    assert not any("__pycache__" in path or path.endswith(".pyc") for path in inputs)


def test_hash_follows_an_edit_of_the_recipe(tmp_path: Path) -> None:
    recipe = tmp_path / "images" / "demo"
    recipe.mkdir(parents=True)
    (recipe / "Dockerfile").write_text("FROM base\n")
    agent = tmp_path / "agent"
    agent.mkdir()
    (agent / "__init__.py").write_text("")
    (agent / "__pycache__").mkdir()
    (agent / "__pycache__" / "x.pyc").write_bytes(b"\0")
    before = content_hash(image_inputs("demo", tmp_path / "images", agent), [])

    (agent / "__pycache__" / "y.pyc").write_bytes(b"\1")
    assert content_hash(image_inputs("demo", tmp_path / "images", agent), []) == before

    (agent / "__init__.py").write_text("VERSION = 2\n")
    assert content_hash(image_inputs("demo", tmp_path / "images", agent), []) != before


def test_unknown_kind_has_no_inputs() -> None:
    with pytest.raises(FileNotFoundError):
        image_inputs("no-such-kind")
    assert "browser" in known_kinds()


def test_requirements_pin_what_the_backend_runs() -> None:
    requirements = agent_requirements()

    assert f"pydantic=={importlib.metadata.version('pydantic')}" in requirements
    assert f"websockets=={importlib.metadata.version('websockets')}" in requirements


def test_build_context_holds_inputs_and_wheels(tmp_path: Path) -> None:
    wheel = tmp_path / "demo-1.0-py3-none-any.whl"
    wheel.write_bytes(b"wheel")

    context = build_context(INPUTS, [wheel], REQUIREMENTS)

    with tarfile.open(fileobj=context) as tar:
        members = {member.name: member for member in tar.getmembers()}
        assert set(members) == {*INPUTS, "wheels/demo-1.0-py3-none-any.whl", "wheels/requirements.txt"}
        assert members["entrypoint.sh"].mode == 0o755
        assert members["Dockerfile"].mode == 0o644
        requirements = tar.extractfile("wheels/requirements.txt")
        assert requirements is not None
        assert requirements.read().decode().split() == REQUIREMENTS


def test_build_context_is_reproducible(tmp_path: Path) -> None:
    first = build_context(INPUTS, [], REQUIREMENTS).getvalue()
    assert build_context(dict(reversed(list(INPUTS.items()))), [], REQUIREMENTS).getvalue() == first
