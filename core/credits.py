"""Credits: every change to a balance is a ledger row written in the same transaction.

grant (+); reserve (-) at submission (and again for images sent to retry); refund (+) as
soon as an image fails or is cancelled; capture (0: the rest of the reservation is spent)
when the job ends. So for every ended job captured + refunded = reserved, and a balance is
always the sum of its ledger.
"""

from __future__ import annotations

import uuid

from sqlalchemy.orm import Session

from core.errors import InsufficientCredits, InvalidRequest
from db import credits as credits_repository
from db.models import LedgerKind


def grant(session: Session, account_id: uuid.UUID, amount: int, note: str | None = None) -> int:
    """Add credits; returns the new balance."""
    if amount <= 0:
        raise InvalidRequest(f"a grant must be positive, not {amount}", input="credits")
    balance = credits_repository.give_credits(session, account_id, amount)
    credits_repository.add_entry(
        session, account_id=account_id, job_id=None, kind=LedgerKind.GRANT,
        amount=amount, delta=amount, balance_after=balance, note=note,
    )  # fmt: skip
    return balance


def reserve(session: Session, account_id: uuid.UUID, job_id: uuid.UUID, price: int) -> int:
    """Hold a job's price, or raise InsufficientCredits (402) with the balance and price."""
    balance = credits_repository.take_credits(session, account_id, price)
    if balance is None:
        available = credits_repository.balance_of(session, account_id)
        raise InsufficientCredits(
            f"this job costs {price} credits and the balance is {available}",
            details={"balance": available, "price": price},
        )
    credits_repository.add_entry(
        session, account_id=account_id, job_id=job_id, kind=LedgerKind.RESERVE,
        amount=price, delta=-price, balance_after=balance,
    )  # fmt: skip
    return balance


def refund(
    session: Session, account_id: uuid.UUID, job_id: uuid.UUID, amount: int, note: str
) -> None:
    """Give back part of a job's reservation (failed or cancelled images)."""
    if amount <= 0:
        return
    balance = credits_repository.give_credits(session, account_id, amount)
    credits_repository.add_entry(
        session, account_id=account_id, job_id=job_id, kind=LedgerKind.REFUND,
        amount=amount, delta=amount, balance_after=balance, note=note,
    )  # fmt: skip


def capture(session: Session, account_id: uuid.UUID, job_id: uuid.UUID, amount: int) -> None:
    """Turn what is left of a job's reservation into spent credits (balance unchanged)."""
    if amount <= 0:
        return
    credits_repository.add_entry(
        session, account_id=account_id, job_id=job_id, kind=LedgerKind.CAPTURE,
        amount=amount, delta=0, balance_after=credits_repository.balance_of(session, account_id),
    )  # fmt: skip
