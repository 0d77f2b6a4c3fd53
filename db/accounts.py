"""Queries on accounts and API keys."""

from __future__ import annotations

import uuid
from datetime import datetime

from sqlalchemy import select, update
from sqlalchemy.orm import Session

from db.models import Account, ApiKey


def get_account_by_name(session: Session, name: str) -> Account | None:
    return session.scalars(select(Account).where(Account.name == name)).one_or_none()


def add_account(session: Session, name: str, credits: int) -> Account:
    account = Account(name=name, credit_balance=credits)
    session.add(account)
    session.flush()
    return account


def add_api_key(session: Session, account_id: uuid.UUID, prefix: str, key_hash: str) -> ApiKey:
    api_key = ApiKey(account_id=account_id, prefix=prefix, key_hash=key_hash)
    session.add(api_key)
    session.flush()
    return api_key


def lock_account(session: Session, account_id: uuid.UUID) -> None:
    """Hold the account's row until this transaction ends: checks on its keys then take
    turns. NO KEY UPDATE, so rows that only reference the account (new jobs) do not wait."""
    session.execute(
        select(Account.id).where(Account.id == account_id).with_for_update(key_share=True)
    )


def list_api_keys(session: Session, account_id: uuid.UUID) -> list[ApiKey]:
    """The account's keys, newest first, revoked ones included."""
    return list(
        session.scalars(
            select(ApiKey)
            .where(ApiKey.account_id == account_id)
            .order_by(ApiKey.created_at.desc(), ApiKey.id)
            # As the database has them now: the caller's own key, loaded when it was
            # authenticated, may have been revoked since.
            .execution_options(populate_existing=True)
        )
    )


def get_account_by_key_hash(session: Session, key_hash: str) -> tuple[Account, ApiKey] | None:
    row = session.execute(
        select(Account, ApiKey)
        .join(ApiKey, ApiKey.account_id == Account.id)
        .where(ApiKey.key_hash == key_hash, ApiKey.revoked_at.is_(None))
    ).one_or_none()
    return (row[0], row[1]) if row is not None else None


def revoke_api_key(session: Session, key_id: uuid.UUID, now: datetime) -> bool:
    result = session.execute(
        update(ApiKey)
        .where(ApiKey.id == key_id, ApiKey.revoked_at.is_(None))
        .values(revoked_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]
