"""Queries on provider batches (the batch lane) and on the items written into them."""

from __future__ import annotations

import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import delete, func, or_, select, update
from sqlalchemy.orm import Session

from db.jobs import update_current_attempt
from db.models import ItemStatus, JobItem, Lane, ProviderBatch, ProviderBatchStatus


@dataclass(frozen=True, slots=True)
class BatchItem:
    """An item written (or being written) into a provider batch."""

    id: uuid.UUID
    index: int
    attempts: int
    storage_key: str | None
    source_url: str | None


def request_cancel(session: Session, job_id: uuid.UUID, now: datetime) -> None:
    """The job's batches are to be cancelled at the provider, at the next poll."""
    session.execute(
        update(ProviderBatch)
        .where(
            ProviderBatch.job_id == job_id,
            ProviderBatch.status != ProviderBatchStatus.RECORDED,
        )
        .values(cancel_requested=True, next_poll_at=now)
    )


def start_building(
    session: Session, job_id: uuid.UUID, provider: str, now: datetime, lease_until: datetime
) -> uuid.UUID:
    batch = ProviderBatch(
        id=uuid.uuid4(), job_id=job_id, provider=provider, status=ProviderBatchStatus.BUILDING,
        created_at=now, lease_expires_at=lease_until, request_count=0, completed_count=0,
        failed_count=0, input_bytes=0, poll_seconds=0.0,
    )  # fmt: skip
    session.add(batch)
    session.flush()
    return batch.id


def assign_items(
    session: Session,
    job_id: uuid.UUID,
    batch_id: uuid.UUID,
    count: int,
    *,
    now: datetime,
    max_attempts: int,
) -> list[BatchItem]:
    """The job's first ``count`` waiting batch-lane items, by index, taken into the batch:
    running under a new attempt, with no lease (the batch's row says how they are doing).
    Rows another transaction holds are skipped."""
    ids = list(
        session.scalars(
            select(JobItem.id)
            .where(
                JobItem.job_id == job_id,
                JobItem.status == ItemStatus.QUEUED,
                JobItem.lane == Lane.BATCH,
                JobItem.attempts < max_attempts,
            )
            .order_by(JobItem.index)
            .limit(count)
            .with_for_update(skip_locked=True)
        )
    )
    if not ids:
        return []
    rows = session.execute(
        update(JobItem)
        .where(JobItem.id.in_(ids), JobItem.status == ItemStatus.QUEUED)
        .values(
            status=ItemStatus.RUNNING, attempts=JobItem.attempts + 1, lease_expires_at=None,
            provider_batch_id=batch_id, started_at=func.coalesce(JobItem.started_at, now),
        )
        .returning(JobItem.id, JobItem.index, JobItem.attempts, JobItem.storage_key,
                   JobItem.source_url)
        .execution_options(synchronize_session=False)
    ).all()  # fmt: skip
    return sorted((BatchItem(*row) for row in rows), key=lambda item: item.index)


def items_of(session: Session, batch_id: uuid.UUID) -> list[BatchItem]:
    """The batch's items still waiting for its outcome (running in the batch lane)."""
    rows = session.execute(
        select(JobItem.id, JobItem.index, JobItem.attempts, JobItem.storage_key,
               JobItem.source_url)
        .where(
            JobItem.provider_batch_id == batch_id,
            JobItem.status == ItemStatus.RUNNING,
            JobItem.lane == Lane.BATCH,
        )
        .order_by(JobItem.index)
    ).all()  # fmt: skip
    return [BatchItem(*row) for row in rows]


def release_items(session: Session, item_ids: Sequence[uuid.UUID]) -> None:
    """Items taken into a batch that will not carry them: waiting again, attempt uncounted."""
    if not item_ids:
        return
    session.execute(
        update(JobItem)
        .where(
            JobItem.id.in_(item_ids),
            JobItem.status == ItemStatus.RUNNING,
            JobItem.lane == Lane.BATCH,
        )
        .values(status=ItemStatus.QUEUED, attempts=JobItem.attempts - 1, provider_batch_id=None)
        .execution_options(synchronize_session=False)
    )


def forget_storage_keys(session: Session, item_ids: Sequence[uuid.UUID]) -> None:
    """The items' temporary files are deleted (the provider holds the image)."""
    session.execute(
        update(JobItem)
        .where(JobItem.id.in_(item_ids))
        .values(storage_key=None)
        .execution_options(synchronize_session=False)
    )


def to_live_lane(
    session: Session,
    items: Sequence[tuple[uuid.UUID, int, str | None, str, str]],
    *,
    queued: bool,
) -> list[uuid.UUID]:
    """Batch-lane attempts handed to the live lane: ``(item, attempt, storage key, error
    code, message)``. Queued, to be run as a live call (attempt kept: the live claim counts
    the next one); or still running, their answer in, to be grounded. Only the current
    attempt moves. Returns the items moved."""
    moved = []
    for item_id, attempt, storage_key, code, message in items:
        values: dict[str, Any] = {"lane": Lane.LIVE, "storage_key": storage_key}
        if queued:
            values |= {"status": ItemStatus.QUEUED, "error_code": code, "error_message": message}
        if update_current_attempt(session, item_id, attempt, values, lane=Lane.BATCH):
            moved.append(item_id)
    return moved


