"""What ships with the flows: the schema file, the examples, Maestro-syntax fixtures."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import fastjsonschema
import pytest
import yaml

from backend.flows import load
from backend.flows.checking import check_paths
from backend.flows.schema import flow_schema
from backend.flows.syntax import SPECS

ROOT = Path(__file__).resolve().parents[3]
FIXTURES = ROOT / "tests" / "fixtures" / "maestro"


def test_the_shipped_schema_is_current() -> None:
    shipped = json.loads((ROOT / "resources" / "flow-schema.json").read_text())
    assert shipped == flow_schema(), "run: python -m backend.flows.schema > resources/flow-schema.json"


def test_the_schema_lists_every_command_and_role_blocks() -> None:
    schema = flow_schema()
    command = schema["$defs"]["Command"]["anyOf"]
    assert command[0]["enum"] == [
        "back",
        "clearState",
        "eraseText",
        "hideKeyboard",
        "launchApp",
        "pasteText",
        "readQr",
        "scroll",
        "stopApp",
        "waitForAnimationToEnd",
    ]
    assert sorted(command[1]["properties"]) == sorted(
        [
            "launchApp", "openLink", "tapOn", "longPressOn", "doubleTapOn", "inputText", "eraseText",
            "pressKey", "back", "hideKeyboard", "scroll", "scrollUntilVisible", "swipe", "assertVisible",
            "assertNotVisible", "extendedWaitUntil", "waitForAnimationToEnd", "copyTextFrom", "pasteText",
            "takeScreenshot", "evalScript", "stopApp", "clearState", "readQr", "runFlow", "repeat",
        ]
    )  # fmt: skip
    assert command[1]["additionalProperties"]["$ref"] == "#/$defs/Commands"
    assert schema["$defs"]["Repeat"]["properties"]["commands"] == {"$ref": "#/$defs/Commands"}
    assert schema["$defs"]["TapOn"]["properties"]["css"]["anyOf"] == [{"type": "string"}, {"type": "null"}]


def test_examples_and_maestro_fixtures_pass_check() -> None:
    report = check_paths([ROOT / "examples" / "flows", FIXTURES, FIXTURES / "subflows"], {})
    assert report.lines == [
        f"ok: {ROOT}/examples/flows/login-check.yaml (13 steps)",
        f"ok: {ROOT}/examples/flows/pair.yaml (5 steps, roles viewer, scanner)",
        f"ok: {FIXTURES}/control.yaml (24 steps)",
        f"ok: {FIXTURES}/login.yaml (12 steps)",
        f"ok: {FIXTURES}/scrolling.yaml (10 steps)",
        f"ok: {FIXTURES}/subflows/log-in.yaml (6 steps)",
    ]
    assert report.ok


def _commands(value: Any) -> set[str]:
    names: set[str] = set()
    for item in value if isinstance(value, list) else []:
        name = item if isinstance(item, str) else next(iter(item))
        names.add(name)
        body = item[name] if isinstance(item, dict) else None
        if isinstance(body, dict):
            names |= _commands(body.get("commands"))
    return names


def test_the_maestro_fixtures_cover_every_maestro_command_corral_runs() -> None:
    used: set[str] = set()
    for path in FIXTURES.rglob("*.yaml"):
        documents = list(yaml.safe_load_all(path.read_text()))
        used |= _commands(documents[-1])
    corral_only = {"readQr"}
    assert used == set(flow_schema()["$defs"]["Command"]["anyOf"][1]["properties"]) - corral_only


def test_the_examples_say_what_they_are() -> None:
    login = load(ROOT / "examples" / "flows" / "login-check.yaml")
    assert (login.name, login.tags, dict(login.env)) == (
        "Login check",
        ("example", "smoke"),
        {"USER": "alice", "PASSWORD": "not-a-secret"},
    )
    assert login.sources.keys() == {f"{ROOT}/examples/flows/login-check.yaml"}


def test_the_flow_readme_lists_every_command() -> None:
    text = (ROOT / "examples" / "flows" / "README.md").read_text()
    table = text[text.index("| command |") : text.index("Selectors (")]
    assert [name for name in SPECS if f"`{name}`" not in table] == []


def test_the_schema_accepts_the_shipped_flows_and_refuses_mistakes() -> None:
    validate = fastjsonschema.compile(flow_schema())
    paths = sorted([*(ROOT / "examples" / "flows").glob("*.yaml"), *FIXTURES.rglob("*.yaml")])
    assert len(paths) == 6
    for path in paths:
        for document in yaml.safe_load_all(path.read_text()):
            validate(document)
    for mistake in (
        [{"tapOn": {"colour": "red"}}],
        [{"tapOnn": "x"}],
        [{"repeat": {"times": 2}}],
        {"roles": []},
    ):
        with pytest.raises(fastjsonschema.JsonSchemaException):
            validate(mistake)
