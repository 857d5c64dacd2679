"""README's settings table, rendered from the settings model.

Every field of :class:`~backend.config.settings.Settings` is documented by its
docstring (its pydantic ``description``); a factory default shows
``json_schema_extra["shown_default"]``. Regenerate README's table after changing
a setting with::

    python -m backend.config.docs README.md

``tests/unit/config/test_docs.py`` fails while README's table differs from
:func:`settings_table`, or while a setting has no description.
"""

from __future__ import annotations

import argparse
import re
import sys
import types
import typing
from collections.abc import Sequence

from pydantic.fields import FieldInfo
from pydantic_settings import BaseSettings

from backend.config.exceptions import ConfigError
from backend.config.settings import Settings

__all__ = ["BEGIN", "END", "main", "replace_table", "settings_table"]

BEGIN = (
    "<!-- settings table: generated from the docstrings in backend/config/settings.py;"
    " regenerate with `python -m backend.config.docs README.md` -->"
)
END = "<!-- end of settings table -->"


def settings_table(model: type[BaseSettings] = Settings) -> str:
    """The markdown table of *model*'s settings: variable, default, meaning; one row per field.

    Raises ConfigError naming the fields without a description.
    """
    prefix = str(model.model_config.get("env_prefix", ""))
    undocumented = [name for name, field in model.model_fields.items() if not field.description]
    if undocumented:
        raise ConfigError(f"settings without a description (a docstring under the field): {undocumented}")
    rows = ["| variable | default | meaning |", "|---|---|---|"]
    for name, field in model.model_fields.items():
        variable = f"`{(prefix + name).upper()}`"
        rows.append(f"| {variable} | {_cell(_default(field))} | {_cell(_meaning(field))} |")
    return "\n".join(rows) + "\n"


def replace_table(text: str, table: str) -> str:
    """*text* (README's) with what lies between the markers replaced by *table*.

    Raises ConfigError when the markers are missing or out of order.
    """
    begin, end = text.find(BEGIN), text.find(END)
    if begin < 0 or end < begin:
        raise ConfigError(f"no settings table markers ({BEGIN!r} then {END!r})")
    return text[: begin + len(BEGIN)] + "\n" + table + text[end:]


def main(argv: Sequence[str] | None = None) -> int:
    """Rewrite the settings table of the given README; print the table without one."""
    parser = argparse.ArgumentParser(prog="python -m backend.config.docs", description=__doc__)
    parser.add_argument("readme", nargs="?", help="the file to update in place (README.md)")
    args = parser.parse_args(argv)
    table = settings_table()
    if args.readme is None:
        sys.stdout.write(table)
        return 0
    with open(args.readme, encoding="utf-8") as file:
        text = file.read()
    updated = replace_table(text, table)
    if updated != text:
        with open(args.readme, "w", encoding="utf-8") as file:
            file.write(updated)
    return 0


def _default(field: FieldInfo) -> str:
    extra = field.json_schema_extra
    if isinstance(extra, dict) and "shown_default" in extra:
        return str(extra["shown_default"])
    if field.default is None:
        return "unset"
    if isinstance(field.default, str):
        return f"`{field.default}`"
    return f"`{field.default!r}`"


def _meaning(field: FieldInfo) -> str:
    meaning = " ".join((field.description or "").split()).replace("``", "`")
    choices = _choices(field.annotation)
    if choices:
        meaning += " One of " + ", ".join(f"`{choice}`" for choice in choices) + "."
    return meaning


def _choices(annotation: object) -> list[str]:
    """The values of a ``Literal`` annotation (also inside ``… | None``)."""
    if typing.get_origin(annotation) is typing.Literal:
        return [str(value) for value in typing.get_args(annotation)]
    if typing.get_origin(annotation) in (typing.Union, types.UnionType):
        return [choice for arg in typing.get_args(annotation) for choice in _choices(arg)]
    return []


def _cell(text: str) -> str:
    return re.sub(r"(?<!\\)\|", r"\\|", text)


if __name__ == "__main__":
    raise SystemExit(main())
