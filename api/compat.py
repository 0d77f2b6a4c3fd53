"""What the two compatible APIs (u1, DumplingAI) share: their error styles (u1's base_resp
and DumplingAI's ``{"error": ...}`` instead of the native problem JSON), their route
classes, and how their fields are validated.

Each style is an ``APIRoute`` subclass whose handler catches our errors and request
validation errors, also those raised by dependencies (authentication, rate limits), so a
router built with it never answers in another API's style.
"""

from __future__ import annotations

from collections.abc import Callable, Coroutine
from typing import Any, TypeVar

from fastapi import Request, Response
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse
from fastapi.routing import APIRoute
from pydantic import BaseModel, ValidationError

from api.problems import log_unexpected
from api.schemas.dumplingai import DumplingAIError
from api.schemas.u1 import U1BaseResp, U1ExtractResponse, U1Usage
from core.errors import ErrorKind, ImageExtractError, InvalidRequest, MissingField, RateLimited

# The HTTP status that goes with each documented u1 code.
U1_HTTP_STATUS: dict[int, int] = {
    0: 200,
    100001: 400,
    261001: 400,
    261002: 400,
    261003: 400,
    261101: 504,
    261999: 500,
}
# Cases the u1 reference has no code for. The numbers are the ones MiniMax's APIs, which
# share the base_resp convention, use for the same cases.
U1_EXTRA_CODES: dict[ErrorKind, int] = {
    ErrorKind.UNAUTHORIZED: 1004,
    ErrorKind.INSUFFICIENT_CREDITS: 1008,
    ErrorKind.RATE_LIMITED: 1002,
}
DUMPLINGAI_FAILURE_PREFIX = "Failed to extract image data: "

Fields = TypeVar("Fields", bound=BaseModel)


def u1_status(kind: ErrorKind) -> tuple[int, int]:
    """The HTTP status and the base_resp.status_code for an error kind."""
    code = kind.value.u1_code
    if code is not None:
        return U1_HTTP_STATUS[code], code
    fallback = 100001 if kind.http_status < 500 else 261999
    return kind.http_status, U1_EXTRA_CODES.get(kind, fallback)


def u1_error_response(kind: ErrorKind, message: str) -> JSONResponse:
    http_status, code = u1_status(kind)
    body = U1ExtractResponse(
        content="",
        usage=U1Usage(prompt_tokens=0, completion_tokens=0, total_tokens=0),
        # u1 sends exactly one image, in a field called "image"; our messages count images.
        base_resp=U1BaseResp(status_code=code, status_msg=message.replace("images[0]", "image")),
    )
    return JSONResponse(body.model_dump(), status_code=http_status)


def dumplingai_status(kind: ErrorKind) -> int:
    """401 for keys, 500 for failures while extracting, 400 for anything wrong in the request.

    402 and 429 are not in the DumplingAI reference; they keep their meaning, since folding
    them into 400 would tell a client not to retry what it may retry.
    """
    if kind == ErrorKind.UNAUTHORIZED:
        return 401
    if kind in (ErrorKind.INSUFFICIENT_CREDITS, ErrorKind.RATE_LIMITED):
        return kind.http_status
    return 500 if kind.http_status >= 500 else 400


def dumplingai_error_response(kind: ErrorKind, message: str) -> JSONResponse:
    status = dumplingai_status(kind)
    text = DUMPLINGAI_FAILURE_PREFIX + message if status == 500 else message
    return JSONResponse(DumplingAIError(error=text).model_dump(), status_code=status)


def describe_validation_error(errors: list[Any]) -> str:
    parts = []
    for error in errors:
        where = ".".join(str(part) for part in error.get("loc", ()) if part != "body")
        message = str(error.get("msg", "invalid value"))
        parts.append(f"{where}: {message}" if where else message)
    return "; ".join(parts) or "invalid request"


def parse_fields(model: type[Fields], fields: dict[str, Any]) -> Fields:
    """Validate a request's fields with ``model``, raising our errors.

    A blank text field counts as missing, as an absent one does.
    """
    present = {
        name: value
        for name, value in fields.items()
        if not (isinstance(value, str) and not value.strip())
    }
    try:
        return model.model_validate(present)
    except ValidationError as error:
        errors = error.errors()
        missing = [str(e["loc"][0]) for e in errors if e["type"] == "missing" and e["loc"]]
        if missing:
            raise MissingField(missing_message(missing), input=missing[0]) from error
        first_input = ".".join(str(part) for part in errors[0]["loc"]) if errors else None
        raise InvalidRequest(
            describe_validation_error([dict(e) for e in errors]), input=first_input
        ) from error


def missing_message(names: list[str]) -> str:
    return f"missing required field{'s' if len(names) > 1 else ''}: {', '.join(names)}"


def require(checks: list[tuple[str, bool]]) -> None:
    """MissingField naming every field whose check is False, all at once."""
    missing = [name for name, present in checks if not present]
    if missing:
        raise MissingField(missing_message(missing), input=missing[0])


class _StyledRoute(APIRoute):
    @staticmethod
    def render_error(kind: ErrorKind, message: str) -> JSONResponse:
        raise NotImplementedError

    def get_route_handler(self) -> Callable[[Request], Coroutine[Any, Any, Response]]:
        handler = super().get_route_handler()
        render = type(self).render_error

        async def styled(request: Request) -> Response:
            try:
                return await handler(request)
            except ImageExtractError as error:
                response = render(error.kind, error.message)
                if isinstance(error, RateLimited):
                    response.headers["Retry-After"] = str(error.retry_after)
                if error.kind == ErrorKind.UNAUTHORIZED:
                    response.headers["WWW-Authenticate"] = "Bearer"
                return response
            except RequestValidationError as error:
                return render(
                    ErrorKind.INVALID_REQUEST, describe_validation_error(list(error.errors()))
                )
            except Exception as error:
                return render(ErrorKind.INTERNAL_ERROR, log_unexpected(request, error))

        return styled


class U1Route(_StyledRoute):
    @staticmethod
    def render_error(kind: ErrorKind, message: str) -> JSONResponse:
        return u1_error_response(kind, message)


class DumplingAIRoute(_StyledRoute):
    @staticmethod
    def render_error(kind: ErrorKind, message: str) -> JSONResponse:
        return dumplingai_error_response(kind, message)
