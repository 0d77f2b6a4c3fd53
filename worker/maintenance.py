"""Self-healing upkeep, run by beat every few seconds: what breaks at 3 a.m. mends itself.

- items whose worker vanished (lease ran out) are published again;
- jobs whose dispatch message was lost are dispatched again, and jobs whose item messages
  were lost (a broker restarted without persistence) have their queued items published again;
- jobs whose last item ended but whose finalize message was lost are finalized;
- jobs past their results TTL are purged;
- temporary files that no item needs any more are deleted.
Every step only publishes messages that are safe to run twice.
"""

from __future__ import annotations

import logging
import uuid
from dataclasses import dataclass
from datetime import timedelta

from core import broker
from core import jobs as jobs_service
from core.broker import Queue, TaskName
from core.errors import StorageUnavailable
from db import jobs as jobs_repository
from db.engine import unit_of_work
from worker.runtime import WorkerRuntime

log = logging.getLogger(__name__)

# Files younger than this may belong to an upload whose job is not committed yet.
ORPHAN_FILE_AGE = timedelta(hours=1)
# Expired jobs purged per transaction, and at most this many transactions per sweep.
PURGE_BATCH = 20
PURGE_BATCHES_PER_SWEEP = 50


@dataclass
class SweepReport:
    leases_reclaimed: int = 0
    jobs_redispatched: int = 0
    jobs_finalized: int = 0
    jobs_purged: int = 0
    files_deleted: int = 0


def reclaim_expired_leases(runtime: WorkerRuntime) -> int:
    with unit_of_work(runtime.session_factory) as session:
        expired = jobs_repository.items_with_expired_lease(session, jobs_service.utcnow(), 5000)
    by_queue: dict[Queue, list[str]] = {}
    for item_id, provider in expired:
        by_queue.setdefault(jobs_service.model_queue(provider), []).append(str(item_id))
    for queue, ids in by_queue.items():
        size = jobs_service.batch_size(runtime.settings, queue)
        for start in range(0, len(ids), size):
            broker.send(TaskName.PROCESS_ITEMS, ids[start : start + size], queue=queue)
    return len(expired)


def redispatch_lost_jobs(runtime: WorkerRuntime) -> int:
    since = jobs_service.utcnow() - runtime.settings.lost_message_grace
    with unit_of_work(runtime.session_factory) as session:
        lost = set(jobs_repository.undispatched_jobs(session, since))
        waiting = jobs_repository.jobs_with_queued_items(session, since)
    if waiting:
        depths = broker.queue_depths()
        # Queued items with nothing in their queue: their messages are gone. Publishing
        # again is harmless when they are not, since a done item cannot be claimed twice.
        lost.update(
            job_id
            for job_id, provider in waiting
            if depths.get(jobs_service.model_queue(provider), 0) == 0
        )
    for job_id in lost:
        broker.send(TaskName.DISPATCH_JOB, str(job_id))
    return len(lost)


def finalize_stuck_jobs(runtime: WorkerRuntime) -> int:
    with unit_of_work(runtime.session_factory) as session:
        stuck = jobs_repository.unfinalized_complete_jobs(session)
    for job_id in stuck:
        broker.send(TaskName.FINALIZE_JOB, str(job_id))
    return len(stuck)


def delete_orphan_files(runtime: WorkerRuntime, *, older_than: timedelta = ORPHAN_FILE_AGE) -> int:
    """Delete stored files that no item needs: not queued or running, and not a recent
    retryable failure kept for /retry."""
    try:
        job_ids = runtime.store.job_ids()
    except StorageUnavailable as error:
        log.warning("orphan sweep skipped: %s", error.message)
        return 0
    return sum(delete_unneeded_files(runtime, job_id, older_than=older_than) for job_id in job_ids)


def delete_unneeded_files(
    runtime: WorkerRuntime, job_id: uuid.UUID, *, older_than: timedelta | None = None
) -> int:
    """Delete the job's files that no item needs (only those older than ``older_than``).

    Run when a job ends, it catches files whose worker died between recording the outcome
    and deleting the file.
    """
    cutoff = jobs_service.utcnow() - older_than if older_than is not None else None
    try:
        stored = runtime.store.job_files(job_id)
    except StorageUnavailable as error:
        log.warning("files of job %s not swept: %s", job_id, error.message)
        return 0
    files = [key for key, written in stored.items() if cutoff is None or written < cutoff]
    if not files:
        return 0
    kept_since = jobs_service.utcnow() - runtime.settings.failed_image_retention
    with unit_of_work(runtime.session_factory) as session:
        needed = jobs_repository.live_storage_keys(session, [job_id])
        needed |= jobs_repository.kept_failed_keys(
            session, [job_id], jobs_service.RETRYABLE_CODES, kept_since
        )
    unneeded = [key for key in files if key not in needed]
    runtime.store.delete_many(unneeded)
    return len(unneeded)


def purge_expired_results(runtime: WorkerRuntime) -> int:
    """Purge jobs past their results TTL, a short transaction per batch, up to
    PURGE_BATCHES_PER_SWEEP batches (the next sweep takes the rest)."""
    total = 0
    for _ in range(PURGE_BATCHES_PER_SWEEP):
        with unit_of_work(runtime.session_factory) as session:
            purged = jobs_service.purge_expired_jobs(session, runtime.settings, PURGE_BATCH)
        for job_id in purged:
            runtime.store.delete_job(job_id)
        total += len(purged)
        if len(purged) < PURGE_BATCH:
            break
    return total


def sweep(runtime: WorkerRuntime, *, orphan_age: timedelta = ORPHAN_FILE_AGE) -> SweepReport:
    """Every upkeep step once; safe to run at any time, as often as wanted."""
    report = SweepReport(
        leases_reclaimed=reclaim_expired_leases(runtime),
        jobs_redispatched=redispatch_lost_jobs(runtime),
        jobs_finalized=finalize_stuck_jobs(runtime),
        jobs_purged=purge_expired_results(runtime),
        files_deleted=delete_orphan_files(runtime, older_than=orphan_age),
    )
    if any(vars(report).values()):
        log.info("maintenance: %s", report)
    return report
