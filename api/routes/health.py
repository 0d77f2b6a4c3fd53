"""Health: liveness of the process, readiness of what it depends on, Prometheus metrics."""

from __future__ import annotations

import uuid
from typing import Any

from fastapi import APIRouter
from fastapi.responses import JSONResponse, Response

from api import metrics
from api.dependencies import StateDep
from core import broker
from db import metrics as metrics_repository
from db.engine import unit_of_work

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict[str, str]:
    """The API process is up."""
    return {"status": "ok"}


def _check(name: str, probe: Any) -> tuple[str, str | None]:
    try:
        probe()
    except Exception as error:
        return name, f"{type(error).__name__}: {error}"[:300]
    return name, None


@router.get("/readyz", responses={503: {"description": "A dependency is down"}})
def readyz(state: StateDep) -> JSONResponse:
    """Database, broker and image storage all answer; 503 naming the one that does not."""

    def database() -> None:
        with unit_of_work(state.session_factory) as session:
            metrics_repository.ping(session)

    def storage() -> None:
        probe = f"readyz-{uuid.uuid4()}"
        with state.store.open_for_write(probe) as handle:
            handle.write(b"ok")
        state.store.delete(probe)

    checks = dict(
        [_check("database", database), _check("broker", broker.ping), _check("storage", storage)]
    )
    ready = all(error is None for error in checks.values())
    body = {
        "status": "ready" if ready else "not ready",
        "checks": {name: error or "ok" for name, error in checks.items()},
    }
    return JSONResponse(body, status_code=200 if ready else 503)


@router.get("/metrics", response_class=Response)
def prometheus_metrics(state: StateDep) -> Response:
    """Prometheus text format: jobs and items by status, queue depth, model latency, failures."""
    return Response(metrics.render(state), media_type=metrics.CONTENT_TYPE)
