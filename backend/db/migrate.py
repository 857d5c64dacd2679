"""Schema migrations through Alembic, configured in code (no alembic.ini needed)."""

from __future__ import annotations

import asyncio
from pathlib import Path

from alembic import command
from alembic.config import Config
from alembic.script import ScriptDirectory

from backend.db.exceptions import MigrationError

__all__ = ["alembic_config", "downgrade", "head_revision", "upgrade"]

_MIGRATIONS = Path(__file__).with_name("migrations")


def alembic_config(url: str) -> Config:
    config = Config()
    config.set_main_option("script_location", str(_MIGRATIONS))
    config.set_main_option("sqlalchemy.url", url.replace("%", "%%"))
    return config


def head_revision() -> str:
    head = ScriptDirectory.from_config(alembic_config("")).get_current_head()
    assert head is not None
    return head


async def upgrade(url: str, revision: str = "head") -> None:
    """Upgrade the schema at *url* to *revision*. Runs Alembic in a thread."""
    await _run(command.upgrade, url, revision)


async def downgrade(url: str, revision: str = "base") -> None:
    await _run(command.downgrade, url, revision)


async def _run(operation: object, url: str, revision: str) -> None:
    try:
        await asyncio.to_thread(operation, alembic_config(url), revision)  # type: ignore[arg-type]
    except Exception as exc:
        raise MigrationError(f"migrating the database to {revision} failed: {exc}") from exc
