"""Rate limits per API key, and the headers that tell clients where they stand.

The auth dependency counts the request and leaves the result in the request state; the
middleware copies it into the headers of whatever response goes out, errors included.
"""

from __future__ import annotations

from fastapi import Request
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from core.errors import RateLimited
from core.rate_limits import RateLimiter, RateLimitResult

_STATE_KEY = "rate_limit"


def enforce(request: Request, limiter: RateLimiter, bucket: str, limit: int) -> None:
    result = limiter.hit(bucket, limit)
    setattr(request.state, _STATE_KEY, result)
    if not result.allowed:
        raise RateLimited(
            f"over the limit of {limit} requests per minute; try again in {result.reset_seconds} s",
            retry_after=result.reset_seconds,
        )


def headers_for(result: RateLimitResult) -> list[tuple[bytes, bytes]]:
    policy = f'"default";q={result.limit};w=60'
    current = f'"default";r={result.remaining};t={result.reset_seconds}'
    return [
        (b"x-ratelimit-limit", str(result.limit).encode()),
        (b"x-ratelimit-remaining", str(result.remaining).encode()),
        (b"x-ratelimit-reset", str(result.reset_seconds).encode()),
        (b"ratelimit-policy", policy.encode()),
        (b"ratelimit", current.encode()),
    ]


class RateLimitHeadersMiddleware:
    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                result = scope.get("state", {}).get(_STATE_KEY)
                if isinstance(result, RateLimitResult):
                    message["headers"] = [*message.get("headers", []), *headers_for(result)]
            await send(message)

        await self.app(scope, receive, send_with_headers)
