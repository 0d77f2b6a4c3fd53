"""Rendering errors as RFC 9457 problem JSON for the native API."""

from __future__ import annotations

from typing import Any

from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse

from core.errors import ErrorKind, ImageExtractError, RateLimited

PROBLEM_TYPE_BASE = "https://imageextract.dev/problems/"


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


def install(app: FastAPI) -> None:
    app.add_exception_handler(ImageExtractError, _on_error)
    app.add_exception_handler(RequestValidationError, _on_validation_error)
