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
    """Publish process_items messages for the queued items of the job."""
    dispatch.dispatch_job(get_runtime(), uuid.UUID(job_id))


@celery_app.task(name=TaskName.FINALIZE_JOB, soft_time_limit=120, time_limit=150, **_RETRY)
def finalize_job(job_id_text: str) -> None:
    """Give the job its final status and settle its credits (idempotent)."""
    runtime = get_runtime()
    job_id = uuid.UUID(job_id_text)
    with unit_of_work(runtime.session_factory) as session:
        if not jobs_service.is_ready_to_finalize(session, job_id):
            return
    # Before the final status shows: files a worker left behind (killed between storing
    # its outcome and deleting the file), or is still deleting, are gone when clients look.
    maintenance.delete_unneeded_files(runtime, job_id)
    with unit_of_work(runtime.session_factory) as session:
        jobs_service.finalize_job(session, runtime.settings, job_id)
