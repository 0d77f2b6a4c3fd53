"""Webhooks: signing (Standard Webhooks), thin payloads, the outbox, and the record of
each attempt. Sending is the worker's (``worker/webhook_delivery.py``).

When a job ends, ``enqueue_job_event`` writes one outbox row (a delivery) for the job's own
``webhook_url`` and one for each enabled endpoint of the account whose filter has the
event, in the transaction that ends the job. Beat runs the worker's ``deliver_due`` every
few seconds (and the event queues one run at once): it takes due rows in a short
transaction (``take_due_deliveries``), sends them with no session open, and records each
attempt and what comes next (``record_attempt``):

- 2xx: delivered.
- 410 Gone: the delivery stops; an account endpoint is disabled with its pending rows.
- anything else (other status, timeout, refused by the URL guard): the next attempt after
  the next delay of ``webhook_retry_schedule``; after the last one the delivery has failed.

A delivery's id is its ``webhook-id``, the same on every attempt and replay (at least once
delivery: receivers drop duplicates by it). Every request is signed with each of the
account's valid secrets, so during a rotation's overlap both the old and new one verify.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import logging
import secrets
import uuid
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from core import broker, url_guard
from core.broker import TaskName
from core.errors import Conflict
from core.settings import Settings
from db import accounts as accounts_repository
from db import webhooks as webhooks_repository
from db.models import (
    Job,
    JobStatus,
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookEndpoint,
    WebhookEventType,
    WebhookSecret,
)

log = logging.getLogger(__name__)

SECRET_PREFIX = "whsec_"  # noqa: S105 — the prefix of every secret, not a secret
DELIVERY_ID_PREFIX = "msg_"
JOB_EVENTS: dict[JobStatus, WebhookEventType] = {
    JobStatus.SUCCEEDED: WebhookEventType.JOB_SUCCEEDED,
    JobStatus.PARTIALLY_SUCCEEDED: WebhookEventType.JOB_PARTIALLY_SUCCEEDED,
    JobStatus.FAILED: WebhookEventType.JOB_FAILED,
    JobStatus.CANCELLED: WebhookEventType.JOB_CANCELLED,
}


def utcnow() -> datetime:
    return datetime.now(UTC)


def _iso(moment: datetime) -> str:
    return moment.astimezone(UTC).isoformat().replace("+00:00", "Z")


# Signing


def new_secret() -> str:
    # 32 random bytes: the Standard Webhooks scheme wants between 24 and 64.
    return SECRET_PREFIX + base64.b64encode(secrets.token_bytes(32)).decode()


def new_delivery_id() -> str:
    return DELIVERY_ID_PREFIX + uuid.uuid4().hex


def sign(secrets_: Sequence[str], message_id: str, timestamp: int, body: bytes) -> str:
    """The ``webhook-signature`` header: ``v1,<base64 HMAC-SHA256>`` per secret, space-separated.

    The signed content is ``{webhook-id}.{webhook-timestamp}.{body}``.
    """
    signed = f"{message_id}.{timestamp}.".encode() + body
    signatures = []
    for secret in secrets_:
        key = base64.b64decode(secret.removeprefix(SECRET_PREFIX))
        digest = hmac.new(key, signed, hashlib.sha256).digest()
        signatures.append("v1," + base64.b64encode(digest).decode())
    return " ".join(signatures)


def encode_payload(payload: dict[str, Any]) -> bytes:
    return json.dumps(payload, separators=(",", ":"), ensure_ascii=False).encode()


def ensure_secret(session: Session, account_id: uuid.UUID) -> WebhookSecret:
    """The account's current signing secret, made on first use."""
    current = webhooks_repository.current_secret(session, account_id)
    if current is not None:
        return current
    generation = webhooks_repository.last_generation(session, account_id) + 1
    try:
        with session.begin_nested():
            return webhooks_repository.add_secret(session, account_id, generation, new_secret())
    except IntegrityError:
        # Another request made it at the same moment; theirs is as good as ours.
        found = webhooks_repository.current_secret(session, account_id)
        if found is None:
            raise
        return found


@dataclass(frozen=True, slots=True)
class AccountSecrets:
    current: WebhookSecret
    # Secrets replaced by a rotation that still sign until their expires_at.
    previous: list[WebhookSecret]


def account_secrets(session: Session, account_id: uuid.UUID) -> AccountSecrets:
    current = ensure_secret(session, account_id)
    valid = webhooks_repository.list_secrets(session, account_id, utcnow())
    return AccountSecrets(current=current, previous=[s for s in valid if s.id != current.id])


