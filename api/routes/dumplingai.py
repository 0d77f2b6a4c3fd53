"""The DumplingAI API: `POST /api/v1/extract-image` (1 to 3000 images by URL or base64) and
`GET /api/v1/extract-image` (the supported formats). A facade over the job engine: the
request creates a job and waits for it to end.
"""

from __future__ import annotations

import json
from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse
from PIL import Image

from api.compat import (
    DumplingAIRoute,
    dumplingai_error_response,
    parse_fields,
    require,
)
from api.dependencies import ShortAccountDep, StateDep
from api.intake import IntakeRules
from api.json_body import is_json_media_type
from api.schemas.dumplingai import (
    DumplingAIError,
    ExtractImageFields,
    ExtractImageLimits,
    ExtractImageRequest,
    ExtractImageResponse,
    SupportedFormats,
)
from api.schemas.jobs import JobAccepted
from api.schemas.openapi import request_body
from api.submission import accept_job, answer_or_accept
from core import jobs as jobs_service
from core.errors import ErrorKind, InvalidRequest
from db.models import ItemStatus, JobItem

router = APIRouter(prefix="/api/v1", tags=["dumplingai"], route_class=DumplingAIRoute)

# Formats passed on as they are (the model takes WebP/HEIC/HEIF after the worker converts them).
NATIVE_FORMATS = {
    "PNG": "image/png",
    "JPEG": "image/jpeg",
    "WebP": "image/webp",
    "HEIC": "image/heic",
    "HEIF": "image/heif",
}


_BODY_DOC = request_body({"application/json": ExtractImageRequest})


def _error_doc(description: str) -> dict[str, Any]:
    return {"model": DumplingAIError, "description": description}


def _check_fields(fields: dict[str, Any], image_count: int) -> None:
    def given(name: str) -> bool:
        value = fields.get(name)
        return value is not None and not (isinstance(value, str) and not value.strip())

    require(
        [
            ("inputMethod", given("inputMethod")),
            ("images", image_count > 0 or given("image")),
            ("prompt", given("prompt")),
        ]
    )


class _Body:
    """The validated fields of this request, kept for after the job is created."""

    fields: ExtractImageFields | None = None

    def __init__(self, *, async_query: bool) -> None:
        self.async_query = async_query

    def to_options(self, fields: dict[str, Any]) -> jobs_service.JobOptions:
        self.fields = parsed = parse_fields(ExtractImageFields, fields)
        return jobs_service.JobOptions(
            prompt=parsed.prompt,
            json_mode=parsed.jsonMode,
            webhook_url=parsed.webhook_url,
            metadata={"requestSource": parsed.requestSource} if parsed.requestSource else None,
            api="dumplingai",
            priority=parsed.job_priority(async_query=self.async_query),
        )


def aggregate_results(items: list[JobItem], json_mode: bool) -> str:
    """The `results` string: what one image gave, or every image's output in input order.

    jsonMode: one image's JSON value, or a JSON array with one value per image (null for
    an image that failed). Otherwise: one image's text, or each image's text under an
    "Image N (name):" heading, blocks separated by a blank line; a failed image's block
    says why it failed.
    """
    if json_mode:
        values = [item.parsed if item.status == ItemStatus.SUCCEEDED else None for item in items]
        return json.dumps(values[0] if len(values) == 1 else values, ensure_ascii=False)
    if len(items) == 1:
        return items[0].content or ""
    blocks = []
    for item in items:
        heading = f"Image {item.index + 1}" + (f" ({item.source_name})" if item.source_name else "")
        if item.status == ItemStatus.SUCCEEDED:
            text = item.content or ""
        else:
            text = f"[failed: {item.error_message or item.error_code}]"
        blocks.append(f"{heading}:\n{text}")
    return "\n\n".join(blocks)


def _all_failed_message(items: list[JobItem]) -> str:
    first = items[0]
    reason = first.error_message or first.error_code or "unknown error"
    if len(items) == 1:
        return reason
    return f"none of the {len(items)} images could be processed; the first: {reason}"


@router.post(
    "/extract-image",
    response_model=ExtractImageResponse,
    openapi_extra=_BODY_DOC,
    responses={
        202: {"model": JobAccepted, "description": "With `async` or `webhook_url`"},
        400: _error_doc("The request is invalid or over a limit"),
        401: _error_doc("Invalid or missing Authorization header"),
        500: _error_doc("Failed to extract image data: ..."),
    },
)
async def extract_image(
    request: Request,
    state: StateDep,
    account: ShortAccountDep,
    async_: Annotated[
        bool, Query(alias="async", description="Answer 202 with the job id at once.")
    ] = False,
) -> JSONResponse:
    """Extract data from 1 to 3000 images (URLs or base64) as the prompt asks."""
    media_type = request.headers.get("content-type", "").partition(";")[0].strip().lower()
    if not is_json_media_type(media_type):
        raise InvalidRequest("send the request as application/json", input="Content-Type")
    body = _Body(async_query=async_)
    job = await accept_job(
        request,
        state,
        account,
        file_fields=set(),
        input_method_key="inputMethod",
        to_options=body.to_options,
        rules=IntakeRules(other_pillow_formats=True, documents=False),
        check_fields=_check_fields,
        # DumplingAI's own clients send one image as "image".
        image_keys={"images": True, "image": False},
    )
    answer = await answer_or_accept(
        request,
        state,
        job,
        at_once=async_ or (body.fields is not None and body.fields.answers_at_once),
    )
    if isinstance(answer, JSONResponse):
        return answer
    url = str(request.url_for("get_job", job_id=job.id))
    ended_job, items = answer
    if not any(item.status == ItemStatus.SUCCEEDED for item in items):
        response = dumplingai_error_response(ErrorKind.INTERNAL_ERROR, _all_failed_message(items))
        response.headers["Location"] = url
        return response
    result = ExtractImageResponse(
        results=aggregate_results(items, ended_job.json_mode),
        prompt=ended_job.prompt,
        imageCount=ended_job.item_count,
        creditUsage=ended_job.credits_captured,
    )
    return JSONResponse(result.model_dump(), headers={"Location": url})


def _pillow_formats() -> list[str]:
    Image.init()
    native = {"PNG", "JPEG", "WEBP", "HEIF", "HEIC"}
    return sorted(name for name in Image.OPEN if name not in native)


@router.get("/extract-image", response_model=SupportedFormats)
def supported_formats(state: StateDep, _account: ShortAccountDep) -> SupportedFormats:
    """The image formats and limits of `POST /api/v1/extract-image`."""
    settings = state.settings
    return SupportedFormats(
        supportedFormats=list(NATIVE_FORMATS),
        mimeTypes=list(NATIVE_FORMATS.values()),
        convertedToPng=_pillow_formats(),
        limits=ExtractImageLimits(
            maxImages=settings.max_images_per_job,
            maxImageBytes=settings.max_image_bytes,
            maxTotalBytes=settings.max_job_bytes,
            maxOutputTokens=settings.max_output_tokens,
        ),
    )
