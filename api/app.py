"""The FastAPI application."""

from __future__ import annotations

from fastapi import FastAPI

from api import problems
from api.dependencies import AppState
from api.routes import health, jobs
from core import broker
from core.settings import Settings, get_settings
from core.storage import ImageStore
from db.engine import make_engine, make_session_factory


def create_app(settings: Settings | None = None) -> FastAPI:
    settings = settings or get_settings()
    settings.data_dir.mkdir(parents=True, exist_ok=True)
    broker.configure(broker.celery_app, settings)
    app = FastAPI(
        title="imageextract",
        version="0.1.0",
        description="Turn images plus a prompt into structured data.",
    )
    app.state.imageextract = AppState(
        settings=settings,
        session_factory=make_session_factory(make_engine(settings.resolved_database_url)),
        store=ImageStore(settings.storage_dir),
    )
    problems.install(app)
    app.include_router(health.router)
    app.include_router(jobs.router)
    return app
