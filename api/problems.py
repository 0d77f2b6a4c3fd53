"""Rendering errors as RFC 9457 problem JSON for the native API."""

from __future__ import annotations

import logging
import uuid
from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, Response
from starlette.exceptions import HTTPException as StarletteHTTPException

from core.errors import ErrorKind, ImageExtractError, RateLimited

PROBLEM_TYPE_BASE = "https://imageextract.dev/problems/"
logger = logging.getLogger(__name__)


def problem_response(
    kind: ErrorKind,
    detail: str,
    *,
    input_name: str | None = None,
    extra: dict[str, Any] | None = None,
) -> JSONResponse:
    body: dict[str, Any] = {
        "type": PROBLEM_TYPE_BASE + kind.code,
        "title": kind.value.title,
        "status": kind.http_status,
        "detail": detail,
        "code": kind.code,
        "retryable": kind.value.retryable,
    }
    if input_name is not None:
        body["input"] = input_name
    body.update(extra or {})
    return JSONResponse(body, status_code=kind.http_status, media_type="application/problem+json")


async def _on_error(_request: Request, error: Exception) -> JSONResponse:
    if not isinstance(error, ImageExtractError):
        raise error
    response = problem_response(
        error.kind, error.message, input_name=error.input, extra=error.details
    )
    if isinstance(error, RateLimited):
        response.headers["Retry-After"] = str(error.retry_after)
    if error.kind == ErrorKind.UNAUTHORIZED:
        response.headers["WWW-Authenticate"] = "Bearer"
    return response


async def _on_validation_error(_request: Request, error: Exception) -> JSONResponse:
    if not isinstance(error, RequestValidationError):
        raise error
    errors = error.errors()
    first = errors[0] if errors else {}
    where = ".".join(str(part) for part in first.get("loc", ()) if part != "body")
    return problem_response(
        ErrorKind.INVALID_REQUEST,
        f"{where}: {first.get('msg', 'invalid value')}" if where else "invalid request",
        input_name=where or None,
        extra={"errors": [{"loc": e.get("loc"), "msg": e.get("msg")} for e in errors]},
    )


def styled_response(
    path: str, kind: ErrorKind, detail: str, *, status: int | None = None
) -> JSONResponse:
    """An error in the style of the API that ``path`` belongs to, for errors raised outside
    a route (unknown paths, methods, failures in middleware). ``status`` overrides the
    kind's HTTP status (a 405 has no kind of its own)."""
    from api import compat  # imports the compatible APIs' schemas

    if path.startswith("/api/v1/"):
        response = compat.dumplingai_error_response(kind, detail)
    elif path.startswith("/v1/ocr/"):
        response = compat.u1_error_response(kind, detail)
    else:
        response = problem_response(kind, detail)
    if status is not None:
        response.status_code = status
    return response


_KIND_BY_STATUS = {
    400: ErrorKind.INVALID_REQUEST,
    401: ErrorKind.UNAUTHORIZED,
    404: ErrorKind.NOT_FOUND,
    409: ErrorKind.CONFLICT,
    410: ErrorKind.GONE,
    413: ErrorKind.JOB_TOO_LARGE,
    429: ErrorKind.RATE_LIMITED,
}


async def _on_http_error(request: Request, error: Exception) -> Response:
    """Starlette's own errors (no such path, method not allowed) in our shapes."""
    if not isinstance(error, StarletteHTTPException):
        raise error
    # 405 and the like have no kind of ours: an invalid request, keeping its own status.
    kind = _KIND_BY_STATUS.get(error.status_code, ErrorKind.INVALID_REQUEST)
    response = styled_response(
        request.url.path,
        kind,
        f"{request.method} {request.url.path}: {error.detail}",
        status=error.status_code,
    )
    response.headers.update(error.headers or {})
    return response


async def _on_unexpected(request: Request, error: Exception) -> JSONResponse:
    """Anything we did not raise on purpose: logged with its traceback, answered in the
    API's shape (Starlette's default is a plain-text 500)."""
    return styled_response(
        request.url.path, ErrorKind.INTERNAL_ERROR, log_unexpected(request, error)
    )


def log_unexpected(request: Request, error: Exception) -> str:
    """Log an error nobody foresaw with its traceback under a fresh incident id; returns
    what the client is told (the id, not the reason)."""
    incident = uuid.uuid4().hex[:12]
    logger.error(
        "unhandled error %s on %s %s", incident, request.method, request.url.path, exc_info=error
    )
    return f"an unexpected error; it was logged as {incident}"


def install(app: FastAPI) -> None:
    app.add_exception_handler(ImageExtractError, _on_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
    app.add_exception_handler(StarletteHTTPException, _on_http_error)
    app.add_exception_handler(Exception, _on_unexpected)
