"""The JSON Schema of flow files, generated from the command models, for editors.

``python -m backend.flows.schema > resources/flow-schema.json`` writes the copy
shipped with Corral (a unit test checks it is current). A flow file names it in
its first line, ``# yaml-language-server: $schema=<path or URL of flow-schema.json>``,
and editors with the YAML language server (VS Code's YAML extension, Neovim,
JetBrains) then complete and check commands as they are typed. Each YAML
document of the file is checked on its own: the header, then the command list.
"""

from __future__ import annotations

import json
import sys
from typing import Any

from pydantic import BaseModel
from pydantic.json_schema import models_json_schema

from backend.flows.syntax import COMMANDS_MARK, SPECS, Header

__all__ = ["flow_schema", "main"]

_SHORTHAND_TYPES: dict[str, Any] = {"charactersToErase": {"type": "integer"}}


def flow_schema() -> dict[str, Any]:
    """The schema: a flow file's documents are a header or a list of commands."""
    models: list[type[BaseModel]] = [Header, *dict.fromkeys(spec.model for spec in SPECS.values())]
    _, top = models_json_schema([(model, "validation") for model in models], ref_template="#/$defs/{model}")
    definitions: dict[str, Any] = _point_at_commands(top["$defs"])
    commands: dict[str, Any] = {}
    for spec in SPECS.values():
        forms: list[dict[str, Any]] = [{"$ref": f"#/$defs/{spec.model.__name__}"}]
        if spec.shorthand is not None:
            forms.insert(0, _SHORTHAND_TYPES.get(spec.shorthand, {"type": ["string", "number", "boolean"]}))
        if spec.bare:
            forms.append({"type": "null"})
        commands[spec.name] = {"anyOf": forms, "description": (spec.model.__doc__ or "").strip() or spec.name}
    definitions["Command"] = {
        "anyOf": [
            {"type": "string", "enum": sorted(spec.name for spec in SPECS.values() if spec.bare)},
            {
                "type": "object",
                "properties": commands,
                "additionalProperties": {
                    "$ref": "#/$defs/Commands",
                    "description": "A role's block (flows with `roles`): the commands that role runs.",
                },
                "minProperties": 1,
                "maxProperties": 1,
            },
        ]
    }
    definitions["Commands"] = {"type": "array", "items": {"$ref": "#/$defs/Command"}}
    return {
        "$schema": "https://json-schema.org/draft/2020-12/schema",
        "title": "Corral flow (Maestro's format)",
        "description": "A flow file's header (before `---`) or its list of commands.",
        "anyOf": [{"$ref": "#/$defs/Header"}, {"$ref": "#/$defs/Commands"}],
        "$defs": dict(sorted(definitions.items())),
    }


def _point_at_commands(value: Any) -> Any:
    if isinstance(value, dict):
        if value.get(COMMANDS_MARK):
            return {"$ref": "#/$defs/Commands"}
        return {key: _point_at_commands(item) for key, item in value.items()}
    if isinstance(value, list):
        return [_point_at_commands(item) for item in value]
    return value


def main() -> None:
    """Print the schema (what ``resources/flow-schema.json`` holds)."""
    sys.stdout.write(json.dumps(flow_schema(), indent=2, ensure_ascii=False) + "\n")


if __name__ == "__main__":
    main()
