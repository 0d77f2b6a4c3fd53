"""Request and response bodies of the u1 API (`POST /v1/ocr/image/extract`)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from api.schemas.compat import AnswerAtOnceFields
from api.schemas.jobs import JobAccepted
from extraction.contract import Scene

U1_MODEL = "u1-ocr-extract"


class U1ExtractFields(AnswerAtOnceFields):
    """The text fields of the multipart form (the image is a file part of its own)."""

    model: Literal["u1-ocr-extract"] = Field(
        description="Model ID; the only value is u1-ocr-extract."
    )
    scene: Scene = Scene.GENERAL
    prompt: str = Field(description="What to extract, often with a JSON template.")


class U1ExtractForm(U1ExtractFields):
    """The whole multipart form, for the OpenAPI document."""

    image: bytes = Field(description="JPG, JPEG, PNG or BMP (judged by its bytes), at most 10 MB.")


class U1Usage(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class U1BaseResp(BaseModel):
    status_code: int = Field(
        description="0 success; 100001 missing or invalid field; 261001 format; "
        "261002 over 10 MB; 261003 corrupt image; 261101 model timeout; 261999 internal."
    )
    status_msg: str = Field(description='"success" when status_code is 0, else the reason.')


class U1ExtractResponse(BaseModel):
    content: str = Field(description="Text content returned by the model; empty on errors.")
    usage: U1Usage
    base_resp: U1BaseResp


class U1JobAccepted(JobAccepted):
    """The answer with `async` or `webhook_url`: the job to follow under /v1/jobs."""

    base_resp: U1BaseResp
