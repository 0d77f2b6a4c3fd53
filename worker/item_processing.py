"""One image through the model: claim, load, normalise, call, store, delete the file.

No database session is open while the model works: a short one claims the item, another
writes the outcome.
"""

from __future__ import annotations

import logging
import time
import uuid

from sqlalchemy.orm import Session

from core import jobs as jobs_service
from core.errors import ImageExtractError, InvalidModelOutput
from core.json_output import parse_json_output
from db import jobs as jobs_repository
from db.engine import unit_of_work
from db.models import ItemStatus, JobStatus
from worker.image_fetch import fetch_image
from worker.images import prepare_image
from worker.job_snapshots import JobSnapshot
from worker.providers.base import ExtractionRequest, Scene
from worker.runtime import WorkerRuntime

log = logging.getLogger(__name__)


def process_item(runtime: WorkerRuntime, item_id: uuid.UUID) -> None:
    """Run one item; a no-op when it is done, cancelled, or held by another worker."""
    settings = runtime.settings
    now = jobs_service.utcnow()
    with unit_of_work(runtime.session_factory) as session:
        claimed = jobs_repository.claim_item(
            session,
            item_id,
            now=now,
            lease_until=now + settings.item_lease,
            max_attempts=settings.max_item_attempts,
        )
        if claimed is None:
            _fail_if_out_of_attempts(runtime, session, item_id)
            return
        snapshot = runtime.snapshots.get(claimed.job_id)
        if snapshot is None:
            job = jobs_repository.get_job(session, claimed.job_id)
            if job is None:  # the job was purged while this message waited
                return
            if job.status == JobStatus.QUEUED:
                jobs_repository.mark_job_running(session, job.id, now)
            snapshot = JobSnapshot(
                provider=job.provider,
                request=ExtractionRequest(
                    prompt=job.prompt,
                    json_mode=job.json_mode,
                    scene=Scene(job.scene),
                    max_tokens=settings.max_output_tokens,
                    model=job.model,
                ),
            )
            runtime.snapshots.put(claimed.job_id, snapshot)

    name = f"images[{claimed.index}]"
    outcome = _run_model(runtime, claimed, snapshot, name)
    with unit_of_work(runtime.session_factory) as session:
        jobs_service.record_item_outcome(
            session, claimed.job_id, claimed.id, claimed.attempts, outcome
        )
    if claimed.storage_key and not jobs_service.keeps_file(outcome):
        runtime.store.delete(claimed.storage_key)


def _run_model(
    runtime: WorkerRuntime, claimed: jobs_repository.ClaimedItem, snapshot: JobSnapshot, name: str
) -> jobs_service.ItemOutcome:
    settings = runtime.settings
    try:
        if claimed.storage_key:
            try:
                data = runtime.store.read(claimed.storage_key)
            except FileNotFoundError as error:
                raise ImageExtractError(
                    f"{name}: its temporary file is gone", input=name
                ) from error
        else:
            data = fetch_image(
                runtime.fetch_client,
                claimed.source_url or "",
                max_bytes=settings.max_image_bytes,
                name=name,
            )
        prepared = prepare_image(
            data, max_side=settings.max_image_side, max_pixels=settings.max_image_pixels, name=name
        )
        provider = runtime.provider(snapshot.provider)
        started = time.perf_counter()
        result = provider.extract(prepared, snapshot.request)
        parsed = None
        if snapshot.request.json_mode:
            try:
                parsed = parse_json_output(result.content)
            except InvalidModelOutput:
                # One more try: a model that slipped once usually answers well the next time.
                result = provider.extract(prepared, snapshot.request)
                parsed = parse_json_output(result.content)
        model_ms = int((time.perf_counter() - started) * 1000)
        return jobs_service.ItemOutcome(
            succeeded=True,
            content=result.content,
            parsed=parsed,
            prompt_tokens=result.usage.prompt_tokens,
            completion_tokens=result.usage.completion_tokens,
            model_ms=model_ms,
        )
    except ImageExtractError as error:
        return jobs_service.ItemOutcome(
            succeeded=False, error_code=error.kind.code, error_message=error.message
        )
    except Exception:
        log.exception("item %s failed unexpectedly", claimed.id)
        return jobs_service.ItemOutcome(
            succeeded=False,
            error_code="internal_error",
            error_message=f"{name}: internal error while processing this image",
        )


def _fail_if_out_of_attempts(runtime: WorkerRuntime, session: Session, item_id: uuid.UUID) -> None:
    """An item whose attempts are used up and whose last holder vanished ends as failed."""
    item = jobs_repository.get_item(session, item_id)
    if item is None or item.attempts < runtime.settings.max_item_attempts:
        return
    if item.status == ItemStatus.RUNNING and (
        item.lease_expires_at is None or item.lease_expires_at > jobs_service.utcnow()
    ):
        return
    if item.status not in (ItemStatus.QUEUED, ItemStatus.RUNNING):
        return
    outcome = jobs_service.ItemOutcome(
        succeeded=False,
        error_code="internal_error",
        error_message=f"images[{item.index}]: gave up after {item.attempts} attempts",
    )
    jobs_service.record_item_outcome(session, item.job_id, item.id, None, outcome)
    if item.storage_key:
        runtime.store.delete(item.storage_key)
