"""Queries on webhook secrets, endpoints, deliveries (the outbox) and their attempts."""

from __future__ import annotations

import uuid
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any

from sqlalchemy import case, func, insert, or_, select, update
from sqlalchemy.orm import Session, selectinload

from db.models import (
    WebhookAttempt,
    WebhookDelivery,
    WebhookDeliveryStatus,
    WebhookEndpoint,
    WebhookSecret,
)

# Secrets


def valid_secrets(
    session: Session, account_ids: Iterable[uuid.UUID], now: datetime
) -> dict[uuid.UUID, list[str]]:
    """Each account's secrets that sign now, newest first."""
    ids = list(set(account_ids))
    if not ids:
        return {}
    rows = session.execute(
        select(WebhookSecret.account_id, WebhookSecret.secret)
        .where(
            WebhookSecret.account_id.in_(ids),
            or_(WebhookSecret.expires_at.is_(None), WebhookSecret.expires_at > now),
        )
        .order_by(WebhookSecret.account_id, WebhookSecret.generation.desc())
    ).all()
    found: dict[uuid.UUID, list[str]] = {}
    for account_id, secret in rows:
        found.setdefault(account_id, []).append(secret)
    return found


def list_secrets(session: Session, account_id: uuid.UUID, now: datetime) -> list[WebhookSecret]:
    """The account's secrets that are still valid, newest first."""
    return list(
        session.scalars(
            select(WebhookSecret)
            .where(
                WebhookSecret.account_id == account_id,
                or_(WebhookSecret.expires_at.is_(None), WebhookSecret.expires_at > now),
            )
            .order_by(WebhookSecret.generation.desc())
        )
    )


def current_secret(
    session: Session, account_id: uuid.UUID, *, for_update: bool = False
) -> WebhookSecret | None:
    query = select(WebhookSecret).where(
        WebhookSecret.account_id == account_id, WebhookSecret.expires_at.is_(None)
    )
    if for_update:
        query = query.with_for_update()
    return session.scalars(query.order_by(WebhookSecret.generation.desc()).limit(1)).first()


def last_generation(session: Session, account_id: uuid.UUID) -> int:
    found = session.scalar(
        select(func.max(WebhookSecret.generation)).where(WebhookSecret.account_id == account_id)
    )
    return int(found or 0)


def add_secret(
    session: Session, account_id: uuid.UUID, generation: int, secret: str
) -> WebhookSecret:
    row = WebhookSecret(account_id=account_id, generation=generation, secret=secret)
    session.add(row)
    session.flush()
    return row


def expire_secrets(
    session: Session, account_id: uuid.UUID, *, now: datetime, current_until: datetime
) -> None:
    """Rotation's first half: previous secrets stop now, the current one at ``current_until``."""
    session.execute(
        update(WebhookSecret)
        .where(
            WebhookSecret.account_id == account_id,
            WebhookSecret.expires_at.is_not(None),
            WebhookSecret.expires_at > now,
        )
        .values(expires_at=now)
    )
    session.execute(
        update(WebhookSecret)
        .where(WebhookSecret.account_id == account_id, WebhookSecret.expires_at.is_(None))
        .values(expires_at=current_until)
    )


# Endpoints


def add_endpoint(
    session: Session,
    account_id: uuid.UUID,
    *,
    url: str,
    events: Sequence[str],
    description: str | None,
) -> WebhookEndpoint:
    endpoint = WebhookEndpoint(
        account_id=account_id, url=url, events=list(events), description=description
    )
    session.add(endpoint)
    session.flush()
    session.refresh(endpoint)
    return endpoint


def count_endpoints(session: Session, account_id: uuid.UUID) -> int:
    return int(
        session.scalar(select(func.count()).where(WebhookEndpoint.account_id == account_id)) or 0
    )


def endpoint_with_url(session: Session, account_id: uuid.UUID, url: str) -> WebhookEndpoint | None:
    return session.scalars(
        select(WebhookEndpoint)
        .where(WebhookEndpoint.account_id == account_id, WebhookEndpoint.url == url)
        .limit(1)
    ).first()


def list_endpoints(session: Session, account_id: uuid.UUID) -> list[WebhookEndpoint]:
    return list(
        session.scalars(
            select(WebhookEndpoint)
            .where(WebhookEndpoint.account_id == account_id)
            .order_by(WebhookEndpoint.created_at, WebhookEndpoint.id)
        )
    )


def enabled_endpoints(session: Session, account_id: uuid.UUID) -> list[WebhookEndpoint]:
    return list(
        session.scalars(
            select(WebhookEndpoint).where(
                WebhookEndpoint.account_id == account_id, WebhookEndpoint.enabled.is_(True)
            )
        )
    )


def get_account_endpoint(
    session: Session, endpoint_id: uuid.UUID, account_id: uuid.UUID
) -> WebhookEndpoint | None:
    return session.scalars(
        select(WebhookEndpoint).where(
            WebhookEndpoint.id == endpoint_id, WebhookEndpoint.account_id == account_id
        )
    ).one_or_none()


def set_endpoint_enabled(
    session: Session,
    endpoint_id: uuid.UUID,
    *,
    enabled: bool,
    now: datetime | None = None,
    reason: str | None = None,
) -> None:
    session.execute(
        update(WebhookEndpoint)
        .where(WebhookEndpoint.id == endpoint_id)
        .values(
            enabled=enabled,
            disabled_at=None if enabled else now,
            disabled_reason=None if enabled else reason,
        )
    )


