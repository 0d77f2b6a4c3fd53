"""Publishing process_items messages for a job's queued items: ids only, a few per message."""

from __future__ import annotations

import uuid

from core import broker
from core import jobs as jobs_service
from core.broker import TaskName
from db import jobs as jobs_repository
from db.engine import unit_of_work
from db.models import JobStatus
from worker.runtime import WorkerRuntime


def dispatch_job(runtime: WorkerRuntime, job_id: uuid.UUID) -> int:
    """Send the job's queued items to the model queue; returns how many were sent.

    Running it twice sends duplicates, which process_items drops when it cannot claim them.
    """
    with unit_of_work(runtime.session_factory) as session:
        job = jobs_repository.get_job(session, job_id)
        if job is None or job.status not in (JobStatus.QUEUED, JobStatus.RUNNING):
            return 0
        queue = jobs_service.model_queue(job.provider)
    batch_size = jobs_service.batch_size(runtime.settings, queue)
    sent, after = 0, -1
    while True:
        with unit_of_work(runtime.session_factory) as session:
            chunk = jobs_repository.item_ids_after(
                session, job_id, after, runtime.settings.dispatch_chunk_size
            )
        if not chunk:
            break
        ids = [str(item_id) for item_id, _index in chunk]
        for start in range(0, len(ids), batch_size):
            broker.send(TaskName.PROCESS_ITEMS, ids[start : start + batch_size], queue=queue)
        sent += len(chunk)
        after = chunk[-1][1]
    with unit_of_work(runtime.session_factory) as session:
        jobs_service.mark_dispatched(session, job_id)
    return sent
