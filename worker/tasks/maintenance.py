"""The beat-driven upkeep task."""

from __future__ import annotations

from core.broker import TaskName, celery_app
from worker import maintenance
from worker.runtime import get_runtime


@celery_app.task(
    name=TaskName.MAINTENANCE_SWEEP, acks_late=True, soft_time_limit=120, time_limit=150
)
def sweep() -> None:
    """Reclaim leases, re-send lost messages, finalize stuck jobs, purge, delete orphans."""
    maintenance.sweep(get_runtime())
