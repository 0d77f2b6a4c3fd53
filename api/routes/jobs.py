"""The native jobs API: submit, poll, page through items, stream results, cancel."""

from __future__ import annotations

import asyncio
import base64
import time
import uuid
from collections.abc import Callable, Iterator
from datetime import datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse

from api.dependencies import AccountDep, AppState, JobDep, SessionDep, ShortAccountDep, StateDep
from api.intake import IntakeRules, JobIntake, read_json, read_multipart
from api.json_body import check_text, is_json_media_type, loads_field
from api.schemas.jobs import (
    CreditsOut,
    ItemCounts,
    ItemError,
    ItemOut,
    ItemPage,
    ItemTimings,
    JobAccepted,
    JobOut,
    JobPage,
    JobSummary,
    JobWithResults,
    UsageOut,
)
from core import idempotency, url_guard
from core import jobs as jobs_service
from core.errors import FieldTooLarge, Gone, InvalidRequest, MissingField, NotFound
from db import jobs as jobs_repository
from db.engine import unit_of_work
from db.models import Account, ItemStatus, Job, JobItem, JobStatus
from extraction.contract import Scene

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

WEBHOOK_URL_NAMES = ("webhook_url", "webhookUrl")
_TRUE = {"true", "1", "yes", "on"}
_FALSE = {"false", "0", "no", "off", ""}


def _flag(value: Any, name: str) -> bool:
    if isinstance(value, bool):
        return value
    text = str(value).strip().lower()
    if text in _TRUE:
        return True
    if text in _FALSE:
        return False
    raise InvalidRequest(f"{name} must be true or false, not {value!r}", input=name)


def _optional_text(fields: dict[str, Any], name: str) -> str | None:
    value = fields.get(name)
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise InvalidRequest(f"{name} must be a string", input=name)
    return value


def job_options(fields: dict[str, Any], *, api: str = "native") -> jobs_service.JobOptions:
    """Validate the non-image fields shared by the multipart and JSON forms."""
    prompt = fields.get("prompt")
    if not isinstance(prompt, str) or not prompt.strip():
        raise MissingField("prompt is required", input="prompt")
    scene_text = _optional_text(fields, "scene") or Scene.GENERAL.value
    try:
        scene = Scene(scene_text)
    except ValueError as error:
        raise InvalidRequest(
            f"scene must be one of {', '.join(Scene)}, not {scene_text!r}", input="scene"
        ) from error
    # A multipart form's metadata was parsed by accept_job (depth-checked).
    metadata = fields.get("metadata")
    if metadata in ("", None):
        metadata = None
    elif not isinstance(metadata, dict):
        raise InvalidRequest("metadata must be a JSON object", input="metadata")
    # accept_job checks webhook_url with the URL guard, for every API style.
    webhook_url = _optional_text(fields, "webhook_url")
    return jobs_service.JobOptions(
        prompt=prompt,
        json_mode=_flag(fields.get("json_mode", False), "json_mode"),
        scene=scene,
        model=_optional_text(fields, "model"),
        webhook_url=webhook_url,
        metadata=metadata,
        api=api,
        results_ttl_seconds=_results_ttl(fields.get("results_ttl")),
    )


MIN_RESULTS_TTL = 60
MAX_RESULTS_TTL = 90 * 24 * 3600


def _results_ttl(value: Any) -> int | None:
    if value is None or value == "":
        return None
    if isinstance(value, float) and value.is_integer():
        value = int(value)
    if isinstance(value, str) and value.strip().isascii() and value.strip().isdigit():
        value = int(value)
    if isinstance(value, bool) or not isinstance(value, int):
        raise InvalidRequest(
            f"results_ttl must be a whole number of seconds, not {value!r}"[:200],
            input="results_ttl",
        )
    seconds = value
    if not MIN_RESULTS_TTL <= seconds <= MAX_RESULTS_TTL:
        raise InvalidRequest(
            f"results_ttl must be between {MIN_RESULTS_TTL} s and {MAX_RESULTS_TTL} s (90 days)",
            input="results_ttl",
        )
    return seconds


