"""One exception per problem code of the API, each with the problem's fields.

try:
    client.jobs.create(images=["scan.jpg"], prompt="...")
except imageextract.InsufficientCredits as error:
    print(error.detail, error.body["balance"], error.body["price"])
except imageextract.APIError as error:          # every other problem
    print(error.status, error.code, error.input)
"""

from __future__ import annotations

from typing import Any, ClassVar


class APIError(Exception):
    """A problem the server answered with (RFC 9457 problem JSON), or could not be asked."""

    code: ClassVar[str] = "error"

    def __init__(self, status: int | None, body: dict[str, Any]) -> None:
        self.status = status
        self.body = body
        self.title: str | None = body.get("title")
        self.detail: str = str(body.get("detail") or body.get("title") or "")
        # The field or image the problem is about ("images[3]", "prompt", "mode").
        self.input: str | None = body.get("input")
        self.retryable: bool = bool(body.get("retryable", False))
        super().__init__(f"{status} {body.get('code', self.code)}: {self.detail}")


class APIConnectionError(APIError):
    """The server could not be reached, or the connection broke (after the retries)."""

    code = "connection_error"

    def __init__(self, message: str) -> None:
        super().__init__(None, {"code": self.code, "detail": message, "retryable": True})


class MissingField(APIError):
    code = "missing_field"


class InvalidRequest(APIError):
    code = "invalid_request"


class UnsupportedImageFormat(APIError):
    code = "unsupported_image_format"


class ImageTooLarge(APIError):
    code = "image_too_large"


class JobTooLarge(APIError):
    code = "job_too_large"


class FieldTooLarge(APIError):
    code = "field_too_large"


class HeadersTooLarge(APIError):
    code = "headers_too_large"


class TooManyImages(APIError):
    code = "too_many_images"


class TooManyPages(APIError):
    code = "too_many_pages"


class CorruptImage(APIError):
    code = "corrupt_image"


class EncryptedPdf(APIError):
    code = "encrypted_pdf"


class ImageFetchFailed(APIError):
    code = "image_fetch_failed"


class ModelTimeout(APIError):
    code = "model_timeout"


class UpstreamError(APIError):
    code = "upstream_error"


class InvalidModelOutput(APIError):
    code = "invalid_model_output"


class BatchExpired(APIError):
    code = "batch_expired"


class InternalError(APIError):
    code = "internal_error"


class StorageUnavailable(APIError):
    code = "storage_unavailable"


class Unauthorized(APIError):
    code = "unauthorized"


class InsufficientCredits(APIError):
    code = "insufficient_credits"


class NotFound(APIError):
    code = "not_found"


class Conflict(APIError):
    code = "conflict"


class Gone(APIError):
    code = "gone"


class IdempotencyKeyReused(APIError):
    code = "idempotency_key_reused"


class RateLimited(APIError):
    code = "rate_limited"


BY_CODE: dict[str, type[APIError]] = {
    kind.code: kind for kind in APIError.__subclasses__() if kind is not APIError
}


def error_for(status: int, body: Any) -> APIError:
    """The exception for a problem answer; an answer that is not problem JSON becomes the
    base class with what was said."""
    if not isinstance(body, dict):
        body = {"detail": str(body)[:500]}
    kind = BY_CODE.get(str(body.get("code")), APIError)
    return kind(status, body)
