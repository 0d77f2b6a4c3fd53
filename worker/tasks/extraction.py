"""The per-image task."""

from __future__ import annotations

import uuid

from sqlalchemy.exc import OperationalError

from core.broker import TaskName, celery_app
from worker import item_processing
from worker.runtime import get_runtime


@celery_app.task(
    name=TaskName.PROCESS_ITEM,
    acks_late=True,
    reject_on_worker_lost=True,
    autoretry_for=(OperationalError, ConnectionError),
    retry_backoff=True,
    retry_jitter=True,
    max_retries=10,
    # Above the provider's worst case (timeout x attempts plus backoff), below the lease.
    soft_time_limit=540,
    time_limit=570,
)
def process_item(item_id: str) -> None:
    """Run one image through the model (idempotent; see worker.item_processing)."""
    item_processing.process_item(get_runtime(), uuid.UUID(item_id))