def check_input_method(kinds: list[str], declared: Any, name: str) -> None:
    if declared not in ("url", "base64"):
        raise InvalidRequest(f"{name} must be 'url' or 'base64'", input=name)
    for index, kind in enumerate(kinds):
        if kind != declared:
            raise InvalidRequest(
                f"images[{index}] is a {'URL' if kind == 'url' else 'base64 string'} "
                f"but {name} is {declared!r}",
                input=f"images[{index}]",
            )


def _submit(
    state: AppState,
    account: Account,
    options: jobs_service.JobOptions,
    intake: JobIntake,
    claimed: idempotency.Claim | None,
    request_fingerprint: str,
) -> Job:
    with unit_of_work(state.session_factory) as session:
        job = jobs_service.submit_job(
            session, state.settings, account, options, intake.images, job_id=intake.job_id
        )
        if claimed is not None:
            idempotency.bind(session, claimed, request_fingerprint, job.id)
        return job


def _claim(state: AppState, account: Account, key: str) -> idempotency.Claim | idempotency.Replay:
    with unit_of_work(state.session_factory) as session:
        return idempotency.claim(session, state.settings, account.id, key)


def _release(state: AppState, claimed: idempotency.Claim) -> None:
    with unit_of_work(state.session_factory) as session:
        idempotency.release(session, claimed)


def _load_job(state: AppState, job_id: uuid.UUID) -> Job:
    with unit_of_work(state.session_factory) as session:
        job = jobs_repository.get_job(session, job_id)
    if job is None:
        raise NotFound(f"no job {job_id}", input="Idempotency-Key")
    return job


async def accept_job(
    request: Request,
    state: AppState,
    account: Account,
    *,
    file_fields: set[str],
    input_method_key: str,
    to_options: Any,
    rules: IntakeRules | None = None,
    check_fields: Callable[[dict[str, Any], int], None] | None = None,
    image_keys: dict[str, bool] | None = None,
) -> Job:
    """Stream the images in, validate, and create the job; nothing is left on failure.

    Shared by every API style; ``to_options`` turns that style's fields into JobOptions.
    ``rules`` narrows what a style takes (u1: one JPEG/PNG/BMP of at most 10 MB);
    ``check_fields`` sees the fields and the image count before anything else is checked
    (the compatible APIs name every missing field at once). ``image_keys``: the JSON
    members that hold images (see read_json).
    With an ``Idempotency-Key`` header, a repeat of the same request returns the job the
    first one created (and charges nothing more).
    """
    settings = state.settings
    intake = JobIntake(state.store, settings, uuid.uuid4(), rules)
    content_type = request.headers.get("content-type", "")
    key = request.headers.get("idempotency-key")
    claimed = await run_in_threadpool(_claim, state, account, key) if key is not None else None
    try:
        kinds: list[str] | None = None
        media_type = content_type.partition(";")[0].strip().lower()
        if media_type == "multipart/form-data":
            fields: dict[str, Any] = await read_multipart(
                request.stream(), content_type, intake, file_fields
            )
            for name, value in fields.items():
                check_text(name, value)
            if fields.get("metadata"):
                fields["metadata"] = loads_field(
                    "metadata", fields["metadata"], settings.max_json_depth
                )
        elif is_json_media_type(media_type):
            fields, kinds = await read_json(request.stream(), intake, image_keys=image_keys)
        else:
            raise InvalidRequest(
                "send the job as multipart/form-data or application/json", input="Content-Type"
            )
        if check_fields is not None:
            check_fields(fields, len(intake.images))
        if kinds is not None:
            check_input_method(kinds, fields.get(input_method_key), input_method_key)
        if intake.to_identify:
            await run_in_threadpool(intake.identify_other_formats)
        options = to_options(fields)
        if len(options.prompt) > settings.max_prompt_chars:
            raise FieldTooLarge(
                f"prompt is {len(options.prompt)} characters; the limit is "
                f"{settings.max_prompt_chars}",
                input="prompt",
                details={"limit_chars": settings.max_prompt_chars},
            )
        if options.webhook_url is not None:
            # Static checks only (scheme, literal address); names are resolved at delivery.
            # Named as the client spelled it (DumplingAI's clients send webhookUrl).
            spelled = next((name for name in WEBHOOK_URL_NAMES if fields.get(name)), "webhook_url")
            url_guard.require_safe_url(state.settings, options.webhook_url, input=spelled)
        request_fingerprint = idempotency.fingerprint(request.url.path, fields, intake.images)
        if isinstance(claimed, idempotency.Replay):
            idempotency.check_replay(claimed, request_fingerprint)
            intake.discard()
            return await run_in_threadpool(_load_job, state, claimed.job_id)
        return await run_in_threadpool(
            _submit, state, account, options, intake, claimed, request_fingerprint
        )
    except BaseException:
        intake.discard()
        if isinstance(claimed, idempotency.Claim):
            await run_in_threadpool(_release, state, claimed)
        raise


