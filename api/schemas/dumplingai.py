"""Request and response bodies of the DumplingAI API (`/api/v1/extract-image`).

Field names are DumplingAI's (camelCase), as its clients send and read them.
"""

from __future__ import annotations

import enum
from typing import Literal

from pydantic import AliasChoices, BaseModel, Field

from api.schemas.compat import AnswerAtOnceFields


class RequestSource(enum.StrEnum):
    API = "API"
    WEB = "WEB"
    MAKE_DOT_COM = "MAKE_DOT_COM"
    ZAPIER = "ZAPIER"
    N8N = "N8N"
    PLAYGROUND = "PLAYGROUND"
    DEFAULT_AUTOMATION = "DEFAULT_AUTOMATION"
    AGENT_PREVIEW = "AGENT_PREVIEW"
    AGENT_LIVE = "AGENT_LIVE"
    AUTOPILOT = "AUTOPILOT"
    STUDIO = "STUDIO"


class ExtractImageFields(AnswerAtOnceFields):
    """Every field of the request but `images`, which is streamed to storage instead."""

    inputMethod: Literal["url", "base64"]
    prompt: str
    jsonMode: bool = Field(
        default=False,
        description="Results as JSON: one image's JSON, or an array with one entry per image.",
    )
    requestSource: RequestSource | None = Field(
        default=None, description="Kept in the job's metadata as requestSource."
    )
    webhook_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("webhook_url", "webhookUrl"),
        description="Not in the DumplingAI reference: answer 202 with the job id at once and "
        "announce the job's end to this URL (webhookUrl is accepted too).",
    )


class ExtractImageRequest(ExtractImageFields):
    """The whole request body, for the OpenAPI document."""

    images: list[str] = Field(
        min_length=1,
        max_length=3000,
        description="URLs, or base64 strings (a data: prefix is accepted); 20 MB per image, "
        "100 MB in all.",
    )


class ExtractImageResponse(BaseModel):
    results: str = Field(
        description="One image: the model's output. Several: each image's output under an "
        '"Image N (name):" heading, separated by a blank line; with jsonMode a JSON array in '
        "input order, null for an image that failed."
    )
    prompt: str
    imageCount: int = Field(description="Images in the request.")
    creditUsage: int = Field(description="10 per request plus 1 per image that succeeded.")


class DumplingAIError(BaseModel):
    error: str


class ExtractImageLimits(BaseModel):
    maxImages: int
    maxImageBytes: int
    maxTotalBytes: int
    maxOutputTokens: int


class SupportedFormats(BaseModel):
    supportedFormats: list[str] = Field(description="Formats taken as they are.")
    mimeTypes: list[str]
    convertedToPng: list[str] = Field(
        description="Other formats that are decoded and converted to PNG first."
    )
    limits: ExtractImageLimits
