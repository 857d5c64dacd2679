"""devices, device events and jobs, with change notifications

Revision ID: 0001
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None

_NOW = sa.text("now()")

# Triggers announce changes whatever process wrote them (app, CLI, worker), so
# every UI stays current without polling.
_NOTIFY_STATEMENTS = (
    """CREATE FUNCTION corral_notify_device() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('corral_devices_v1', NEW.id);
        RETURN NEW;
    END $$""",
    """CREATE FUNCTION corral_notify_job() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        IF NEW.state = 'queued' THEN
            PERFORM pg_notify('corral_jobs_v1', NEW.kind);
        END IF;
        RETURN NEW;
    END $$""",
    """CREATE TRIGGER devices_notify AFTER INSERT OR UPDATE ON devices
        FOR EACH ROW EXECUTE FUNCTION corral_notify_device()""",
    """CREATE TRIGGER jobs_notify AFTER INSERT OR UPDATE OF state ON jobs
        FOR EACH ROW EXECUTE FUNCTION corral_notify_job()""",
)


def upgrade() -> None:
    op.create_table(
        "devices",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("name", sa.String(128), nullable=False, unique=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("state", sa.String(32), nullable=False),
        sa.Column("reason", sa.Text()),
        sa.Column("progress", sa.Float(), nullable=False, server_default=sa.text("0")),
        sa.Column("progress_message", sa.Text(), nullable=False, server_default=sa.text("''")),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
    )
    op.create_index("ix_devices_state", "devices", ["state"])
    op.create_table(
        "device_events",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column(
            "device_id", sa.String(64), sa.ForeignKey("devices.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("from_state", sa.String(32)),
        sa.Column("to_state", sa.String(32)),
        sa.Column("message", sa.Text(), nullable=False, server_default=sa.text("''")),
    )
    op.create_index("ix_device_events_device_id", "device_events", ["device_id"])
    op.create_table(
        "jobs",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("kind", sa.String(64), nullable=False),
        sa.Column("device_id", sa.String(64), sa.ForeignKey("devices.id", ondelete="SET NULL")),
        sa.Column("payload", postgresql.JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("priority", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("state", sa.String(16), nullable=False, server_default=sa.text("'queued'")),
        sa.Column("attempts", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("max_attempts", sa.Integer(), nullable=False, server_default=sa.text("3")),
        sa.Column("run_after", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        sa.Column("lease_owner", sa.String(128)),
        sa.Column("lease_expires_at", sa.DateTime(timezone=True)),
        sa.Column("progress", sa.Float(), nullable=False, server_default=sa.text("0")),
        sa.Column("progress_message", sa.Text(), nullable=False, server_default=sa.text("''")),
        sa.Column("error", sa.Text()),
        sa.Column("cancel_requested", sa.Boolean(), nullable=False, server_default=sa.text("false")),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        sa.Column("updated_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_jobs_device_id", "jobs", ["device_id"])
    op.create_index("ix_jobs_state", "jobs", ["state"])
    op.create_index(
        "jobs_ready_idx",
        "jobs",
        ["priority", "run_after", "id"],
        postgresql_where=sa.text("state = 'queued'"),
    )
    for statement in _NOTIFY_STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS jobs_notify ON jobs")
    op.execute("DROP TRIGGER IF EXISTS devices_notify ON devices")
    op.execute("DROP FUNCTION IF EXISTS corral_notify_job()")
    op.execute("DROP FUNCTION IF EXISTS corral_notify_device()")
    op.drop_table("jobs")
    op.drop_table("device_events")
    op.drop_table("devices")
