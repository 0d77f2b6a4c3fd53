"""The u1 API: `POST /v1/ocr/image/extract`, one image and a prompt, answered in base_resp
style. A facade over the job engine: the request creates a one-image job and waits for it.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query, Request
from fastapi.responses import JSONResponse

from api.compat import U1Route, parse_fields, require, u1_error_response
from api.dependencies import ShortAccountDep, StateDep
from api.intake import IntakeRules
from api.schemas.openapi import request_body
from api.schemas.u1 import (
    U1BaseResp,
    U1ExtractFields,
    U1ExtractForm,
    U1ExtractResponse,
    U1JobAccepted,
    U1Usage,
)
from api.submission import accept_job, answer_or_accept
from core import jobs as jobs_service
from core.errors import ErrorKind, InvalidRequest
from core.image_formats import ImageFormat
from db.models import ItemStatus

router = APIRouter(prefix="/v1/ocr/image", tags=["u1"], route_class=U1Route)

U1_FORMATS = frozenset({ImageFormat.JPEG, ImageFormat.PNG, ImageFormat.BMP})

_FORM_DOC = request_body({"multipart/form-data": U1ExtractForm})
_ERROR_DOC = {"model": U1ExtractResponse, "description": "base_resp says what went wrong"}


def _check_fields(fields: dict[str, Any], image_count: int) -> None:
    def given(name: str) -> bool:
        value = fields.get(name)
        return isinstance(value, str) and bool(value.strip())

    require([("model", given("model")), ("image", image_count > 0), ("prompt", given("prompt"))])


class _Form:
    """The validated fields of this request, kept for after the job is created."""

    fields: U1ExtractFields | None = None

    def __init__(self, *, async_query: bool) -> None:
        self.async_query = async_query

    def to_options(self, fields: dict[str, Any]) -> jobs_service.JobOptions:
        self.fields = parsed = parse_fields(U1ExtractFields, fields)
        return jobs_service.JobOptions(
            prompt=parsed.prompt,
            scene=parsed.scene,
            # "u1-ocr-extract" names this API, not a model the provider knows.
            model=None,
            webhook_url=parsed.webhook_url,
            api="u1",
            priority=parsed.job_priority(async_query=self.async_query),
        )


@router.post(
    "/extract",
    response_model=U1ExtractResponse,
    openapi_extra=_FORM_DOC,
    responses={
        202: {"model": U1JobAccepted, "description": "With `async` or `webhook_url`"},
        400: _ERROR_DOC,
        401: _ERROR_DOC,
        500: _ERROR_DOC,
        504: _ERROR_DOC,
    },
)
async def extract(
    request: Request,
    state: StateDep,
    account: ShortAccountDep,
    async_: Annotated[
        bool, Query(alias="async", description="Answer 202 with the job id at once.")
    ] = False,
) -> JSONResponse:
    """Extract information from one image (JPG, JPEG, PNG or BMP, at most 10 MB)."""
    if not request.headers.get("content-type", "").startswith("multipart/form-data"):
        raise InvalidRequest(
            "send multipart/form-data with the fields model, image and prompt",
            input="Content-Type",
        )
    form = _Form(async_query=async_)
    job = await accept_job(
        request,
        state,
        account,
        file_fields={"image"},
        input_method_key="input_method",
        to_options=form.to_options,
        rules=IntakeRules(
            max_image_bytes=state.settings.u1_max_image_bytes,
            max_images=1,
            formats=U1_FORMATS,
            documents=False,
        ),
        check_fields=_check_fields,
    )
    answer = await answer_or_accept(
        request,
        state,
        job,
        at_once=async_ or (form.fields is not None and form.fields.answers_at_once),
        accepted=lambda body: U1JobAccepted(
            **body.model_dump(), base_resp=U1BaseResp(status_code=0, status_msg="accepted")
        ),
        timeout_input="image",
    )
    if isinstance(answer, JSONResponse):
        return answer
    url = str(request.url_for("get_job", job_id=job.id))
    _job, items = answer
    item = items[0]
    if item.status != ItemStatus.SUCCEEDED:
        kind = ErrorKind.from_code(item.error_code or ErrorKind.INTERNAL_ERROR.code)
        response = u1_error_response(kind, item.error_message or kind.value.title)
        response.headers["Location"] = url
        return response
    body = U1ExtractResponse(
        content=item.content or "",
        usage=U1Usage(
            prompt_tokens=item.prompt_tokens,
            completion_tokens=item.completion_tokens,
            total_tokens=item.prompt_tokens + item.completion_tokens,
        ),
        base_resp=U1BaseResp(status_code=0, status_msg="success"),
    )
    return JSONResponse(body.model_dump(), headers={"Location": url})
