"""The task that runs a job's images through the model (task name `extraction.process_items`,
kept as it is for messages already queued)."""

from __future__ import annotations

import uuid
from typing import Any

from sqlalchemy.exc import OperationalError

from core.broker import Queue, TaskName, celery_app
from worker import item_grounding, item_processing
from worker.runtime import get_runtime

# Both tasks: acknowledged once done, and tried again while the database or the broker
# is away (their work is idempotent).
_ROBUST: dict[str, Any] = {
    "acks_late": True,
    "reject_on_worker_lost": True,
    "autoretry_for": (OperationalError, ConnectionError),
    "retry_backoff": True,
    "retry_jitter": True,
    "max_retries": 10,
}


@celery_app.task(
    name=TaskName.PROCESS_ITEMS,
    **_ROBUST,
    # Above the provider's worst case (timeout x attempts plus backoff), below the lease.
    # Only the prefork pool (the local engine's cpu queue) enforces them.
    soft_time_limit=540,
    time_limit=570,
)
def process_items(item_ids: list[str], budget: int = 0, queue: str = Queue.MODEL) -> None:
    """Run images through the model: these ids, or (a claim token, without ids) up to
    ``budget`` images of ``queue`` in the fair order (idempotent; see
    worker.item_processing)."""
    item_processing.process_items(
        get_runtime(),
        [uuid.UUID(item_id) for item_id in item_ids],
        budget=int(budget),
        queue=Queue(queue),
    )


@celery_app.task(
    name=TaskName.GROUND_ITEMS,
    **_ROBUST,
    soft_time_limit=120,
    time_limit=150,
)
def ground_items(item_id: str, attempt: int) -> None:
    """Find where each value of a remote model's answer is printed, and end the item
    (idempotent: only while the item still runs under ``attempt``)."""
    item_grounding.ground_item(get_runtime(), uuid.UUID(item_id), int(attempt))
