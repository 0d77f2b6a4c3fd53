"""Sending webhooks: the worker's half of the outbox in ``core/webhooks.py``.

Beat runs ``deliver_due`` every few seconds (and a job's end queues one run at once). It
leases due deliveries in a short transaction, sends them from a thread pool with no session
open (a slow receiver holds a thread, never a connection), and records each attempt in a
transaction of its own; core decides what comes next.
"""

from __future__ import annotations

import logging
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed

import httpx
from sqlalchemy.orm import Session, sessionmaker

from core import url_guard
from core import webhooks as webhooks_service
from core.settings import Settings
from db.engine import unit_of_work
from db.webhooks import TakenDelivery

log = logging.getLogger(__name__)

# How much of a receiver's answer each attempt keeps, to show why it failed.
EXCERPT_BYTES = 1024
USER_AGENT = "imageextract-webhooks/1"
# One dispatcher run stops taking new rows after this; the next beat tick goes on.
RUN_BUDGET_SECONDS = 60.0


def send_delivery(
    client: httpx.Client,
    guard: url_guard.UrlGuard,
    settings: Settings,
    delivery: TakenDelivery,
    secrets_: Sequence[str],
) -> webhooks_service.AttemptResult:
    """One signed POST of the delivery through the URL guard. Never raises for the network.

    Redirects are not followed: the receiver's URL is the one the account registered.
    """
    body = webhooks_service.encode_payload(delivery.payload)
    attempted_at = webhooks_service.utcnow()
    timestamp = int(attempted_at.timestamp())
    headers = {
        "Content-Type": "application/json",
        "User-Agent": USER_AGENT,
        "webhook-id": delivery.id,
        "webhook-timestamp": str(timestamp),
        "webhook-signature": webhooks_service.sign(secrets_, delivery.id, timestamp, body),
    }
    started = time.perf_counter()
    status_code: int | None = None
    excerpt: str | None = None
    error: str | None = None
    try:
        with url_guard.open_stream(
            client,
            guard,
            "POST",
            delivery.url,
            headers=headers,
            content=body,
            timeout=settings.webhook_timeout.total_seconds(),
            max_redirects=0,
        ) as response:
            status_code = response.status_code
            excerpt = url_guard.read_excerpt(
                response, EXCERPT_BYTES, seconds=settings.webhook_timeout.total_seconds()
            )
    except url_guard.UrlRefused as refused:
        error = str(refused)
    except httpx.HTTPError as failure:
        error = f"{type(failure).__name__}: {failure}" if str(failure) else type(failure).__name__
    except Exception:
        # Counted as a failed attempt like any other, so a delivery that trips a bug ends
        # after its schedule instead of coming back every lease forever.
        log.exception("webhook delivery %s failed unexpectedly", delivery.id)
        error = "internal error while sending"
    return webhooks_service.AttemptResult(
        attempted_at=attempted_at,
        latency_ms=int((time.perf_counter() - started) * 1000),
        status_code=status_code,
        response_excerpt=excerpt,
        error=error,
    )


def deliver_due(
    session_factory: sessionmaker[Session],
    settings: Settings,
    client: httpx.Client,
    *,
    guard: url_guard.UrlGuard | None = None,
    budget_seconds: float = RUN_BUDGET_SECONDS,
) -> int:
    """Send every delivery that is due, a batch at a time; returns how many were attempted.

    Each batch is taken in a short transaction and sent with no session open (a slow
    receiver holds a thread, never a connection); each attempt is recorded in its own.
    Safe to run in many processes at once: a taken row is leased to its taker.
    """
    guard = guard or url_guard.UrlGuard.from_settings(settings)
    deadline = time.monotonic() + budget_seconds
    attempted = 0
    with ThreadPoolExecutor(max_workers=max(1, settings.webhook_concurrency)) as pool:
        while time.monotonic() < deadline:
            with unit_of_work(session_factory) as session:
                due = webhooks_service.take_due_deliveries(session, settings)
            if not due.taken:
                break
            futures = {
                pool.submit(
                    send_delivery, client, guard, settings, delivery,
                    due.signing[delivery.account_id],
                ): delivery
                for delivery in due.taken
            }  # fmt: skip
            for future in as_completed(futures):
                delivery = futures[future]
                with unit_of_work(session_factory) as session:
                    webhooks_service.record_attempt(session, settings, delivery, future.result())
                attempted += 1
    return attempted