_CREATE_DOC: dict[str, Any] = {
    "requestBody": {
        "required": True,
        "content": {
            "multipart/form-data": {
                "schema": {
                    "type": "object",
                    "required": ["images", "prompt"],
                    "properties": {
                        "images": {
                            "type": "array",
                            "items": {"type": "string", "format": "binary"},
                            "maxItems": 3000,
                        },
                        "prompt": {"type": "string"},
                        "json_mode": {"type": "boolean", "default": False},
                        "scene": {
                            "type": "string",
                            "enum": list(Scene),
                            "default": "general",
                        },
                        "model": {"type": "string"},
                        "webhook_url": {"type": "string", "format": "uri"},
                        "metadata": {"type": "string", "description": "A JSON object"},
                        "results_ttl": {
                            "type": "integer",
                            "description": "Seconds to keep results after the job ends "
                            "(60 s to 90 days; default 7 days)",
                        },
                    },
                }
            },
            "application/json": {
                "schema": {
                    "type": "object",
                    "required": ["input_method", "images", "prompt"],
                    "properties": {
                        "input_method": {"type": "string", "enum": ["url", "base64"]},
                        "images": {"type": "array", "items": {"type": "string"}, "maxItems": 3000},
                        "prompt": {"type": "string"},
                        "json_mode": {"type": "boolean", "default": False},
                        "scene": {
                            "type": "string",
                            "enum": list(Scene),
                            "default": "general",
                        },
                        "model": {"type": "string"},
                        "webhook_url": {"type": "string", "format": "uri"},
                        "metadata": {"type": "object"},
                        "results_ttl": {
                            "type": "integer",
                            "description": "Seconds to keep results after the job ends "
                            "(60 s to 90 days; default 7 days)",
                        },
                    },
                }
            },
        },
    }
}


def _load_finished(
    state: AppState, job_id: uuid.UUID
) -> tuple[Job, dict[str, int], list[JobItem]] | None:
    with unit_of_work(state.session_factory) as session:
        job = jobs_repository.get_job(session, job_id)
        if job is None or job.finished_at is None:
            return None
        counts = jobs_repository.count_items_by_status(session, job_id)
        return job, counts, list(jobs_repository.iter_finished_items(session, job_id))


async def wait_for_end(
    state: AppState, job_id: uuid.UUID, seconds: float
) -> tuple[Job, dict[str, int], list[JobItem]] | None:
    """The ended job with its items, or None if it is still running after ``seconds``."""
    deadline = time.monotonic() + seconds
    pause = 0.05
    while True:
        found = await run_in_threadpool(_load_finished, state, job_id)
        if found is not None or time.monotonic() >= deadline:
            return found
        await asyncio.sleep(min(pause, max(deadline - time.monotonic(), 0)))
        pause = min(pause * 1.5, 1.0)


