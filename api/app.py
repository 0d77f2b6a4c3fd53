"""The FastAPI application."""

from __future__ import annotations

from fastapi import FastAPI

from api import problems
from api.dependencies import AppState
from api.rate_limiting import RateLimitHeadersMiddleware
from api.routes import account, docs, dumplingai, health, jobs, previews, u1, web, webhooks
from core import broker
from core.rate_limits import create_rate_limiter
from core.settings import Settings, get_settings
from core.storage import open_store
from db.engine import make_engine, make_session_factory


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    broker.configure(broker.celery_app, settings)
    app = FastAPI(
        title="imageextract",
        version="0.1.0",
        description="Turn images plus a prompt into structured data.",
        # FastAPI's own pages load Swagger UI and ReDoc from a CDN; api/routes/docs.py serves
        # Swagger UI from this server instead, and ReDoc is not offered.
        docs_url=None,
        redoc_url=None,
    )
    app.state.imageextract = AppState(
        settings=settings,
        session_factory=make_session_factory(make_engine(settings.resolved_database_url)),
        store=open_store(settings),
        rate_limiter=create_rate_limiter(settings.resolved_rate_limit_url),
    )
    app.add_middleware(RateLimitHeadersMiddleware)
    problems.install(app)
    app.include_router(health.router)
    app.include_router(jobs.router)
    app.include_router(previews.router)
    app.include_router(account.router)
    app.include_router(u1.router)
    app.include_router(dumplingai.router)
    app.include_router(webhooks.router)
    app.include_router(web.router)
    app.include_router(docs.router)
    return app
