"""The native jobs API: submit, poll, page through items, stream results, cancel."""

from __future__ import annotations

import asyncio
import json
import time
import uuid
from collections.abc import Iterator
from typing import Annotated, Any

from fastapi import APIRouter, BackgroundTasks, Query, Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse, StreamingResponse

from api.dependencies import AppState, JobDep, SessionDep, ShortAccountDep, StateDep
from api.intake import JobIntake, read_json, read_multipart
from api.schemas.jobs import (
    CreditsOut,
    ItemCounts,
    ItemError,
    ItemOut,
    ItemPage,
    ItemTimings,
    JobAccepted,
    JobOut,
    JobWithResults,
    UsageOut,
)
from core import jobs as jobs_service
from core.errors import InvalidRequest
from db import jobs as jobs_repository
from db.engine import unit_of_work
from db.models import Account, ItemStatus, Job, JobItem

router = APIRouter(prefix="/v1/jobs", tags=["jobs"])

SCENES = ("general", "medical")
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
        from core.errors import MissingField

        raise MissingField("prompt is required", input="prompt")
    scene = _optional_text(fields, "scene") or "general"
    if scene not in SCENES:
        raise InvalidRequest(
            f"scene must be one of {', '.join(SCENES)}, not {scene!r}", input="scene"
        )
    metadata = fields.get("metadata")
    if isinstance(metadata, str) and metadata:
        try:
            metadata = json.loads(metadata)
        except ValueError as error:
            raise InvalidRequest("metadata must be a JSON object", input="metadata") from error
    if metadata in ("", None):
        metadata = None
    elif not isinstance(metadata, dict):
        raise InvalidRequest("metadata must be a JSON object", input="metadata")
    webhook_url = _optional_text(fields, "webhook_url")
    if webhook_url is not None and not webhook_url.startswith(("http://", "https://")):
        raise InvalidRequest("webhook_url must be an http(s) URL", input="webhook_url")
    return jobs_service.JobOptions(
        prompt=prompt,
        json_mode=_flag(fields.get("json_mode", False), "json_mode"),
        scene=scene,
        model=_optional_text(fields, "model"),
        webhook_url=webhook_url,
        metadata=metadata,
        api=api,
    )


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
) -> Job:
    with unit_of_work(state.session_factory) as session:
        return jobs_service.submit_job(
            session, state.settings, account, options, intake.images, job_id=intake.job_id
        )


async def accept_job(
    request: Request,
    state: AppState,
    account: Account,
    *,
    file_fields: set[str],
    input_method_key: str,
    to_options: Any,
) -> Job:
    """Stream the images in, validate, and create the job; nothing is left on failure.

    Shared by every API style; ``to_options`` turns that style's fields into JobOptions.
    """
    intake = JobIntake(state.store, state.settings, uuid.uuid4())
    content_type = request.headers.get("content-type", "")
    try:
        if content_type.startswith("multipart/form-data"):
            fields: dict[str, Any] = await read_multipart(
                request.stream(), content_type, intake, file_fields
            )
        elif content_type.startswith("application/json") or content_type.endswith("+json"):
            fields, kinds = await read_json(request.stream(), intake)
            check_input_method(kinds, fields.get(input_method_key), input_method_key)
        else:
            raise InvalidRequest(
                "send the job as multipart/form-data or application/json", input="Content-Type"
            )
        options = to_options(fields)
        return await run_in_threadpool(_submit, state, account, options, intake)
    except BaseException:
        intake.discard()
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
                        "scene": {"type": "string", "enum": list(SCENES), "default": "general"},
                        "model": {"type": "string"},
                        "webhook_url": {"type": "string", "format": "uri"},
                        "metadata": {"type": "string", "description": "A JSON object"},
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
                        "scene": {"type": "string", "enum": list(SCENES), "default": "general"},
                        "model": {"type": "string"},
                        "webhook_url": {"type": "string", "format": "uri"},
                        "metadata": {"type": "object"},
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
        status="queued",
        item_count=job.item_count,
        credits_reserved=job.credits_reserved,
    )
    return JSONResponse(body.model_dump(mode="json"), status_code=202, headers={"Location": url})


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
    after = -1
    if cursor:
        try:
            after = int(cursor)
        except ValueError as error:
            raise InvalidRequest("cursor is not one this API gave out", input="cursor") from error
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

    def lines() -> Iterator[bytes]:
        with unit_of_work(state.session_factory) as session:
            for item in jobs_repository.iter_finished_items(session, job.id):
                yield item_out(item).model_dump_json().encode() + b"\n"

    return StreamingResponse(lines(), media_type="application/jsonl")


@router.delete("/{job_id}", response_model=JobOut)
def cancel_job(
    request: Request,
    job: JobDep,
    session: SessionDep,
    state: StateDep,
    background: BackgroundTasks,
) -> JobOut:
    """Cancel: images not yet sent to the model never are; finished results are kept."""
    keys = jobs_service.cancel_job(session, job)
    # Background tasks run after the response, so after the commit of this request.
    for key in keys:
        background.add_task(state.store.delete, key)
    return job_out(request, job, jobs_repository.count_items_by_status(session, job.id))
