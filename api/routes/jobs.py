"""The native jobs API: submit, poll, page through items, stream results, cancel."""

from __future__ import annotations

import io
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Annotated

from fastapi import APIRouter, BackgroundTasks, Query, Request
from fastapi.responses import JSONResponse, StreamingResponse
from sqlalchemy.orm import Session

from api.dependencies import AccountDep, JobDep, SessionDep, ShortAccountDep, StateDep
from api.pagination import decode_cursor, page
from api.result_streams import CountedStream, finished_pages
from api.results_csv import CsvResults
from api.schemas.jobs import (
    CreditsOut,
    ItemCounts,
    ItemError,
    ItemOut,
    ItemPage,
    ItemTimings,
    JobAccepted,
    JobForm,
    JobJson,
    JobOut,
    JobPage,
    JobSummary,
    JobWithResults,
    ProviderBatchOut,
    RequestCounts,
    UsageOut,
)
from api.schemas.openapi import request_body
from api.submission import accept_job, job_options, wait_for_end
from core import jobs as jobs_service
from core.errors import Gone, InvalidRequest
from db import jobs as jobs_repository
from db import provider_batches as provider_batches_repository
from db.models import (
    ItemStatus,
    Job,
    JobItem,
    JobMode,
    JobPriority,
    JobStatus,
    ProviderBatch,
    ProviderBatchStatus,
)

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

# The completion window the provider promises (OpenAI, Anthropic and Gemini: 24 hours).
BATCH_WINDOW = timedelta(hours=24)

CREATE_JOB_DOC = request_body({"multipart/form-data": JobForm, "application/json": JobJson})


@router.post(
    "",
    status_code=202,
    response_model=JobAccepted,
    openapi_extra=CREATE_JOB_DOC,
    responses={200: {"model": JobWithResults, "description": "Ended within `wait` seconds"}},
)
async def create_job(
    request: Request,
    state: StateDep,
    account: ShortAccountDep,
    wait: Annotated[
        float,
        Query(
            ge=0,
            le=600,
            description="Seconds to wait for the job to end; if it does, the answer is 200 "
            "with every result. Otherwise (or with 0) 202 at once.",
        ),
    ] = 0,
) -> JSONResponse:
    """Submit up to 3000 images (multipart upload, or JSON with URLs or base64)."""
    job = await accept_job(
        request,
        state,
        account,
        file_fields={"images"},
        input_method_key="input_method",
        to_options=job_options,
        # A caller who waits for the answer is served before submit-and-poll work.
        default_priority=JobPriority.INTERACTIVE if wait else JobPriority.NORMAL,
    )
    url = str(request.url_for("get_job", job_id=job.id))
    if wait:
        ended = await wait_for_end(state, job.id, wait)
        if ended is not None:
            ended_job, counts, items = ended
            full = JobWithResults(
                **job_out(request, ended_job, counts).model_dump(),
                results=[item_out(item) for item in items],
            )
            return JSONResponse(full.model_dump(mode="json"), headers={"Location": url})
    body = JobAccepted(
        id=job.id,
        url=url,
        status=job.status,
        item_count=job.item_count,
        credits_reserved=job.credits_reserved,
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=202, headers={"Location": url})


def _job_key(parts: list[str]) -> tuple[datetime, uuid.UUID]:
    created, job_id = parts
    when = datetime.fromisoformat(created)
    if when.tzinfo is None or not 2000 <= when.year <= 9000:
        raise ValueError(created)
    return when, uuid.UUID(job_id)


def _item_key(parts: list[str]) -> int:
    (index,) = parts
    # An item's index: a few ASCII digits ("²" is a digit to str.isdigit, not to int()).
    if not (index.isascii() and index.isdigit() and len(index) <= 9):
        raise ValueError(index)
    return int(index)


