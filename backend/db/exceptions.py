"""Errors of the database layer.

DatabaseError
├── DatabaseUnavailable   Postgres cannot be started or reached
└── MigrationError        upgrading or downgrading the schema failed
"""

from __future__ import annotations

from backend.exceptions import CorralError


class DatabaseError(CorralError):
    """Database error."""


class DatabaseUnavailable(DatabaseError):
    """Cannot reach Postgres. Check CORRAL_DATABASE_URL, or unset it to use the embedded server."""


class MigrationError(DatabaseError):
    """The database schema could not be migrated."""
