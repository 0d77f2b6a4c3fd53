"""Tasks that move a job as a whole: dispatch and finalisation."""

from __future__ import annotations

import uuid

from sqlalchemy.exc import OperationalError

from core import jobs as jobs_service
from core.broker import TaskName, celery_app
from db.engine import unit_of_work
from worker import dispatch, maintenance
from worker.runtime import get_runtime

_RETRY = {
    "autoretry_for": (OperationalError, ConnectionError),
    "retry_backoff": True,
    "retry_jitter": True,
    "max_retries": 10,
    "acks_late": True,
    "reject_on_worker_lost": True,
}


@celery_app.task(name=TaskName.DISPATCH_JOB, soft_time_limit=600, time_limit=660, **_RETRY)
def dispatch_job(job_id: str) -> None:
    """Publish process_item for every queued item of the job."""
    dispatch.dispatch_job(get_runtime(), uuid.UUID(job_id))


@celery_app.task(name=TaskName.FINALIZE_JOB, soft_time_limit=120, time_limit=150, **_RETRY)
def finalize_job(job_id: str) -> None:
    """Give the job its final status and settle its credits (idempotent)."""
    runtime = get_runtime()
    with unit_of_work(runtime.session_factory) as session:
        finished = jobs_service.finalize_job(session, runtime.settings, uuid.UUID(job_id))
    if finished is not None:
        # Files a worker left behind when it died after recording its item's outcome.
        maintenance.delete_unneeded_files(runtime, uuid.UUID(job_id))
