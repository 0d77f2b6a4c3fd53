"""Submitting a job, the same for every API style: fields checked, images streamed in, the
job created (or an idempotent replay answered), and waiting for a job to end.

The routes of the native, u1 and DumplingAI APIs differ only in how they name fields and
shape answers; what a submission is lives here.
"""

from __future__ import annotations

import asyncio
import dataclasses
import json
import time
import uuid
from collections.abc import Callable
from typing import Any

from fastapi import Request
from fastapi.concurrency import run_in_threadpool
from fastapi.responses import JSONResponse
from pydantic import BaseModel

from api.dependencies import AppState
from api.intake import IntakeRules, JobIntake, read_json, read_multipart
from api.json_body import check_text, is_json_media_type, loads_field, size_text
from api.schemas.jobs import MAX_RESULTS_TTL, MIN_RESULTS_TTL, JobAccepted
from core import idempotency, url_guard
from core import jobs as jobs_service
from core.errors import FieldTooLarge, InvalidRequest, MissingField, ModelTimeout, NotFound
from db import jobs as jobs_repository
from db.engine import unit_of_work
from db.models import Account, Job, JobItem, JobMode, JobPriority
from extraction.contract import DocumentMode, Scene

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
        priority=parse_priority(fields.get("priority")),
        grounding=(
            _flag(fields["grounding"], "grounding")
            if fields.get("grounding") not in (None, "")
            else None
        ),
        normalize=_flag(fields.get("normalize", False), "normalize"),
        mode=_mode(fields.get("mode")),
        document_mode=_document_mode(fields.get("document_mode")),
    )


def check_metadata_size(metadata: dict[str, Any], limit: int) -> None:
    """FieldTooLarge naming metadata when its compact JSON is over ``limit`` bytes: it is
    stored with the job and echoed whole by GET /v1/jobs/{id}."""
    size = len(json.dumps(metadata, ensure_ascii=False, separators=(",", ":")).encode())
    if size > limit:
        raise FieldTooLarge(
            f"metadata is {size} bytes of JSON; the limit is {size_text(limit)}",
            input="metadata",
            details={"limit_bytes": limit},
        )


def _document_mode(value: Any) -> DocumentMode:
    if value is None or value == "":
        return DocumentMode.DOCUMENT
    try:
        return DocumentMode(str(value).strip().lower())
    except ValueError as error:
        raise InvalidRequest(
            f"document_mode must be one of {', '.join(DocumentMode)}, not {str(value)[:50]!r}",
            input="document_mode",
        ) from error


def _mode(value: Any) -> JobMode:
    if value is None or value == "":
        return JobMode.LIVE
    try:
        return JobMode(str(value).strip().lower())
    except ValueError as error:
        raise InvalidRequest(
            f"mode must be one of {', '.join(JobMode)}, not {str(value)[:50]!r}", input="mode"
        ) from error


def parse_priority(value: Any, name: str = "priority") -> JobPriority | None:
    """The ``priority`` field of any submit API; None when not given."""
    if value is None or value == "":
        return None
    try:
        return JobPriority(str(value).strip().lower())
    except ValueError as error:
        raise InvalidRequest(
            f"{name} must be one of {', '.join(JobPriority)}, not {str(value)[:50]!r}", input=name
        ) from error


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
    default_priority: JobPriority = JobPriority.NORMAL,
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
        await intake.stored()
        if intake.to_identify:
            await run_in_threadpool(intake.identify_other_formats)
        if intake.documents:
            await run_in_threadpool(intake.count_document_pages)
        options = to_options(fields)
        if options.priority is None:
            options = dataclasses.replace(options, priority=default_priority)
        if len(options.prompt) > settings.max_prompt_chars:
            raise FieldTooLarge(
                f"prompt is {len(options.prompt)} characters; the limit is "
                f"{settings.max_prompt_chars}",
                input="prompt",
                details={"limit_chars": settings.max_prompt_chars},
            )
        if options.metadata is not None:
            check_metadata_size(options.metadata, settings.max_metadata_bytes)
        if options.webhook_url is not None:
            # Static checks only (scheme, literal address); names are resolved at delivery.
            # Named as the client spelled it (DumplingAI's clients send webhookUrl).
            spelled = next((name for name in WEBHOOK_URL_NAMES if fields.get(name)), "webhook_url")
            url_guard.require_safe_url(state.settings, options.webhook_url, input=spelled)
        request_fingerprint = idempotency.fingerprint(request.url.path, fields, intake.images)
        if isinstance(claimed, idempotency.Replay):
            idempotency.check_replay(claimed, request_fingerprint)
            await run_in_threadpool(intake.discard)
            return await run_in_threadpool(_load_job, state, claimed.job_id)
        return await run_in_threadpool(
            _submit, state, account, options, intake, claimed, request_fingerprint
        )
    except BaseException:
        await run_in_threadpool(intake.discard)
        if isinstance(claimed, idempotency.Claim):
            await run_in_threadpool(_release, state, claimed)
        raise


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


async def answer_or_accept(
    request: Request,
    state: AppState,
    job: Job,
    *,
    at_once: bool,
    accepted: Callable[[JobAccepted], BaseModel] = lambda body: body,
    timeout_input: str | None = None,
) -> JSONResponse | tuple[Job, list[JobItem]]:
    """What the compatible APIs do once their job is created: with ``at_once`` (``async``
    or a webhook), 202 with the job (as ``accepted`` shapes it) at once; else wait up to
    ``sync_wait`` and return the ended job and its items, or raise ModelTimeout."""
    url = str(request.url_for("get_job", job_id=job.id))
    if at_once:
        body = accepted(
            JobAccepted(
                id=job.id,
                url=url,
                status=job.status,
                item_count=job.item_count,
                credits_reserved=job.credits_reserved,
            )
        )
        return JSONResponse(
            body.model_dump(mode="json"), status_code=202, headers={"Location": url}
        )
    seconds = state.settings.sync_wait.total_seconds()
    ended = await wait_for_end(state, job.id, seconds)
    if ended is None:
        raise ModelTimeout(
            f"no result within {seconds:g} s; the job keeps running as {url}", input=timeout_input
        )
    ended_job, _counts, items = ended
    return ended_job, items