def cancel_items(
    session: Session, item_ids: Sequence[uuid.UUID], now: datetime, message: str
) -> tuple[int, int]:
    """Cancel batch-lane items still running: how many were, and their credits together."""
    if not item_ids:
        return 0, 0
    credits = session.execute(
        update(JobItem)
        .where(
            JobItem.id.in_(item_ids),
            JobItem.status == ItemStatus.RUNNING,
            JobItem.lane == Lane.BATCH,
        )
        .values(status=ItemStatus.CANCELLED, finished_at=now, error_code="cancelled",
                error_message=message)
        .returning(JobItem.credits)
        .execution_options(synchronize_session=False)
    ).scalars().all()  # fmt: skip
    return len(credits), sum(credits)


def get(session: Session, batch_id: uuid.UUID) -> ProviderBatch | None:
    return session.get(ProviderBatch, batch_id)


def update_batch(session: Session, batch_id: uuid.UUID, **values: Any) -> None:
    session.execute(
        update(ProviderBatch)
        .where(ProviderBatch.id == batch_id)
        .values(**values)
        .execution_options(synchronize_session=False)
    )


def renew_build(
    session: Session, batch_id: uuid.UUID, lease: datetime, new_lease: datetime
) -> bool:
    """Extend a builder's lease, while it is still the builder's (its lease unchanged)."""
    found = session.execute(
        update(ProviderBatch)
        .where(
            ProviderBatch.id == batch_id,
            ProviderBatch.status == ProviderBatchStatus.BUILDING,
            ProviderBatch.lease_expires_at == lease,
        )
        .values(lease_expires_at=new_lease)
        .returning(ProviderBatch.id)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    return found is not None


def mark_submitted(
    session: Session, batch_id: uuid.UUID, *, fence: datetime | None, **values: Any
) -> bool:
    """The provider has the batch. Only its builder (holding lease ``fence``) says so."""
    query = update(ProviderBatch).where(
        ProviderBatch.id == batch_id, ProviderBatch.status == ProviderBatchStatus.BUILDING
    )
    if fence is not None:
        query = query.where(ProviderBatch.lease_expires_at == fence)
    found = session.execute(
        query.values(status=ProviderBatchStatus.SUBMITTED, lease_expires_at=None, **values)
        .returning(ProviderBatch.id)
        .execution_options(synchronize_session=False)
    ).scalar_one_or_none()
    return found is not None


def remove(session: Session, batch_id: uuid.UUID) -> None:
    session.execute(delete(ProviderBatch).where(ProviderBatch.id == batch_id))


def take_over_abandoned(
    session: Session, job_id: uuid.UUID, now: datetime, lease_until: datetime
) -> list[ProviderBatch]:
    """The job's batches whose builder was not heard from in time, now this builder's."""
    batches = list(
        session.scalars(
            select(ProviderBatch)
            .where(
                ProviderBatch.job_id == job_id,
                ProviderBatch.status == ProviderBatchStatus.BUILDING,
                ProviderBatch.lease_expires_at < now,
            )
            .with_for_update(skip_locked=True)
        )
    )
    for batch in batches:
        batch.lease_expires_at = lease_until
    session.flush()
    return batches


def jobs_with_abandoned_builds(session: Session, now: datetime) -> list[uuid.UUID]:
    return list(
        session.scalars(
            select(ProviderBatch.job_id)
            .where(
                ProviderBatch.status == ProviderBatchStatus.BUILDING,
                ProviderBatch.lease_expires_at < now,
            )
            .distinct()
        )
    )


def take_due(
    session: Session, now: datetime, hold_until: datetime, limit: int
) -> list[ProviderBatch]:
    """Batches due to be asked about (or, recorded, to have their files deleted), held from
    other pollers until ``hold_until``; detached from the session."""
    batches = list(
        session.scalars(
            select(ProviderBatch)
            .where(
                or_(
                    ProviderBatch.status == ProviderBatchStatus.SUBMITTED,
                    (ProviderBatch.status == ProviderBatchStatus.RECORDED)
                    & ProviderBatch.files_deleted_at.is_(None),
                ),
                ProviderBatch.next_poll_at <= now,
            )
            .order_by(ProviderBatch.next_poll_at)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
    )
    for batch in batches:
        batch.next_poll_at = hold_until
    session.flush()
    for batch in batches:
        session.expunge(batch)
    return batches


def of_job(session: Session, job_id: uuid.UUID) -> list[ProviderBatch]:
    return list(
        session.scalars(
            select(ProviderBatch)
            .where(ProviderBatch.job_id == job_id)
            .order_by(ProviderBatch.created_at, ProviderBatch.id)
        )
    )


def open_by_status(session: Session) -> dict[str, int]:
    """Batches not yet recorded, by the provider's status (building: not sent yet)."""
    rows = session.execute(
        select(func.coalesce(ProviderBatch.provider_status, ProviderBatch.status), func.count())
        .where(ProviderBatch.status != ProviderBatchStatus.RECORDED)
        .group_by(func.coalesce(ProviderBatch.provider_status, ProviderBatch.status))
    ).all()
    return {status: count for status, count in rows}