@router.get("", response_model=JobPage)
def list_jobs(
    request: Request,
    account: AccountDep,
    session: SessionDep,
    status: JobStatus | None = None,
    created_after: datetime | None = None,
    created_before: datetime | None = None,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> JobPage:
    """The account's jobs, newest first, filtered by status and creation time (a summary of
    each: its prompt and metadata are in GET /v1/jobs/{id})."""
    for name, value in (("created_after", created_after), ("created_before", created_before)):
        if value is not None and value.tzinfo is None:
            raise InvalidRequest(f"{name} needs a time zone, e.g. 2026-11-21T00:00:00Z", input=name)
    jobs = jobs_repository.list_account_jobs(
        session,
        account.id,
        status=status,
        created_after=created_after,
        created_before=created_before,
        before=decode_cursor(cursor, _job_key) if cursor else None,
        limit=limit + 1,
    )
    jobs, next_cursor = page(jobs, limit, lambda job: (job.created_at.isoformat(), str(job.id)))
    return JobPage(
        jobs=[
            JobSummary(
                id=job.id,
                url=str(request.url_for("get_job", job_id=job.id)),
                status=job.status,
                api=job.api,
                item_count=job.item_count,
                items_succeeded=job.items_succeeded,
                items_failed=job.items_failed,
                items_cancelled=job.items_cancelled,
                progress=round(job.items_finished / job.item_count, 4) if job.item_count else 1.0,
                credits=CreditsOut(
                    reserved=job.credits_reserved,
                    captured=job.credits_captured,
                    refunded=job.credits_refunded,
                ),
                created_at=job.created_at,
                finished_at=job.finished_at,
            )
            for job in jobs
        ],
        next_cursor=next_cursor,
    )


def job_out(
    request: Request,
    job: Job,
    counts: dict[str, int],
    images_ahead: int | None = None,
    batches: Sequence[ProviderBatch] = (),
) -> JobOut:
    return JobOut(
        id=job.id,
        url=str(request.url_for("get_job", job_id=job.id)),
        results_url=str(request.url_for("get_job_results", job_id=job.id)),
        status=job.status,
        prompt=job.prompt,
        json_mode=job.json_mode,
        grounding=job.grounding,
        normalize=job.normalize,
        scene=job.scene,
        priority=job.priority,
        images_ahead=images_ahead,
        mode=job.mode,
        document_mode=job.document_mode,
        provider_batches=[
            ProviderBatchOut(
                id=batch.provider_batch_id,
                status=batch.provider_status or batch.status,
                request_counts=RequestCounts(
                    total=batch.request_count,
                    completed=batch.completed_count,
                    failed=batch.failed_count,
                ),
                recorded=batch.status == ProviderBatchStatus.RECORDED,
                created_at=batch.created_at,
                expires_at=batch.expires_at,
            )
            for batch in batches
        ],
        estimated_completion_at=estimated_completion(job, batches),
        model=job.model,
        webhook_url=job.webhook_url,
        metadata=job.user_metadata,
        item_count=job.item_count,
        counts=ItemCounts(**counts),
        progress=round(job.items_finished / job.item_count, 4) if job.item_count else 1.0,
        usage=UsageOut(
            prompt_tokens=job.prompt_tokens,
            completion_tokens=job.completion_tokens,
            total_tokens=job.prompt_tokens + job.completion_tokens,
        ),
        credits=CreditsOut(
            reserved=job.credits_reserved,
            captured=job.credits_captured,
            refunded=job.credits_refunded,
        ),
        created_at=job.created_at,
        started_at=job.started_at,
        cancelled_at=job.cancelled_at,
        finished_at=job.finished_at,
        results_expire_at=job.results_expire_at if not job.purged_at else None,
        purged_at=job.purged_at,
    )


def estimated_completion(job: Job, batches: Sequence[ProviderBatch]) -> datetime | None:
    """A batch job's results are due when its slowest open batch ends: at the rate the
    provider has answered so far, or else at the end of its window."""
    if job.mode != JobMode.BATCH or job.finished_at is not None:
        return None
    now = jobs_service.utcnow()
    ends = []
    for batch in batches:
        if batch.status == ProviderBatchStatus.RECORDED:
            continue
        done = batch.completed_count + batch.failed_count
        if batch.in_progress_at is not None and 0 < done < batch.request_count:
            rate = (now - batch.in_progress_at) / done
            ends.append(now + rate * (batch.request_count - done))
        elif batch.expires_at is not None:
            ends.append(batch.expires_at)
        else:
            ends.append(batch.created_at + BATCH_WINDOW)
    return max(ends) if ends else job.created_at + BATCH_WINDOW


def job_batches(session: Session, job: Job) -> list[ProviderBatch]:
    if job.mode != JobMode.BATCH:
        return []
    return provider_batches_repository.of_job(session, job.id)


@router.get("/{job_id}", response_model=JobOut)
def get_job(request: Request, job: JobDep, session: SessionDep) -> JobOut:
    """Status, counts by item status, progress, timestamps, token and credit usage; while
    images wait, how many run before the job's next one."""
    counts = jobs_repository.count_items_by_status(session, job.id)
    ahead = (
        jobs_repository.images_ahead(session, job, jobs_service.PRIORITY_RANKS)
        if counts.get(ItemStatus.QUEUED)
        else None
    )
    return job_out(request, job, counts, ahead, job_batches(session, job))


def item_out(item: JobItem) -> ItemOut:
    return ItemOut(
        index=item.index,
        source_name=item.source_name,
        source_kind=item.source_kind,
        status=item.status,
        page_count=item.page_count,
        pages=item.pages,
        content=item.content,
        parsed=item.parsed,
        evidence=item.evidence,
        normalized=item.normalized,
        usage=UsageOut(
            prompt_tokens=item.prompt_tokens,
            completion_tokens=item.completion_tokens,
            total_tokens=item.prompt_tokens + item.completion_tokens,
        ),
        error=ItemError(code=item.error_code, message=item.error_message)
        if item.error_code
        else None,
        attempts=item.attempts,
        timings=ItemTimings(
            started_at=item.started_at, finished_at=item.finished_at, model_ms=item.model_ms
        ),
    )


@router.get("/{job_id}/items", response_model=ItemPage)
def list_job_items(
    job: JobDep,
    session: SessionDep,
    status: ItemStatus | None = None,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=1000)] = 100,
) -> ItemPage:
    """Per-image results in input order, a page at a time."""
    _check_not_purged(job)
    after = decode_cursor(cursor, _item_key) if cursor else -1
    items = jobs_repository.list_items(
        session, job.id, status=status, after_index=after, limit=limit + 1
    )
    items, next_cursor = page(items, limit, lambda item: (str(item.index),))
    return ItemPage(items=[item_out(item) for item in items], next_cursor=next_cursor)


