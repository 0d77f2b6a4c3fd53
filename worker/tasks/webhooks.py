"""The webhook dispatcher task, run by beat every few seconds and after each job event."""

from __future__ import annotations

from core.broker import TaskName, celery_app
from worker import webhook_delivery
from worker.runtime import get_runtime


@celery_app.task(
    name=TaskName.DELIVER_WEBHOOKS,
    # No retries and no acks_late: a run that fails or is lost changes nothing that the
    # next beat tick does not redo, and taken rows come back when their lease ends.
    acks_late=False,
    ignore_result=True,
    # Above the run budget plus one batch's worst case (the slowest receivers' timeouts),
    # below the webhook_lease default, so a run never outlives the rows it took.
    soft_time_limit=270,
    time_limit=290,
)
def deliver_due() -> None:
    """Send the webhook deliveries that are due (see worker.webhook_delivery)."""
    runtime = get_runtime()
    webhook_delivery.deliver_due(runtime.session_factory, runtime.settings, runtime.fetch_client)
