"""Publishing a job's claim tokens: process_items messages that carry no ids, only how
many images their task may run (see worker.item_processing)."""

from __future__ import annotations

import uuid

from core import broker
from core import jobs as jobs_service
from core.broker import TaskName
from db import jobs as jobs_repository
from db.engine import unit_of_work
from db.models import ItemStatus, JobMode, JobStatus
from worker.runtime import WorkerRuntime


def dispatch_job(runtime: WorkerRuntime, job_id: uuid.UUID) -> int:
    """Publish claim tokens for the job's queued images; returns how many images.

    The tokens wake workers; which images they run is decided when they claim, in the fair
    order, so a token may well run another job's image (and this job's images another
    job's tokens). Running it twice publishes extra tokens, which find nothing and end.
    """
    with unit_of_work(runtime.session_factory) as session:
        job = jobs_repository.get_job(session, job_id)
        if job is None or job.status not in (JobStatus.QUEUED, JobStatus.RUNNING):
            return 0
        queue = jobs_service.model_queue(job.provider)
        if job.mode == JobMode.BATCH:
            # Its images go into provider batches; those a batch gave back (to run live)
            # need tokens as any live image does.
            live = jobs_repository.count_live_queued(session, job_id)
            broker.send(TaskName.BUILD_BATCHES, str(job_id))
        else:
            live = None
        # Tokens are the queue's, not the job's: another job's tokens may already have run
        # some of this job's images. A first dispatch adds the job's whole count, so that
        # the tokens in the queue always cover the images waiting in it; a dispatch again
        # (the sweep found the queue empty) covers what waits now.
        if live is not None:
            queued = live
        elif job.dispatched_at is None:
            queued = job.item_count
        else:
            queued = jobs_repository.count_items_by_status(session, job_id).get(
                ItemStatus.QUEUED, 0
            )
    batch_size = jobs_service.batch_size(runtime.settings, queue)
    for start in range(0, queued, batch_size):
        broker.send(
            TaskName.PROCESS_ITEMS, [], min(batch_size, queued - start), str(queue), queue=queue
        )
    with unit_of_work(runtime.session_factory) as session:
        jobs_service.mark_dispatched(session, job_id)
    return queued
