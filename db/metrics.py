"""Aggregates for /metrics, computed in the database so every worker's work is counted."""

from __future__ import annotations

from sqlalchemy import case, func, select, text
from sqlalchemy.orm import Session

from db.models import Job, JobItem


def jobs_by_status(session: Session) -> dict[str, int]:
    rows = session.execute(select(Job.status, func.count()).group_by(Job.status)).all()
    return {status: count for status, count in rows}


def items_by_status(session: Session) -> dict[str, int]:
    rows = session.execute(select(JobItem.status, func.count()).group_by(JobItem.status)).all()
    return {status: count for status, count in rows}


def waiting_by_priority(session: Session) -> dict[tuple[str, str], int]:
    """Images queued and in flight, by their job's priority."""
    rows = session.execute(
        select(Job.priority, JobItem.status, func.count())
        .join(Job, Job.id == JobItem.job_id)
        .where(JobItem.status.in_(["queued", "running"]))
        .group_by(Job.priority, JobItem.status)
    ).all()
    return {(priority, status): count for priority, status, count in rows}


def failures_by_code(session: Session) -> dict[str, int]:
    rows = session.execute(
        select(JobItem.error_code, func.count())
        .where(JobItem.status == "failed")
        .group_by(JobItem.error_code)
    ).all()
    return {code or "unknown": count for code, count in rows}


def model_latency_buckets(session: Session, bounds_ms: list[int]) -> tuple[list[int], int, int]:
    """Cumulative counts of model calls at or under each bound, the count, and the sum (ms)."""
    columns = [func.sum(case((JobItem.model_ms <= bound, 1), else_=0)) for bound in bounds_ms]
    row = session.execute(
        select(*columns, func.count(JobItem.model_ms), func.coalesce(func.sum(JobItem.model_ms), 0))
    ).one()
    return [int(value or 0) for value in row[:-2]], int(row[-2]), int(row[-1])


def ping(session: Session) -> None:
    session.execute(text("SELECT 1"))
