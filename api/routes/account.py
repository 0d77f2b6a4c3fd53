"""The caller's account: balance, limits and the credit ledger."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from api.dependencies import AccountDep, SessionDep, StateDep
from api.pagination import decode_cursor, page
from api.schemas.account import (
    AccountOut,
    LedgerEntryOut,
    LedgerPage,
    LimitsOut,
    PriceOut,
    RateLimitOut,
)
from core.errors import InvalidRequest
from db import credits as credits_repository

router = APIRouter(prefix="/v1/account", tags=["account"])


@router.get("", response_model=AccountOut)
def get_account(account: AccountDep, state: StateDep) -> AccountOut:
    settings = state.settings
    return AccountOut(
        id=account.id,
        name=account.name,
        balance=account.credit_balance,
        price=PriceOut(per_job=settings.credits_per_job, per_image=settings.credits_per_image),
        limits=LimitsOut(
            rate_limit=RateLimitOut(
                requests_per_minute=account.rate_limit_per_minute or settings.rate_limit_per_minute
            ),
            max_images_per_job=settings.max_images_per_job,
            max_image_bytes=settings.max_image_bytes,
            max_job_bytes=settings.max_job_bytes,
            max_prompt_chars=settings.max_prompt_chars,
            max_fields_bytes=settings.max_fields_bytes,
            max_json_depth=settings.max_json_depth,
        ),
        created_at=account.created_at,
    )


def _entry_key(parts: list[str]) -> uuid.UUID:
    (public_id,) = parts
    return uuid.UUID(public_id)


@router.get("/ledger", response_model=LedgerPage)
def get_ledger(
    account: AccountDep,
    session: SessionDep,
    cursor: Annotated[str | None, Query(description="next_cursor of the previous page")] = None,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> LedgerPage:
    """Credit movements, newest first."""
    before = None
    if cursor:
        public_id = decode_cursor(cursor, _entry_key)
        before = credits_repository.entry_id(session, account.id, public_id)
        if before is None:  # another account's entry
            raise InvalidRequest("cursor is not one this API gave out", input="cursor")
    entries = credits_repository.list_entries(
        session, account.id, before_id=before, limit=limit + 1
    )
    entries, next_cursor = page(entries, limit, lambda entry: (str(entry.public_id),))
    return LedgerPage(
        entries=[LedgerEntryOut.model_validate(entry) for entry in entries],
        next_cursor=next_cursor,
    )