def rotate_secret(session: Session, settings: Settings, account_id: uuid.UUID) -> AccountSecrets:
    """A new current secret; the one it replaces keeps signing for the overlap setting.

    Only two secrets are ever valid at once: one still overlapping from an earlier
    rotation ends now.
    """
    now = utcnow()
    # Rotations of one account queue behind this lock instead of racing.
    webhooks_repository.current_secret(session, account_id, for_update=True)
    generation = webhooks_repository.last_generation(session, account_id) + 1
    webhooks_repository.expire_secrets(
        session, account_id, now=now, current_until=now + settings.webhook_secret_overlap
    )
    try:
        webhooks_repository.add_secret(session, account_id, generation, new_secret())
    except IntegrityError as error:
        raise Conflict(
            "the webhook secret was rotated by another request at the same time; try again",
            input="webhook_secret",
        ) from error
    return account_secrets(session, account_id)


# Endpoints


def create_endpoint(
    session: Session,
    settings: Settings,
    account_id: uuid.UUID,
    *,
    url: str,
    events: Sequence[WebhookEventType] | None,
    description: str | None,
) -> WebhookEndpoint:
    """A per-account endpoint; no events given means every job event.

    Each job end is one POST per endpoint, so an account has at most
    ``webhook_endpoints_per_account`` of them, and a URL it already has is refused
    (Conflict naming the existing endpoint) rather than receiving every event twice.
    """
    url_guard.require_safe_url(settings, url, input="url")
    # Concurrent creations for one account take turns, so neither check can be raced past.
    accounts_repository.lock_account(session, account_id)
    existing = webhooks_repository.endpoint_with_url(session, account_id, url)
    if existing is not None:
        raise Conflict(
            f"this account already has webhook endpoint {existing.id} for this URL; "
            "change its events by deleting it and adding it again",
            input="url",
        )
    cap = settings.webhook_endpoints_per_account
    if webhooks_repository.count_endpoints(session, account_id) >= cap:
        raise Conflict(
            f"an account may have at most {cap} webhook endpoints; delete one first",
            input="url",
        )
    chosen = list(dict.fromkeys(events)) if events else list(WebhookEventType)
    return webhooks_repository.add_endpoint(
        session, account_id, url=url, events=[str(e) for e in chosen], description=description
    )


def delete_endpoint(session: Session, endpoint: WebhookEndpoint) -> None:
    """Delete the endpoint; its deliveries still pending stop (history stays, listed by job)."""
    webhooks_repository.stop_pending_for_endpoint(session, endpoint.id)
    webhooks_repository.delete_endpoint(session, endpoint.id)


def enable_endpoint(session: Session, endpoint: WebhookEndpoint) -> None:
    """Turn a disabled endpoint (410 Gone) back on for events from now on."""
    webhooks_repository.set_endpoint_enabled(session, endpoint.id, enabled=True)
    session.refresh(endpoint)


# Events


def results_url(settings: Settings, job_id: uuid.UUID) -> str:
    return f"{str(settings.public_base_url).rstrip('/')}/v1/jobs/{job_id}/results"


def job_event_payload(
    settings: Settings, job: Job, event_type: WebhookEventType, now: datetime
) -> dict[str, Any]:
    """The thin payload: ids, status, counts, where the results are; never image content."""
    base = str(settings.public_base_url).rstrip("/")
    return {
        "type": str(event_type),
        "timestamp": _iso(job.finished_at or now),
        "data": {
            "job_id": str(job.id),
            "status": job.status,
            "item_count": job.item_count,
            "counts": {
                "succeeded": job.items_succeeded,
                "failed": job.items_failed,
                "cancelled": job.items_cancelled,
            },
            "job_url": f"{base}/v1/jobs/{job.id}",
            "results_url": results_url(settings, job.id),
            "metadata": job.user_metadata,
        },
    }