@router.get(
    "/{job_id}/results",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/jsonl": {}}, "description": "One item per line"}},
)
def get_job_results(job: JobDep, account: AccountDep, state: StateDep) -> StreamingResponse:
    """Every finished item in input order as JSON Lines; works while the job runs.

    An account may read a few results streams at once (429 past
    `max_result_streams_per_account`)."""
    _check_not_purged(job)

    def lines(items: list[JobItem]) -> bytes:
        return b"".join(item_out(item).model_dump_json().encode() + b"\n" for item in items)

    on_end = state.result_streams.open(
        account.id, state.settings.max_result_streams_per_account, "GET /v1/jobs/{id}/results"
    )
    return CountedStream(
        finished_pages(state.session_factory, job.id, lines), on_end, media_type="application/jsonl"
    )


@router.get(
    "/{job_id}/results.csv",
    response_class=StreamingResponse,
    responses={200: {"content": {"text/csv": {}}, "description": "One row per image"}},
)
def get_job_results_csv(job: JobDep, account: AccountDep, state: StateDep) -> StreamingResponse:
    """Every finished item in input order as CSV: the template's keys as columns (nested
    objects as ``seller.name``; a row per element of its first list of objects)."""
    _check_not_purged(job)
    buffer = io.StringIO()
    table = CsvResults(
        buffer, job.prompt, job.json_mode, base=["index", "source_name"],
        by_page=job.document_mode == "pages",
    )  # fmt: skip

    def rows(items: list[JobItem]) -> bytes:
        # The first page also carries the header row, which the table wrote when made.
        for item in items:
            table.write(item_out(item).model_dump(mode="json"))
        text = buffer.getvalue()
        buffer.seek(0)
        buffer.truncate()
        return text.encode()

    on_end = state.result_streams.open(
        account.id, state.settings.max_result_streams_per_account, "GET /v1/jobs/{id}/results.csv"
    )
    return CountedStream(
        finished_pages(state.session_factory, job.id, rows), on_end,
        media_type="text/csv; charset=utf-8",
        headers={"Content-Disposition": f'attachment; filename="{job.id}.csv"'},
    )  # fmt: skip


def _check_not_purged(job: Job) -> None:
    if job.purged_at is not None:
        raise Gone(
            f"the results of job {job.id} were purged at {job.purged_at.isoformat()}",
            input="job_id",
        )


@router.delete("/{job_id}", response_model=JobOut)
def cancel_job(
    request: Request,
    job: JobDep,
    session: SessionDep,
    state: StateDep,
    background: BackgroundTasks,
    purge: Annotated[
        bool,
        Query(description="Also remove every result and remaining image now (any job)."),
    ] = False,
) -> JobOut:
    """Cancel: images not yet sent to the model never are; finished results are kept.

    With `purge=true`, the job's results and images are removed at once, whether it is
    running or has ended; the job itself stays listed, marked purged.
    """
    # Background tasks run after the response, so after the commit of this request.
    if purge:
        jobs_service.purge_job(session, state.settings, job)
        background.add_task(state.store.delete_job, job.id)
    else:
        background.add_task(state.store.delete_many, jobs_service.cancel_job(session, job))
    return job_out(
        request, job, jobs_repository.count_items_by_status(session, job.id),
        batches=job_batches(session, job),
    )  # fmt: skip


@router.post("/{job_id}/retry", status_code=202, response_model=JobOut)
def retry_job(request: Request, job: JobDep, session: SessionDep, state: StateDep) -> JobOut:
    """Run the job's failed images again, reserving credits only for those.

    Images that failed for a reason that may pass (model timeout, upstream error, a URL
    that could not be fetched) run again; their files are kept `failed_image_retention`
    (24 h) for this. Failures of the image itself (corrupt, unsupported) are left as they are.
    """
    jobs_service.retry_failed_items(session, state.store, job)
    return job_out(
        request, job, jobs_repository.count_items_by_status(session, job.id),
        batches=job_batches(session, job),
    )  # fmt: skip
