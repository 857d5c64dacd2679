from sqlalchemy import inspect

from backend.config import Settings
from backend.db import Database, migrate
from backend.db.models import Base


async def test_upgrade_from_empty_matches_models_and_downgrades(settings: Settings) -> None:
    database = await Database.open(settings, migrate_schema=False)
    try:
        await migrate.upgrade(database.url)
        async with database.engine.connect() as connection:
            tables = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
            columns = await connection.run_sync(
                lambda c: {
                    t: {col["name"] for col in inspect(c).get_columns(t)} for t in Base.metadata.tables
                }
            )
        assert set(Base.metadata.tables) <= tables
        for name, table in Base.metadata.tables.items():
            assert columns[name] == {column.name for column in table.columns}, name

        await migrate.downgrade(database.url, "base")
        async with database.engine.connect() as connection:
            tables = await connection.run_sync(lambda c: set(inspect(c).get_table_names()))
        assert tables <= {"alembic_version"}

        await migrate.upgrade(database.url)
    finally:
        await database.close()


async def test_autogenerate_finds_no_difference(settings: Settings) -> None:
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    database = await Database.open(settings)
    try:
        async with database.engine.connect() as connection:
            diff = await connection.run_sync(
                lambda c: compare_metadata(MigrationContext.configure(c), Base.metadata)
            )
        assert diff == []
    finally:
        await database.close()
