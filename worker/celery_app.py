"""The Celery application as workers load it: ``celery -A worker.celery_app worker``."""

from __future__ import annotations

import logging
from typing import Any

from celery.signals import worker_process_init, worker_ready

from core.broker import celery_app
from core.errors import StorageUnavailable
from core.settings import get_settings
from core.storage import check_store
from worker import runtime
from worker.consumer_watchdog import ConsumerWatchdog
from worker.tasks import batches, items, jobs, maintenance, webhooks

app = celery_app
# httpx logs every request at INFO: one line per image, at a cost a busy worker notices.
logging.getLogger("httpx").setLevel(logging.WARNING)
# A worker that cannot consume exits for its supervisor to restart it (see the module).
app.steps["consumer"].add(ConsumerWatchdog)
# Beat touches a heartbeat file on every tick, for its health check (worker/beat.py).
app.conf.beat_scheduler = "worker.beat:HeartbeatScheduler"
__all__ = ["app", "batches", "items", "jobs", "maintenance", "webhooks"]


log = logging.getLogger(__name__)


@worker_ready.connect
def _say_whether_storage_answers(**_kwargs: Any) -> None:
    """A store that is down, a missing bucket or wrong credentials, said at start. The
    worker keeps running: its images wait in the queue until the store answers."""
    try:
        described = check_store(get_settings())
    except StorageUnavailable as error:
        log.error("%s. Images wait in the queue until it answers.", error.message)
    else:
        log.info("image storage %s answers", described)


@worker_process_init.connect
def _fresh_runtime_after_fork(**_kwargs: Any) -> None:
    runtime.forget_runtime()
    # Prefork children run the local engine (the cpu queue): load its models now rather
    # than on the first image. Threads-pool workers (remote models) never get here.
    state = runtime.get_runtime()
    if state.settings.model_provider == "local":
        from extraction.providers.local import LocalProvider

        provider = state.provider("local")
        if isinstance(provider, LocalProvider):
            provider.warm_up()
