"""One error taxonomy, rendered three ways by the API (native problem JSON, u1, DumplingAI).

Every error names what it is about (``input``): a field, an image by its index and name, a
URL. Items that fail store ``kind.code`` and the message, so the same error renders the same
way whether it happened in the request or in a worker.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class KindSpec:
    code: str
    http_status: int
    u1_code: int | None
    retryable: bool
    title: str


class ErrorKind(enum.Enum):
    MISSING_FIELD = KindSpec("missing_field", 400, 100001, False, "Missing required field")
    INVALID_REQUEST = KindSpec("invalid_request", 400, 100001, False, "Invalid request")
    UNSUPPORTED_IMAGE_FORMAT = KindSpec(
        "unsupported_image_format", 400, 261001, False, "Unsupported image format"
    )
    IMAGE_TOO_LARGE = KindSpec("image_too_large", 413, 261002, False, "Image too large")
    JOB_TOO_LARGE = KindSpec("job_too_large", 413, 261002, False, "Job too large")
    FIELD_TOO_LARGE = KindSpec("field_too_large", 413, 100001, False, "Field too large")
    HEADERS_TOO_LARGE = KindSpec(
        "headers_too_large", 431, 100001, False, "Request header fields too large"
    )
    TOO_MANY_IMAGES = KindSpec("too_many_images", 400, 100001, False, "Too many images")
    TOO_MANY_PAGES = KindSpec("too_many_pages", 400, 100001, False, "Too many pages")
    CORRUPT_IMAGE = KindSpec("corrupt_image", 400, 261003, False, "Corrupt image")
    # A PDF we cannot open without its password (or with a security handler PDFium lacks).
    ENCRYPTED_PDF = KindSpec("encrypted_pdf", 400, 261003, False, "Encrypted PDF")
    IMAGE_FETCH_FAILED = KindSpec("image_fetch_failed", 400, 261003, False, "Image fetch failed")
    MODEL_TIMEOUT = KindSpec("model_timeout", 504, 261101, True, "Model timeout")
    UPSTREAM_ERROR = KindSpec("upstream_error", 502, 261999, True, "Upstream model error")
    INVALID_MODEL_OUTPUT = KindSpec(
        "invalid_model_output", 502, 261999, True, "Model returned invalid output"
    )
    # A batch-lane image the provider did not run within its completion window.
    BATCH_EXPIRED = KindSpec("batch_expired", 504, 261101, True, "Batch expired")
    INTERNAL_ERROR = KindSpec("internal_error", 500, 261999, True, "Internal error")
    STORAGE_UNAVAILABLE = KindSpec(
        "storage_unavailable", 503, 261999, True, "Image storage unavailable"
    )
    UNAUTHORIZED = KindSpec("unauthorized", 401, None, False, "Bad or missing API key")
    INSUFFICIENT_CREDITS = KindSpec("insufficient_credits", 402, None, False, "Not enough credits")
    NOT_FOUND = KindSpec("not_found", 404, None, False, "Not found")
    CONFLICT = KindSpec("conflict", 409, None, False, "Conflict")
    GONE = KindSpec("gone", 410, None, False, "Gone")
    IDEMPOTENCY_KEY_REUSED = KindSpec(
        "idempotency_key_reused", 422, None, False, "Idempotency key reused with another request"
    )
    RATE_LIMITED = KindSpec("rate_limited", 429, None, True, "Rate limited")

    @property
    def code(self) -> str:
        return self.value.code

    @property
    def http_status(self) -> int:
        return self.value.http_status

    @classmethod
    def from_code(cls, code: str) -> ErrorKind:
        for kind in cls:
            if kind.code == code:
                return kind
        return cls.INTERNAL_ERROR


class ImageExtractError(Exception):
    """Base of every error we raise on purpose; ``kind`` decides how it renders."""

    kind: ErrorKind = ErrorKind.INTERNAL_ERROR

    def __init__(
        self, message: str, *, input: str | None = None, details: dict[str, Any] | None = None
    ) -> None:
        super().__init__(message)
        self.message = message
        self.input = input
        # Extra members for the problem body, e.g. the balance and price of a 402.
        self.details = details or {}


class MissingField(ImageExtractError):
    kind = ErrorKind.MISSING_FIELD


class InvalidRequest(ImageExtractError):
    kind = ErrorKind.INVALID_REQUEST


class UnsupportedImageFormat(ImageExtractError):
    kind = ErrorKind.UNSUPPORTED_IMAGE_FORMAT


class ImageTooLarge(ImageExtractError):
    kind = ErrorKind.IMAGE_TOO_LARGE


class JobTooLarge(ImageExtractError):
    kind = ErrorKind.JOB_TOO_LARGE


class FieldTooLarge(ImageExtractError):
    kind = ErrorKind.FIELD_TOO_LARGE


class TooManyImages(ImageExtractError):
    kind = ErrorKind.TOO_MANY_IMAGES


class TooManyPages(ImageExtractError):
    """A document over the pages allowed per document, or a job whose pages and images add
    up to more than a job takes."""

    kind = ErrorKind.TOO_MANY_PAGES


class CorruptImage(ImageExtractError):
    kind = ErrorKind.CORRUPT_IMAGE


class EncryptedDocument(ImageExtractError):
    kind = ErrorKind.ENCRYPTED_PDF


class ImageFetchFailed(ImageExtractError):
    kind = ErrorKind.IMAGE_FETCH_FAILED


class ModelTimeout(ImageExtractError):
    kind = ErrorKind.MODEL_TIMEOUT


class UpstreamError(ImageExtractError):
    kind = ErrorKind.UPSTREAM_ERROR


class InvalidModelOutput(ImageExtractError):
    kind = ErrorKind.INVALID_MODEL_OUTPUT


class BatchExpired(ImageExtractError):
    kind = ErrorKind.BATCH_EXPIRED


class InternalError(ImageExtractError):
    kind = ErrorKind.INTERNAL_ERROR


class StorageUnavailable(ImageExtractError):
    """The image store cannot be reached or refuses us (down, no bucket, bad credentials).

    A request gets 503 and nothing is kept; a worker puts the image back in the queue.
    """

    kind = ErrorKind.STORAGE_UNAVAILABLE


class Unauthorized(ImageExtractError):
    kind = ErrorKind.UNAUTHORIZED


class InsufficientCredits(ImageExtractError):
    kind = ErrorKind.INSUFFICIENT_CREDITS


class NotFound(ImageExtractError):
    kind = ErrorKind.NOT_FOUND


class Conflict(ImageExtractError):
    kind = ErrorKind.CONFLICT


class Gone(ImageExtractError):
    kind = ErrorKind.GONE


class IdempotencyKeyReused(ImageExtractError):
    kind = ErrorKind.IDEMPOTENCY_KEY_REUSED


class RateLimited(ImageExtractError):
    kind = ErrorKind.RATE_LIMITED

    def __init__(self, message: str, *, retry_after: int, input: str | None = None) -> None:
        super().__init__(message, input=input)
        self.retry_after = retry_after
