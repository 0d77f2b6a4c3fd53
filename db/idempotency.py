"""Queries on idempotency keys."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import delete, select, update
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from db.models import IdempotencyKey


def insert_claim(
    session: Session, account_id: uuid.UUID, key: str, now: datetime, expires_at: datetime
) -> uuid.UUID | None:
    """Claim the key; None when another request holds or has used it.

    Commits (or rolls back) at once: the claim must be visible to a concurrent request
    before this one starts reading its body.
    """
    claim = IdempotencyKey(account_id=account_id, key=key, created_at=now, expires_at=expires_at)
    session.add(claim)
    try:
        session.commit()
    except IntegrityError:
        session.rollback()
        return None
    return claim.id


def get(session: Session, account_id: uuid.UUID, key: str) -> IdempotencyKey | None:
    return session.scalars(
        select(IdempotencyKey).where(
            IdempotencyKey.account_id == account_id, IdempotencyKey.key == key
        )
    ).one_or_none()


def remove(session: Session, claim_id: uuid.UUID) -> None:
    session.execute(delete(IdempotencyKey).where(IdempotencyKey.id == claim_id))


def bind(session: Session, claim_id: uuid.UUID, fingerprint: str, job_id: uuid.UUID) -> None:
    session.execute(
        update(IdempotencyKey)
        .where(IdempotencyKey.id == claim_id)
        .values(fingerprint=fingerprint, job_id=job_id)
    )


def purge_expired(session: Session, now: datetime) -> int:
    result = session.execute(delete(IdempotencyKey).where(IdempotencyKey.expires_at < now))
    return int(result.rowcount)  # type: ignore[attr-defined]
