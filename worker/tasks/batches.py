"""Tasks of the batch lane (worker.batch_lane): building provider batches and polling them."""

from __future__ import annotations

import uuid

from sqlalchemy.exc import OperationalError

from core.broker import TaskName, celery_app
from core.errors import StorageUnavailable, UpstreamError
from worker import batch_lane
from worker.runtime import get_runtime


@celery_app.task(
    name=TaskName.BUILD_BATCHES,
    autoretry_for=(OperationalError, ConnectionError, UpstreamError, StorageUnavailable),
    retry_backoff=5,
    retry_backoff_max=600,
    retry_jitter=True,
    max_retries=12,
    acks_late=True,
    reject_on_worker_lost=True,
    soft_time_limit=3 * 3600,
    time_limit=3 * 3600 + 60,
)
def build_batches(job_id: str) -> None:
    """Write the job's waiting images into provider batches and submit them. When the
    provider or image storage fails, the images wait again and the task runs later."""
    batch_lane.build_batches(get_runtime(), uuid.UUID(job_id))


@celery_app.task(name=TaskName.POLL_BATCHES, acks_late=True, soft_time_limit=3600, time_limit=3660)
def poll_batches() -> None:
    """Ask the provider about the open batches that are due; record those that ended."""
    batch_lane.poll_batches(get_runtime())