def enqueue_job_event(session: Session, settings: Settings, job: Job) -> int:
    """Write the outbox rows for a job that has just ended; returns how many.

    Called once, in the transaction that gives the job its final status; a run of the
    dispatcher is queued for after the commit, so the first attempt does not wait for beat.
    """
    event_type = JOB_EVENTS.get(JobStatus(job.status))
    if event_type is None:
        return 0
    targets: list[tuple[uuid.UUID | None, str]] = []
    if job.webhook_url:
        targets.append((None, job.webhook_url))
    for endpoint in webhooks_repository.enabled_endpoints(session, job.account_id):
        if event_type in endpoint.events:
            targets.append((endpoint.id, endpoint.url))
    if not targets:
        return 0
    ensure_secret(session, job.account_id)
    now = utcnow()
    payload = job_event_payload(settings, job, event_type, now)
    webhooks_repository.add_deliveries(
        session,
        [
            {
                "id": new_delivery_id(),
                "account_id": job.account_id,
                "job_id": job.id,
                "endpoint_id": endpoint_id,
                "url": url,
                "event_type": str(event_type),
                "payload": payload,
                "status": WebhookDeliveryStatus.PENDING,
                "attempt_count": 0,
                "max_attempts": len(settings.webhook_retry_schedule),
                "next_attempt_at": now + settings.webhook_retry_schedule[0],
                "created_at": now,
            }
            for endpoint_id, url in targets
        ],
    )
    broker.enqueue_after_commit(session, TaskName.DELIVER_WEBHOOKS)
    return len(targets)


def replay_delivery(session: Session, delivery: WebhookDelivery) -> None:
    """Send the delivery once more, now, with the same webhook-id and payload.

    It may have one attempt more than it has had: a delivery that had ended is not retried
    if the replay fails too; one still pending keeps its schedule.
    """
    webhooks_repository.schedule_replay(session, delivery.id, utcnow())
    broker.enqueue_after_commit(session, TaskName.DELIVER_WEBHOOKS)


# Delivery


@dataclass(frozen=True, slots=True)
class AttemptResult:
    attempted_at: datetime
    latency_ms: int
    status_code: int | None = None
    response_excerpt: str | None = None
    error: str | None = None

    @property
    def delivered(self) -> bool:
        return self.status_code is not None and 200 <= self.status_code < 300


def record_attempt(
    session: Session,
    settings: Settings,
    delivery: webhooks_repository.TakenDelivery,
    result: AttemptResult,
) -> None:
    """Store the attempt and decide what comes next (see the module docstring)."""
    slot = webhooks_repository.count_attempt(session, delivery.id)
    if slot is None:  # the job, and its deliveries with it, were deleted meanwhile
        return
    webhooks_repository.add_attempt(
        session,
        {
            "delivery_id": delivery.id,
            "number": slot.number,
            "attempted_at": result.attempted_at,
            "status_code": result.status_code,
            "latency_ms": result.latency_ms,
            "response_excerpt": result.response_excerpt,
            "error": result.error,
        },
    )
    now = utcnow()
    if result.delivered:
        values: dict[str, Any] = {
            "status": WebhookDeliveryStatus.DELIVERED,
            "delivered_at": now,
            "next_attempt_at": None,
        }
    elif result.status_code == 410:
        values = {"status": WebhookDeliveryStatus.DISABLED, "next_attempt_at": None}
        if delivery.endpoint_id is not None:
            webhooks_repository.set_endpoint_enabled(
                session,
                delivery.endpoint_id,
                enabled=False,
                now=now,
                reason=f"{url_guard.display_url(delivery.url)} answered 410 Gone",
            )
            webhooks_repository.stop_pending_for_endpoint(session, delivery.endpoint_id)
    elif slot.number >= slot.max_attempts:
        values = {"status": WebhookDeliveryStatus.FAILED, "next_attempt_at": None}
    else:
        schedule = settings.webhook_retry_schedule
        values = {"next_attempt_at": now + schedule[min(slot.number, len(schedule) - 1)]}
    webhooks_repository.set_delivery_outcome(session, delivery.id, values)


@dataclass(frozen=True, slots=True)
class DueDeliveries:
    """Deliveries taken to send now, leased to their taker, and the secrets to sign them."""

    taken: list[webhooks_repository.TakenDelivery]
    signing: dict[uuid.UUID, list[str]]


def take_due_deliveries(session: Session, settings: Settings) -> DueDeliveries:
    """Lease a batch of due deliveries (``FOR UPDATE SKIP LOCKED``: many senders may run at
    once) for ``webhook_lease``, with every valid secret of their accounts."""
    now = utcnow()
    taken = webhooks_repository.take_due(
        session,
        now=now,
        lease_until=now + settings.webhook_lease,
        limit=settings.webhook_batch_size,
    )
    accounts = {delivery.account_id for delivery in taken}
    signing = webhooks_repository.valid_secrets(session, accounts, now)
    for account_id in accounts - signing.keys():
        signing[account_id] = [ensure_secret(session, account_id).secret]
    return DueDeliveries(taken=taken, signing=signing)
