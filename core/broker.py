"""The Celery application, its configuration, and publishing after commit.

Both the API and the workers import this module; tasks themselves are registered by
``worker.celery_app``. The API publishes by task name, never by importing a task.
"""

from __future__ import annotations

import enum
import logging
from pathlib import Path
from typing import Any

from celery import Celery
from sqlalchemy import event
from sqlalchemy.orm import Session

from core import filesystem_broker
from core.settings import Settings, get_settings


class TaskName(enum.StrEnum):
    DISPATCH_JOB = "jobs.dispatch_job"
    FINALIZE_JOB = "jobs.finalize_job"
    PROCESS_ITEMS = "extraction.process_items"
    GROUND_ITEMS = "extraction.ground_items"
    BUILD_BATCHES = "batches.build"
    POLL_BATCHES = "batches.poll"
    DELIVER_WEBHOOKS = "webhooks.deliver_due"
    MAINTENANCE_SWEEP = "maintenance.sweep"


class Queue(enum.StrEnum):
    # Dispatch, finalisation and upkeep: short tasks.
    DEFAULT = "default"
    # Calls to remote models: mostly waiting on the network, many in flight per process.
    MODEL = "model"
    # The local engine: CPU-bound, one task per core.
    CPU = "cpu"


def configure(app: Celery, settings: Settings) -> None:
    broker_options: dict[str, Any] = {
        # Above the longest task, so a task still running is not handed to another worker.
        "visibility_timeout": 4 * 3600,
    }
    if settings.is_embedded_broker:
        folder = settings.data_dir / "broker"
        for sub in ("queue", "processed", "control"):
            Path(folder / sub).mkdir(parents=True, exist_ok=True)
        broker_options.update(
            data_folder_in=str(folder / "queue"),
            data_folder_out=str(folder / "queue"),
            processed_folder=str(folder / "processed"),
            # Broadcast state (pidbox); kombu's default is ./control in the working directory.
            control_folder=str(folder / "control"),
            store_processed=False,
            # The filesystem transport polls; once a second would add a second per hop.
            polling_interval=0.05,
        )
    interval = settings.webhook_dispatch_interval.total_seconds()
    app.conf.update(
        broker_url=settings.resolved_broker_url,
        # The embedded broker: kombu's filesystem transport, writing messages atomically.
        broker_transport=filesystem_broker.TRANSPORT if settings.is_embedded_broker else None,
        broker_transport_options=broker_options,
        broker_connection_retry_on_startup=True,
        task_default_queue=Queue.DEFAULT,
        task_ignore_result=True,
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        task_acks_on_failure_or_timeout=True,
        worker_prefetch_multiplier=1,
        worker_hijack_root_logger=False,
        task_serializer="json",
        accept_content=["json"],
        task_routes={
            TaskName.DISPATCH_JOB: {"queue": Queue.DEFAULT},
            TaskName.FINALIZE_JOB: {"queue": Queue.DEFAULT},
            TaskName.DELIVER_WEBHOOKS: {"queue": Queue.DEFAULT},
            TaskName.MAINTENANCE_SWEEP: {"queue": Queue.DEFAULT},
            TaskName.GROUND_ITEMS: {"queue": Queue.CPU},
            # The batch lane talks to the provider, as the model queue's workers do.
            TaskName.BUILD_BATCHES: {"queue": Queue.MODEL},
            TaskName.POLL_BATCHES: {"queue": Queue.MODEL},
        },
        beat_schedule={
            "maintenance": {
                "task": str(TaskName.MAINTENANCE_SWEEP),
                "schedule": settings.maintenance_interval.total_seconds(),
                "options": {"expires": settings.maintenance_interval.total_seconds()},
            },
            "poll-provider-batches": {
                "task": str(TaskName.POLL_BATCHES),
                "schedule": settings.batch_poll_interval.total_seconds(),
                "options": {"expires": max(2 * settings.batch_poll_interval.total_seconds(), 5.0)},
            },
            "deliver-webhooks": {
                "task": str(TaskName.DELIVER_WEBHOOKS),
                "schedule": interval,
                # Ticks that waited in the queue (workers down or busy) are dropped rather
                # than run back to back; one run delivers everything that is due.
                "options": {"expires": max(2 * interval, 5.0)},
            },
        },
    )


def create_celery_app(settings: Settings | None = None) -> Celery:
    app = Celery("imageextract")
    configure(app, settings or get_settings())
    return app


celery_app = create_celery_app()
log = logging.getLogger(__name__)

_PENDING = "imageextract.pending_tasks"


def enqueue_after_commit(
    session: Session, name: TaskName, *args: str | int | list[str], queue: Queue | None = None
) -> None:
    """Buffer a task message; it is sent only once the session's transaction commits."""
    session.info.setdefault(_PENDING, []).append((name, args, queue))


def send(
    name: TaskName,
    *args: str | int | list[str],
    queue: Queue | None = None,
    countdown: float | None = None,
) -> None:
    celery_app.send_task(
        str(name), args=list(args), queue=str(queue) if queue else None, countdown=countdown
    )


@event.listens_for(Session, "after_commit")
def _send_pending(session: Session) -> None:
    for name, args, queue in session.info.pop(_PENDING, []):
        try:
            send(name, *args, queue=queue)
        except Exception:
            # What was committed stands; the maintenance sweep re-sends what a broker
            # outage swallowed (undispatched jobs, finished jobs not yet finalized).
            log.warning("could not send %s%s after commit", name, args, exc_info=True)


@event.listens_for(Session, "after_rollback")
def _drop_pending(session: Session) -> None:
    session.info.pop(_PENDING, None)


def ping() -> None:
    """Raise if the broker cannot be reached."""
    with celery_app.connection_for_write() as connection:
        connection.ensure_connection(max_retries=1, timeout=2)


def queue_depths() -> dict[str, int]:
    """Messages waiting per queue (Redis lists, or files of the filesystem broker)."""
    depths: dict[str, int] = {}
    with celery_app.connection_for_read() as connection:
        for queue in Queue:
            try:
                with connection.channel() as channel:
                    depths[queue] = int(channel.queue_declare(queue, passive=True).message_count)
            except Exception:  # a queue nobody declared yet
                depths[queue] = 0
    return depths
