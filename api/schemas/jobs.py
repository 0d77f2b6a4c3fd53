"""Request and response bodies of the native jobs API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any, Literal

from pydantic import BaseModel, Field

from core.settings import Settings
from extraction.contract import Scene

# The documented limits are the defaults; a deployment's own are in GET /v1/account.
_MAX_IMAGES = Settings.model_fields["max_images_per_job"].default
MIN_RESULTS_TTL = 60
MAX_RESULTS_TTL = 90 * 24 * 3600


class JobFields(BaseModel):
    """The fields of a submission besides its images, in both body forms."""

    prompt: str = Field(description="What to extract; often with a JSON template.")
    json_mode: bool = Field(default=False, description="Each result's content is JSON.")
    grounding: bool | None = Field(
        default=None,
        description="Evidence per value: where on the image it is printed, and `grounded: "
        "false` where nothing supports it. Default: on for the local engine, off for remote "
        "models (an OCR pass per image, about 1 s of CPU).",
    )
    normalize: bool = Field(
        default=False,
        description="Also give dates (ISO 8601) and amounts (decimal, currency if printed) in "
        "typed form, in each item's `normalized`; the values stay as printed.",
    )
    scene: Scene = Scene.GENERAL
    model: str | None = Field(default=None, description="Passed to the provider.")
    webhook_url: str | None = Field(
        default=None, json_schema_extra={"format": "uri"}, description="Told when the job ends."
    )
    priority: Literal["interactive", "normal", "batch"] | None = Field(
        default=None,
        description="Which images run first. Default: interactive with `wait`, else normal; "
        "batch for nightly work that may wait for everyone else.",
    )
    mode: Literal["live", "batch"] = Field(
        default="live",
        description="live: each image is a model call now. batch: the images go to the "
        "provider's Batch API (openai provider): results within 24 hours, at the batch price "
        "per image (IMAGEEXTRACT_BATCH_PRICE_PER_IMAGE, default half the live price).",
    )
    document_mode: Literal["document", "pages"] = Field(
        default="document",
        description="For PDFs: document, one result filled from all of a document's pages "
        "together; pages, one result per page (`parsed` is then a list, one entry a page). "
        "A PDF costs IMAGEEXTRACT_CREDITS_PER_PAGE a page, and each page counts towards the "
        "job's limit of images.",
    )
    results_ttl: int | None = Field(
        default=None,
        ge=MIN_RESULTS_TTL,
        le=MAX_RESULTS_TTL,
        description="Seconds to keep results after the job ends (60 s to 90 days; default 7 days)",
    )


class _UploadedImages(BaseModel):
    images: list[bytes] = Field(
        max_length=_MAX_IMAGES, description="Repeat the part: one file each (20 MB, 100 MB in all)."
    )


class JobForm(JobFields, _UploadedImages):
    """POST /v1/jobs as multipart/form-data (for the OpenAPI document)."""

    metadata: str | None = Field(default=None, description="A JSON object, echoed back.")


class _SentImages(BaseModel):
    input_method: Literal["url", "base64"]
    images: list[str] = Field(
        max_length=_MAX_IMAGES,
        description="URLs, or base64 (a data: prefix is accepted); 20 MB each, 100 MB in all.",
    )


class JobJson(JobFields, _SentImages):
    """POST /v1/jobs as application/json (for the OpenAPI document)."""

    metadata: dict[str, Any] | None = Field(default=None, description="Echoed back.")


class UsageOut(BaseModel):
    prompt_tokens: int
    completion_tokens: int
    total_tokens: int


class CreditsOut(BaseModel):
    reserved: int = Field(description="Held at submission: per-job price plus per-image price.")
    captured: int = Field(description="Charged once the job ended.")
    refunded: int = Field(description="Given back for failed and cancelled images.")


class ItemCounts(BaseModel):
    queued: int = 0
    running: int = 0
    succeeded: int = 0
    failed: int = 0
    cancelled: int = 0


class RequestCounts(BaseModel):
    total: int
    completed: int
    failed: int


class ProviderBatchOut(BaseModel):
    id: str | None = Field(description="The provider's batch id (none while it is built).")
    status: str = Field(
        description="building (its request lines are being written and uploaded), then the "
        "provider's: validating, in_progress, finalizing, completed, failed, expired, "
        "cancelling, cancelled."
    )
    request_counts: RequestCounts
    recorded: bool = Field(description="Every image's outcome from this batch is recorded.")
    created_at: datetime
    expires_at: datetime | None = Field(description="The end of the provider's window.")


JobStatusName = Literal[
    "queued", "running", "succeeded", "partially_succeeded", "failed", "cancelled"
]


class JobOut(BaseModel):
    id: uuid.UUID
    url: str
    results_url: str
    status: JobStatusName
    prompt: str
    json_mode: bool
    grounding: bool
    normalize: bool
    scene: str
    model: str | None
    webhook_url: str | None
    metadata: dict[str, Any] | None
    priority: Literal["interactive", "normal", "batch"] = Field(
        description="Which images run first: interactive (a caller waits), normal, batch."
    )
    images_ahead: int | None = Field(
        default=None,
        description="While the job has images waiting: images that run before its next one "
        "(those of jobs with a higher priority, and of this account's older jobs of the same "
        "priority; other accounts of the same priority take turns with it).",
    )
    mode: Literal["live", "batch"]
    document_mode: Literal["document", "pages"]
    provider_batches: list[ProviderBatchOut] = Field(
        default_factory=list, description="With mode batch: the job's batches at the provider."
    )
    estimated_completion_at: datetime | None = Field(
        default=None,
        description="With mode batch, while it runs: when its results should be in, from "
        "the provider's progress so far, else the end of its completion window.",
    )
    item_count: int
    counts: ItemCounts
    progress: float = Field(description="Share of images that have ended, 0 to 1.")
    usage: UsageOut
    credits: CreditsOut
    created_at: datetime
    started_at: datetime | None
    cancelled_at: datetime | None
    finished_at: datetime | None
    results_expire_at: datetime | None = Field(
        description="When the results will be purged (set once the job ends)."
    )
    purged_at: datetime | None


class JobSummary(BaseModel):
    id: uuid.UUID
    url: str
    status: JobStatusName
    api: str = Field(description="The API that created the job: native, u1 or dumplingai.")
    item_count: int
    items_succeeded: int
    items_failed: int
    items_cancelled: int
    progress: float
    credits: CreditsOut
    created_at: datetime
    finished_at: datetime | None


class JobPage(BaseModel):
    jobs: list[JobSummary]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")


class JobAccepted(BaseModel):
    id: uuid.UUID
    url: str
    status: JobStatusName
    item_count: int
    credits_reserved: int


class ItemError(BaseModel):
    code: str
    message: str | None


class ItemTimings(BaseModel):
    started_at: datetime | None
    finished_at: datetime | None
    model_ms: int | None


ItemStatusName = Literal["queued", "running", "succeeded", "failed", "cancelled"]


class Evidence(BaseModel):
    bbox: list[float] | None = Field(
        description="[x0, y0, x1, y1] as fractions of the image's width and height, from the "
        "top-left corner; null when nothing matched."
    )
    text: str | None = Field(description="The text as printed (as OCR read it).")
    ocr_confidence: float | None
    match: float = Field(description="How well the printed text matches the value, 0 to 1.")
    grounded: bool = Field(
        description="False when nothing on the image supports the value: check it."
    )
    confidence: float | None = Field(
        default=None,
        description="The probability (0 to 1) that the value is right, calibrated on labelled "
        "documents: of values given 0.9, about nine in ten are right. Given by the local "
        "engine; null for a remote model's values. Route low ones to review.",
    )
    page: int | None = Field(
        default=None,
        description="In a PDF: the page (from 1) that bbox is on; bbox is then a fraction of "
        "that page. null for images.",
    )


class PageOut(BaseModel):
    page: int = Field(description="From 1.")
    source: Literal["text_layer", "ocr", "image"] = Field(
        description="How it was read: its text layer (exact, no OCR), OCR of the page's "
        "picture, or the picture by a vision model."
    )


class ItemOut(BaseModel):
    index: int
    source_name: str | None
    source_kind: str
    status: ItemStatusName
    page_count: int | None = Field(default=None, description="A PDF's pages; null for an image.")
    pages: list[PageOut] | None = Field(
        default=None, description="A PDF's pages once read, each with how it was read."
    )
    content: str | None
    parsed: Any = Field(default=None, description="The content as JSON, in JSON mode.")
    evidence: dict[str, Evidence] | None = Field(
        default=None,
        description="With grounding: for each value of `parsed` by its path (`total`, "
        "`items[0].name`), where it is printed.",
    )
    normalized: dict[str, Any] | None = Field(
        default=None,
        description="With normalize: each date of `parsed` as ISO 8601 and each amount as "
        '{"amount": "1017.40", "currency": "RM"}, by path.',
    )
    usage: UsageOut
    error: ItemError | None
    attempts: int
    timings: ItemTimings


class ItemPage(BaseModel):
    items: list[ItemOut]
    next_cursor: str | None = Field(description="Pass as `cursor` for the next page.")


class JobWithResults(JobOut):
    results: list[ItemOut] = Field(description="Every image's result, in input order.")
