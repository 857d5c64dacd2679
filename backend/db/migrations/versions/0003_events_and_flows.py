"""agent events, flow runs and their steps

Revision ID: 0003
Revises: 0002
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlalchemy.dialects import postgresql

revision = "0003"
down_revision = "0002"
branch_labels = None
depends_on = None

_NOW = sa.text("now()")

# A run's row and its steps announce themselves with the run id, so the CLI's
# live table and the window's Flow runs panel follow runs without polling.
_STATEMENTS = (
    """CREATE FUNCTION corral_notify_flow_run() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('corral_flow_runs_v1', NEW.id::text);
        RETURN NULL;
    END $$""",
    """CREATE FUNCTION corral_notify_flow_step() RETURNS trigger LANGUAGE plpgsql AS $$
    BEGIN
        PERFORM pg_notify('corral_flow_runs_v1', NEW.run_id::text);
        RETURN NULL;
    END $$""",
    """CREATE TRIGGER flow_runs_notify AFTER INSERT OR UPDATE ON flow_runs
        FOR EACH ROW EXECUTE FUNCTION corral_notify_flow_run()""",
    """CREATE TRIGGER flow_steps_notify AFTER INSERT OR UPDATE ON flow_steps
        FOR EACH ROW EXECUTE FUNCTION corral_notify_flow_step()""",
)


def upgrade() -> None:
    op.create_table(
        "events",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("device_id", sa.String(64), sa.ForeignKey("devices.id", ondelete="CASCADE")),
        sa.Column("at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        sa.Column("source", sa.String(32), nullable=False),
        sa.Column("level", sa.String(16), nullable=False, server_default=sa.text("'info'")),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("message", sa.Text(), nullable=False, server_default=sa.text("''")),
        sa.Column("data", postgresql.JSONB()),
    )
    op.create_index("ix_events_device_at", "events", ["device_id", "at"])
    op.create_index("ix_events_at_brin", "events", ["at"], postgresql_using="brin")
    op.create_table(
        "flow_runs",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column("batch", sa.String(64), nullable=False),
        sa.Column("name", sa.Text(), nullable=False),
        sa.Column("file", sa.Text(), nullable=False, server_default=sa.text("''")),
        sa.Column("devices", postgresql.JSONB(), nullable=False, server_default=sa.text("'{}'::jsonb")),
        sa.Column("device_id", sa.String(64), sa.ForeignKey("devices.id", ondelete="SET NULL")),
        sa.Column("job_id", sa.BigInteger(), sa.ForeignKey("jobs.id", ondelete="SET NULL")),
        sa.Column("state", sa.String(16), nullable=False, server_default=sa.text("'queued'")),
        sa.Column("error", sa.Text()),
        sa.Column("failed_role", sa.String(64)),
        sa.Column("steps_total", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("steps_done", sa.Integer(), nullable=False, server_default=sa.text("0")),
        sa.Column("current_step", sa.Text(), nullable=False, server_default=sa.text("''")),
        sa.Column("created_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        sa.Column("started_at", sa.DateTime(timezone=True)),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
    )
    op.create_index("ix_flow_runs_batch", "flow_runs", ["batch"])
    op.create_index("ix_flow_runs_device_id", "flow_runs", ["device_id"])
    op.create_index("ix_flow_runs_state", "flow_runs", ["state"])
    op.create_table(
        "flow_steps",
        sa.Column("id", sa.BigInteger(), primary_key=True, autoincrement=True),
        sa.Column(
            "run_id", sa.BigInteger(), sa.ForeignKey("flow_runs.id", ondelete="CASCADE"), nullable=False
        ),
        sa.Column("seq", sa.Integer(), nullable=False),
        sa.Column("role", sa.String(64), nullable=False),
        sa.Column("device_id", sa.String(64)),
        sa.Column("index", sa.Integer(), nullable=False),
        sa.Column("label", sa.Text(), nullable=False),
        sa.Column("command", sa.String(64), nullable=False),
        sa.Column("file", sa.Text(), nullable=False, server_default=sa.text("''")),
        sa.Column("line", sa.Integer()),
        sa.Column("state", sa.String(16), nullable=False, server_default=sa.text("'running'")),
        sa.Column("error", sa.Text()),
        sa.Column("data", postgresql.JSONB()),
        sa.Column("screenshot", sa.Text()),
        sa.Column("started_at", sa.DateTime(timezone=True), nullable=False, server_default=_NOW),
        sa.Column("finished_at", sa.DateTime(timezone=True)),
        sa.Column("duration_ms", sa.Float()),
        sa.UniqueConstraint("run_id", "seq", name="uq_flow_steps_run_seq"),
    )
    op.create_index("ix_flow_steps_run_id", "flow_steps", ["run_id"])
    for statement in _STATEMENTS:
        op.execute(statement)


def downgrade() -> None:
    op.execute("DROP TRIGGER IF EXISTS flow_steps_notify ON flow_steps")
    op.execute("DROP TRIGGER IF EXISTS flow_runs_notify ON flow_runs")
    op.execute("DROP FUNCTION IF EXISTS corral_notify_flow_step()")
    op.execute("DROP FUNCTION IF EXISTS corral_notify_flow_run()")
    op.drop_table("flow_steps")
    op.drop_table("flow_runs")
    op.drop_table("events")