def delete_endpoint(session: Session, endpoint_id: uuid.UUID) -> None:
    endpoint = session.get(WebhookEndpoint, endpoint_id)
    if endpoint is not None:
        session.delete(endpoint)
        session.flush()


def stop_pending_for_endpoint(session: Session, endpoint_id: uuid.UUID) -> int:
    """Pending deliveries to an endpoint that was disabled or is being deleted stop here."""
    result = session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.endpoint_id == endpoint_id,
            WebhookDelivery.status == WebhookDeliveryStatus.PENDING,
        )
        .values(status=WebhookDeliveryStatus.DISABLED, next_attempt_at=None)
    )
    return int(result.rowcount)  # type: ignore[attr-defined]


# Deliveries


def add_deliveries(session: Session, rows: Sequence[dict[str, Any]]) -> None:
    if rows:
        session.execute(insert(WebhookDelivery), list(rows))


@dataclass(frozen=True, slots=True)
class TakenDelivery:
    """A delivery a dispatcher holds the lease on: everything it needs to send it."""

    id: str
    account_id: uuid.UUID
    endpoint_id: uuid.UUID | None
    url: str
    payload: dict[str, Any]


def take_due(
    session: Session, *, now: datetime, lease_until: datetime, limit: int
) -> list[TakenDelivery]:
    """Take up to ``limit`` pending deliveries that are due, pushing them past the lease.

    ``FOR UPDATE SKIP LOCKED`` lets dispatchers on many machines run at once without
    waiting on each other; the outer WHERE re-checks each row, which is what keeps two
    takers apart on SQLite (which has no row locks but runs one writer at a time).
    """
    due = (
        select(WebhookDelivery.id)
        .where(
            WebhookDelivery.status == WebhookDeliveryStatus.PENDING,
            WebhookDelivery.next_attempt_at <= now,
        )
        .order_by(WebhookDelivery.next_attempt_at)
        .limit(limit)
        .with_for_update(skip_locked=True)
    )
    rows = session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id.in_(due.scalar_subquery()),
            WebhookDelivery.status == WebhookDeliveryStatus.PENDING,
            WebhookDelivery.next_attempt_at <= now,
        )
        .values(next_attempt_at=lease_until)
        .returning(
            WebhookDelivery.id,
            WebhookDelivery.account_id,
            WebhookDelivery.endpoint_id,
            WebhookDelivery.url,
            WebhookDelivery.payload,
        )
    ).all()
    return [
        TakenDelivery(id=row[0], account_id=row[1], endpoint_id=row[2], url=row[3], payload=row[4])
        for row in rows
    ]


@dataclass(frozen=True, slots=True)
class AttemptSlot:
    number: int
    max_attempts: int
    status: str


def count_attempt(session: Session, delivery_id: str) -> AttemptSlot | None:
    """Add one to the attempt count and read it back; None if the delivery is gone."""
    row = session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id)
        .values(attempt_count=WebhookDelivery.attempt_count + 1)
        .returning(
            WebhookDelivery.attempt_count, WebhookDelivery.max_attempts, WebhookDelivery.status
        )
    ).one_or_none()
    if row is None:
        return None
    return AttemptSlot(number=row[0], max_attempts=row[1], status=row[2])


def add_attempt(session: Session, values: dict[str, Any]) -> None:
    session.execute(insert(WebhookAttempt).values(**values))


def set_delivery_outcome(session: Session, delivery_id: str, values: dict[str, Any]) -> bool:
    """Change a delivery that is still pending; False if someone stopped it meanwhile."""
    result = session.execute(
        update(WebhookDelivery)
        .where(
            WebhookDelivery.id == delivery_id,
            WebhookDelivery.status == WebhookDeliveryStatus.PENDING,
        )
        .values(**values)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def list_job_deliveries(session: Session, job_id: uuid.UUID) -> list[WebhookDelivery]:
    return list(
        session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.job_id == job_id)
            .options(selectinload(WebhookDelivery.attempts))
            .order_by(WebhookDelivery.created_at, WebhookDelivery.id)
        )
    )


def list_account_deliveries(
    session: Session, account_id: uuid.UUID, limit: int
) -> list[WebhookDelivery]:
    """The account's latest deliveries, newest first, with their attempts."""
    return list(
        session.scalars(
            select(WebhookDelivery)
            .where(WebhookDelivery.account_id == account_id)
            .options(selectinload(WebhookDelivery.attempts))
            .order_by(WebhookDelivery.created_at.desc(), WebhookDelivery.id)
            .limit(limit)
        )
    )


def get_account_delivery(
    session: Session, delivery_id: str, account_id: uuid.UUID
) -> WebhookDelivery | None:
    return session.scalars(
        select(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id, WebhookDelivery.account_id == account_id)
        .options(selectinload(WebhookDelivery.attempts))
        .execution_options(populate_existing=True)
    ).one_or_none()


def schedule_replay(session: Session, delivery_id: str, now: datetime) -> None:
    """Due now, pending again, with room for one attempt more than it has had."""
    session.execute(
        update(WebhookDelivery)
        .where(WebhookDelivery.id == delivery_id)
        .values(
            status=WebhookDeliveryStatus.PENDING,
            next_attempt_at=now,
            max_attempts=case(
                (
                    WebhookDelivery.max_attempts > WebhookDelivery.attempt_count,
                    WebhookDelivery.max_attempts,
                ),
                else_=WebhookDelivery.attempt_count + 1,
            ),
        )
    )
