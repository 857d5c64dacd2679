"""announce every change of the jobs table (for live job views)

Revision ID: 0002
Revises: 0001
"""

from __future__ import annotations

from alembic import op

revision = "0002"
down_revision = "0001"
branch_labels = None
depends_on = None

# Statement-level, empty payload: one notification per write however many rows it
# touched, so batch claims and finishes stay cheap; listeners re-read what they show.
_STATEMENTS = (
    """CREATE FUNCTION corral_notify_job_changes() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('corral_job_changes_v1', '');
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER jobs_changes_notify AFTER INSERT OR UPDATE OR DELETE ON jobs
        FOR EACH STATEMENT EXECUTE FUNCTION corral_notify_job_changes()""",
)


def upgrade() -> None:
    for statement in _STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS jobs_changes_notify ON jobs")
    op.execute("DROP FUNCTION IF EXISTS corral_notify_job_changes()")
