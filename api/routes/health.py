"""Health: liveness of the process, readiness of what it depends on, Prometheus metrics."""

from __future__ import annotations

import hmac
import logging
from typing import Annotated, Any

from fastapi import APIRouter, Header
from fastapi.responses import JSONResponse, Response

from api import metrics
from api.dependencies import StateDep
from core import broker
from core.errors import NotFound, Unauthorized
from db import metrics as metrics_repository
from db.engine import unit_of_work

router = APIRouter(tags=["health"])
logger = logging.getLogger(__name__)


@router.get("/healthz")
async def healthz() -> dict[str, str]:
    """The API process is up. Async: answered on the event loop itself, so it measures
    that loop, without waiting for a thread of the pool that busy requests may hold."""
    return {"status": "ok"}


def _check(name: str, probe: Any) -> tuple[str, str | None]:
    try:
        probe()
    except Exception as error:
        # The answer is public (probes carry no key): the reason, with its host names and
        # addresses, goes to the log only.
        logger.warning("readiness check %s failed: %s: %s", name, type(error).__name__, error)
        return name, "down"
    return name, None


@router.get("/readyz", responses={503: {"description": "A dependency is down"}})
def readyz(state: StateDep) -> JSONResponse:
    """Database, broker and image storage all answer; 503 naming the one that does not."""

    def database() -> None:
        with unit_of_work(state.session_factory) as session:
            metrics_repository.ping(session)

    checks = dict(
        [
            _check("database", database),
            _check("broker", broker.ping),
            _check("storage", state.store.check),
        ]
    )
    ready = all(error is None for error in checks.values())
    body = {
        "status": "ready" if ready else "not ready",
        "checks": {name: error or "ok" for name, error in checks.items()},
    }
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get(
    "/metrics",
    response_class=Response,
    responses={401: {"description": "Not the metrics token"}, 404: {"description": "Off"}},
)
def prometheus_metrics(
    state: StateDep, authorization: Annotated[str | None, Header()] = None
) -> Response:
    """Prometheus text format: jobs and items by status, queue depth, model latency, failures.

    The counts span every account, so this wants the operator's `metrics_token`
    (`Authorization: Bearer <token>`), not an account's key; without a token set it is off.
    """
    token = state.settings.metrics_token
    if token is None or not token.get_secret_value():
        raise NotFound(
            "metrics are off: set IMAGEEXTRACT_METRICS_TOKEN and scrape with it as a bearer token",
            input="Authorization",
        )
    scheme, _, given = (authorization or "").partition(" ")
    expected = token.get_secret_value().encode()
    if scheme.lower() != "bearer" or not hmac.compare_digest(given.strip().encode(), expected):
        raise Unauthorized(
            "/metrics wants the metrics token (IMAGEEXTRACT_METRICS_TOKEN) as a bearer token",
            input="Authorization",
        )
    return Response(metrics.render(state), media_type=metrics.CONTENT_TYPE)
