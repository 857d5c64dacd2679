"""Durable jobs on Postgres: claim with SKIP LOCKED, lease + heartbeat, retry with backoff."""

from backend.jobs.exceptions import JobCancelled, JobError, LeaseLost, UnknownJobKind
from backend.jobs.worker import Handler, JobContext, Worker

__all__ = ["Handler", "JobCancelled", "JobContext", "JobError", "LeaseLost", "UnknownJobKind", "Worker"]
