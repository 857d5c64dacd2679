"""SQLAlchemy models: the schema's single source of truth (Alembic follows it)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlalchemy import (
    BigInteger,
    Boolean,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
    text,
)
from sqlalchemy.dialects.postgresql import JSONB
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

__all__ = ["Base", "Device", "DeviceEvent", "Event", "FlowRun", "FlowStep", "Job"]


class Base(DeclarativeBase):
    pass


def _now() -> Any:
    return text("now()")


class Device(Base):
    __tablename__ = "devices"

    id: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(128), unique=True)
    kind: Mapped[str] = mapped_column(String(32))
    state: Mapped[str] = mapped_column(String(32), index=True)
    reason: Mapped[str | None] = mapped_column(Text)
    progress: Mapped[float] = mapped_column(Float, server_default=text("0"))
    progress_message: Mapped[str] = mapped_column(Text, server_default=text("''"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())


class DeviceEvent(Base):
    __tablename__ = "device_events"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    device_id: Mapped[str] = mapped_column(ForeignKey("devices.id", ondelete="CASCADE"), index=True)
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())
    kind: Mapped[str] = mapped_column(String(32))
    from_state: Mapped[str | None] = mapped_column(String(32))
    to_state: Mapped[str | None] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text, server_default=text("''"))


class Job(Base):
    __tablename__ = "jobs"
    __table_args__ = (
        Index(
            "jobs_ready_idx",
            "priority",
            "run_after",
            "id",
            postgresql_where=text("state = 'queued'"),
        ),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    kind: Mapped[str] = mapped_column(String(64))
    device_id: Mapped[str | None] = mapped_column(ForeignKey("devices.id", ondelete="SET NULL"), index=True)
    payload: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    priority: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    state: Mapped[str] = mapped_column(String(16), server_default=text("'queued'"), index=True)
    attempts: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    max_attempts: Mapped[int] = mapped_column(Integer, server_default=text("3"))
    run_after: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())
    lease_owner: Mapped[str | None] = mapped_column(String(128))
    lease_expires_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    progress: Mapped[float] = mapped_column(Float, server_default=text("0"))
    progress_message: Mapped[str] = mapped_column(Text, server_default=text("''"))
    error: Mapped[str | None] = mapped_column(Text)
    cancel_requested: Mapped[bool] = mapped_column(Boolean, server_default=text("false"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())
    updated_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class Event(Base):
    """Something that happened on or to a device, as the session record shows it (agent events first)."""

    __tablename__ = "events"
    __table_args__ = (
        Index("ix_events_device_at", "device_id", "at"),
        Index("ix_events_at_brin", "at", postgresql_using="brin"),
    )

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    device_id: Mapped[str | None] = mapped_column(String(64))
    """No foreign key: device rows are never deleted, and the check cost a third of an insert."""
    at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())
    source: Mapped[str] = mapped_column(String(32))
    """Who said it: ``agent``, ``hub``, ``flow``."""
    level: Mapped[str] = mapped_column(String(16), server_default=text("'info'"))
    kind: Mapped[str] = mapped_column(String(32))
    message: Mapped[str] = mapped_column(Text, server_default=text("''"))
    data: Mapped[dict[str, Any] | None] = mapped_column(JSONB)


class FlowRun(Base):
    """One flow on one device (or one set of role devices): the job ``job_id`` runs it."""

    __tablename__ = "flow_runs"

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    batch: Mapped[str] = mapped_column(String(64), index=True)
    """Runs started by one request (``corral flow run`` on N devices) share a batch."""
    name: Mapped[str] = mapped_column(Text)
    file: Mapped[str] = mapped_column(Text, server_default=text("''"))
    devices: Mapped[dict[str, Any]] = mapped_column(JSONB, server_default=text("'{}'::jsonb"))
    """Role -> device id."""
    device_id: Mapped[str | None] = mapped_column(ForeignKey("devices.id", ondelete="SET NULL"), index=True)
    """The device of a one-role run (the first role's device otherwise), for lookups."""
    job_id: Mapped[int | None] = mapped_column(ForeignKey("jobs.id", ondelete="SET NULL"))
    state: Mapped[str] = mapped_column(String(16), server_default=text("'queued'"), index=True)
    """queued, running, passed, failed, cancelled."""
    error: Mapped[str | None] = mapped_column(Text)
    failed_role: Mapped[str | None] = mapped_column(String(64))
    steps_total: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    steps_done: Mapped[int] = mapped_column(Integer, server_default=text("0"))
    current_step: Mapped[str] = mapped_column(Text, server_default=text("''"))
    created_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())
    started_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))


class FlowStep(Base):
    """One step of a flow run, written when it starts and again when it ends."""

    __tablename__ = "flow_steps"
    __table_args__ = (UniqueConstraint("run_id", "seq", name="uq_flow_steps_run_seq"),)

    id: Mapped[int] = mapped_column(BigInteger, primary_key=True, autoincrement=True)
    run_id: Mapped[int] = mapped_column(ForeignKey("flow_runs.id", ondelete="CASCADE"), index=True)
    seq: Mapped[int] = mapped_column(Integer)
    role: Mapped[str] = mapped_column(String(64))
    device_id: Mapped[str | None] = mapped_column(String(64))
    index: Mapped[int] = mapped_column(Integer)
    label: Mapped[str] = mapped_column(Text)
    command: Mapped[str] = mapped_column(String(64))
    file: Mapped[str] = mapped_column(Text, server_default=text("''"))
    line: Mapped[int | None] = mapped_column(Integer)
    state: Mapped[str] = mapped_column(String(16), server_default=text("'running'"))
    """running, passed, failed, skipped."""
    error: Mapped[str | None] = mapped_column(Text)
    data: Mapped[dict[str, Any] | None] = mapped_column(JSONB)
    """The command's result without images (text read, value of a script…)."""
    screenshot: Mapped[str | None] = mapped_column(Text)
    """Path of the step's screenshot, relative to the data directory."""
    started_at: Mapped[datetime] = mapped_column(DateTime(timezone=True), server_default=_now())
    finished_at: Mapped[datetime | None] = mapped_column(DateTime(timezone=True))
    duration_ms: Mapped[float | None] = mapped_column(Float)
