"""README's settings table is the one the settings model renders, and documents every setting."""

from __future__ import annotations

from pathlib import Path
from typing import Literal

import pytest
from pydantic import Field
from pydantic_settings import BaseSettings, SettingsConfigDict

from backend.config.docs import BEGIN, END, main, replace_table, settings_table
from backend.config.exceptions import ConfigError
from backend.config.settings import Settings

README = Path(__file__).parents[3] / "README.md"
REGENERATE = "python -m backend.config.docs README.md"


def test_readme_lists_every_setting_as_the_model_renders_it() -> None:
    text = README.read_text(encoding="utf-8")
    assert text.count(BEGIN) == 1 and text.count(END) == 1
    shown = text[text.index(BEGIN) + len(BEGIN) + 1 : text.index(END)]
    assert shown == settings_table(), f"README's settings table is stale: run `{REGENERATE}`"
    assert REGENERATE in BEGIN  # the marker says how to regenerate


def test_every_setting_has_a_description() -> None:
    assert [name for name, field in Settings.model_fields.items() if not field.description] == []
    assert len(settings_table().splitlines()) == 2 + len(Settings.model_fields)


class _Example(BaseSettings):
    model_config = SettingsConfigDict(env_prefix="EX_", use_attribute_docstrings=True)

    path: Path = Field(default_factory=Path.cwd, json_schema_extra={"shown_default": "the current dir"})
    """Where it goes."""
    mode: Literal["a", "b"] | None = None
    """``None`` picks
    one | the other."""
    count: int = 3
    """How many."""
    name: str = "x"
    """Its name."""


def test_rendering_of_each_kind_of_default() -> None:
    assert settings_table(_Example) == (
        "| variable | default | meaning |\n"
        "|---|---|---|\n"
        "| `EX_PATH` | the current dir | Where it goes. |\n"
        "| `EX_MODE` | unset | `None` picks one \\| the other. One of `a`, `b`. |\n"
        "| `EX_COUNT` | `3` | How many. |\n"
        "| `EX_NAME` | `x` | Its name. |\n"
    )


def test_an_undocumented_setting_is_refused() -> None:
    class Undocumented(BaseSettings):
        model_config = SettingsConfigDict(env_prefix="EX_", use_attribute_docstrings=True)
        documented: int = 1
        """Yes."""
        forgotten: int = 2

    with pytest.raises(ConfigError, match=r"without a description .*\['forgotten'\]"):
        settings_table(Undocumented)


def test_replace_table_keeps_what_is_around_the_markers() -> None:
    text = f"# Title\n\nprose\n\n{BEGIN}\n| old |\n{END}\n\nmore prose\n"
    assert replace_table(text, "| new |\n") == f"# Title\n\nprose\n\n{BEGIN}\n| new |\n{END}\n\nmore prose\n"
    with pytest.raises(ConfigError, match="no settings table markers"):
        replace_table("# no markers\n", "| new |\n")
    with pytest.raises(ConfigError, match="no settings table markers"):
        replace_table(f"{END}\n{BEGIN}\n", "| new |\n")


def test_main_rewrites_a_readme_in_place(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    readme = tmp_path / "README.md"
    readme.write_text(f"intro\n{BEGIN}\n| stale |\n{END}\noutro\n", encoding="utf-8")
    assert main([str(readme)]) == 0
    assert readme.read_text(encoding="utf-8") == f"intro\n{BEGIN}\n{settings_table()}{END}\noutro\n"
    assert main([]) == 0
    assert capsys.readouterr().out == settings_table()
