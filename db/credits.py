"""Queries on credit balances and the credit ledger."""

from __future__ import annotations

import uuid

from sqlalchemy import func, select, update
from sqlalchemy.orm import Session

from db.models import Account, CreditLedgerEntry


def take_credits(session: Session, account_id: uuid.UUID, amount: int) -> int | None:
    """Subtract ``amount`` if the balance covers it; the new balance, or None if it does not.

    One conditional UPDATE: Postgres locks the row, so racing submissions queue here and
    the balance can never go below zero.
    """
    return session.execute(
        update(Account)
        .where(Account.id == account_id, Account.credit_balance >= amount)
        .values(credit_balance=Account.credit_balance - amount)
        .returning(Account.credit_balance)
    ).scalar_one_or_none()


def give_credits(session: Session, account_id: uuid.UUID, amount: int) -> int:
    return session.execute(
        update(Account)
        .where(Account.id == account_id)
        .values(credit_balance=Account.credit_balance + amount)
        .returning(Account.credit_balance)
    ).scalar_one()


def balance_of(session: Session, account_id: uuid.UUID) -> int:
    return session.execute(
        select(Account.credit_balance).where(Account.id == account_id)
    ).scalar_one()


def add_entry(
    session: Session,
    *,
    account_id: uuid.UUID,
    job_id: uuid.UUID | None,
    kind: str,
    amount: int,
    delta: int,
    balance_after: int,
    note: str | None = None,
) -> CreditLedgerEntry:
    entry = CreditLedgerEntry(
        account_id=account_id,
        job_id=job_id,
        kind=kind,
        amount=amount,
        delta=delta,
        balance_after=balance_after,
        note=note,
    )
    session.add(entry)
    session.flush()
    return entry


def ledger_sum(session: Session, account_id: uuid.UUID) -> int:
    return int(
        session.execute(
            select(func.coalesce(func.sum(CreditLedgerEntry.delta), 0)).where(
                CreditLedgerEntry.account_id == account_id
            )
        ).scalar_one()
    )


def entry_id(session: Session, account_id: uuid.UUID, public_id: uuid.UUID) -> int | None:
    """The row id of the account's entry ``public_id``, or None."""
    return session.execute(
        select(CreditLedgerEntry.id).where(
            CreditLedgerEntry.public_id == public_id, CreditLedgerEntry.account_id == account_id
        )
    ).scalar_one_or_none()


def list_entries(
    session: Session, account_id: uuid.UUID, *, before_id: int | None, limit: int
) -> list[CreditLedgerEntry]:
    query = select(CreditLedgerEntry).where(CreditLedgerEntry.account_id == account_id)
    if before_id is not None:
        query = query.where(CreditLedgerEntry.id < before_id)
    return list(session.scalars(query.order_by(CreditLedgerEntry.id.desc()).limit(limit)))


def job_entries(session: Session, job_id: uuid.UUID) -> list[CreditLedgerEntry]:
    return list(
        session.scalars(
            select(CreditLedgerEntry)
            .where(CreditLedgerEntry.job_id == job_id)
            .order_by(CreditLedgerEntry.id)
        )
    )