@router.post(
    "",
    status_code=202,
    response_model=JobAccepted,
    openapi_extra=_CREATE_DOC,
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


def _encode_cursor(job: Job) -> str:
    raw = f"{job.created_at.isoformat()}|{job.id}"
    return base64.urlsafe_b64encode(raw.encode()).decode().rstrip("=")


def _decode_cursor(cursor: str) -> tuple[datetime, uuid.UUID]:
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4)).decode()
        created, _, job_id = raw.partition("|")
        when = datetime.fromisoformat(created)
        if when.tzinfo is None or not 2000 <= when.year <= 9000:
            raise ValueError(created)
        return when, uuid.UUID(job_id)
    except ValueError as error:
        raise InvalidRequest("cursor is not one this API gave out", input="cursor") from error


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
    """The account's jobs, newest first, filtered by status and creation time."""
    for name, value in (("created_after", created_after), ("created_before", created_before)):
        if value is not None and value.tzinfo is None:
            raise InvalidRequest(f"{name} needs a time zone, e.g. 2026-11-21T00:00:00Z", input=name)
    jobs = jobs_repository.list_account_jobs(
        session,
        account.id,
        status=status,
        created_after=created_after,
        created_before=created_before,
        before=_decode_cursor(cursor) if cursor else None,
        limit=limit + 1,
    )
    more = len(jobs) > limit
    jobs = jobs[:limit]
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
                metadata=job.user_metadata,
                created_at=job.created_at,
                finished_at=job.finished_at,
            )
            for job in jobs
        ],
        next_cursor=_encode_cursor(jobs[-1]) if more and jobs else None,
    )


def job_out(request: Request, job: Job, counts: dict[str, int]) -> JobOut:
    return JobOut(
        id=job.id,
        url=str(request.url_for("get_job", job_id=job.id)),
        results_url=str(request.url_for("get_job_results", job_id=job.id)),
        status=job.status,
        prompt=job.prompt,
        json_mode=job.json_mode,
        scene=job.scene,
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
        results_expire_at=job.finished_at + timedelta(seconds=job.results_ttl_seconds)
        if job.finished_at and not job.purged_at
        else None,
        purged_at=job.purged_at,
    )


@router.get("/{job_id}", response_model=JobOut)
def get_job(request: Request, job: JobDep, session: SessionDep) -> JobOut:
    """Status, counts by item status, progress, timestamps, token and credit usage."""
    return job_out(request, job, jobs_repository.count_items_by_status(session, job.id))


def item_out(item: JobItem) -> ItemOut:
    return ItemOut(
        index=item.index,
        source_name=item.source_name,
        source_kind=item.source_kind,
        status=item.status,
        content=item.content,
        parsed=item.parsed,
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
    after = -1
    if cursor:
        # Item indexes: a few ASCII digits ("²" is a digit to str.isdigit, not to int()).
        if not (cursor.isascii() and cursor.isdigit() and len(cursor) <= 9):
            raise InvalidRequest("cursor is not one this API gave out", input="cursor")
        after = int(cursor)
    items = jobs_repository.list_items(
        session, job.id, status=status, after_index=after, limit=limit + 1
    )
    more = len(items) > limit
    items = items[:limit]
    return ItemPage(
        items=[item_out(item) for item in items],
        next_cursor=str(items[-1].index) if more and items else None,
    )


@router.get(
    "/{job_id}/results",
    response_class=StreamingResponse,
    responses={200: {"content": {"application/jsonl": {}}, "description": "One item per line"}},
)
def get_job_results(job: JobDep, state: StateDep) -> StreamingResponse:
    """Every finished item in input order as JSON Lines; works while the job runs."""
    _check_not_purged(job)

    def lines() -> Iterator[bytes]:
        with unit_of_work(state.session_factory) as session:
            for item in jobs_repository.iter_finished_items(session, job.id):
                yield item_out(item).model_dump_json().encode() + b"\n"

    return StreamingResponse(lines(), media_type="application/jsonl")


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
        for key in jobs_service.cancel_job(session, job):
            background.add_task(state.store.delete, key)
    return job_out(request, job, jobs_repository.count_items_by_status(session, job.id))


@router.post("/{job_id}/retry", status_code=202, response_model=JobOut)
def retry_job(request: Request, job: JobDep, session: SessionDep, state: StateDep) -> JobOut:
    """Run the job's failed images again, reserving credits only for those.

    Images that failed for a reason that may pass (model timeout, upstream error, a URL
    that could not be fetched) run again; their files are kept `failed_image_retention`
    (24 h) for this. Failures of the image itself (corrupt, unsupported) are left as they are.
    """
    jobs_service.retry_failed_items(session, state.store, job)
    return job_out(request, job, jobs_repository.count_items_by_status(session, job.id))
