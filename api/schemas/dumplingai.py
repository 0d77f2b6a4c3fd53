"""Request and response bodies of the DumplingAI API (`/api/v1/extract-image`).

Field names are DumplingAI's (camelCase), as its clients send and read them.
"""

from __future__ import annotations

from typing import Literal

from pydantic import AliasChoices, BaseModel, Field

from api.schemas.compat import AnswerAtOnceFields

# The values the DumplingAI reference lists; its own clients send others ("mcp", "CLI"),
# so any short string is taken and kept.
DOCUMENTED_REQUEST_SOURCES = (
    "API", "WEB", "MAKE_DOT_COM", "ZAPIER", "N8N", "PLAYGROUND", "DEFAULT_AUTOMATION",
    "AGENT_PREVIEW", "AGENT_LIVE", "AUTOPILOT", "STUDIO",
)  # fmt: skip
MAX_REQUEST_SOURCE_CHARS = 64


class ExtractImageFields(AnswerAtOnceFields):
    """Every field of the request but `images`, which is streamed to storage instead."""

    inputMethod: Literal["url", "base64"]
    prompt: str
    jsonMode: bool = Field(
        default=False,
        description="Results as JSON: one image's JSON, or an array with one entry per image.",
    )
    requestSource: str | None = Field(
        default=None,
        max_length=MAX_REQUEST_SOURCE_CHARS,
        description="Kept in the job's metadata as requestSource. The reference lists "
        + ", ".join(DOCUMENTED_REQUEST_SOURCES)
        + "; any other string is kept too.",
    )
    webhook_url: str | None = Field(
        default=None,
        validation_alias=AliasChoices("webhook_url", "webhookUrl"),
        description="Not in the DumplingAI reference: answer 202 with the job id at once and "
        "announce the job's end to this URL (webhookUrl is accepted too).",
    )


class ExtractImageRequest(ExtractImageFields):
    """The whole request body, for the OpenAPI document."""

    images: list[str] | None = Field(
        default=None,
        min_length=1,
        max_length=3000,
        description="URLs, or base64 strings (a data: prefix is accepted); 20 MB per image, "
        "100 MB in all. Required unless `image` is given.",
    )
    image: str | None = Field(
        default=None,
        description="One image, as DumplingAI's own clients send it: the same as "
        "`images` with one element.",
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
