"""Persistence: models, the database handle, embedded Postgres, migrations."""

from backend.db.database import Database
from backend.db.exceptions import DatabaseError, DatabaseUnavailable, MigrationError

__all__ = ["Database", "DatabaseError", "DatabaseUnavailable", "MigrationError"]
