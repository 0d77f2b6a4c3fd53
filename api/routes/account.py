"""The caller's account: balance, limits and the credit ledger."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query

from api.dependencies import AccountDep, SessionDep, StateDep
from api.pagination import decode_cursor, page
from api.schemas.account import (
    AccountOut,
    ApiKeyList,
    ApiKeyOut,
    LedgerEntryOut,
    LedgerPage,
    LimitsOut,
    NewApiKeyOut,
    PriceOut,
    RateLimitOut,
)
from core import accounts as accounts_service
from core.errors import InvalidRequest
from db import accounts as accounts_repository
from db import credits as credits_repository
from db.models import ApiKey

router = APIRouter(prefix="/v1/account", tags=["account"])


@router.get("", response_model=AccountOut)
def get_account(account: AccountDep, state: StateDep) -> AccountOut:
    settings = state.settings
    return AccountOut(
        id=account.id,
        name=account.name,
        balance=account.credit_balance,
        price=PriceOut(
            per_job=settings.credits_per_job,
            per_image=settings.credits_per_image,
            per_page=settings.resolved_credits_per_page,
        ),
        limits=LimitsOut(
            rate_limit=RateLimitOut(
                requests_per_minute=account.rate_limit_per_minute or settings.rate_limit_per_minute
            ),
            max_images_per_job=settings.max_images_per_job,
            max_pages_per_document=settings.max_pages_per_document,
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


def _key_out(key: ApiKey) -> ApiKeyOut:
    return ApiKeyOut(id=key.id, prefix=key.prefix, created_at=key.created_at,
                     revoked_at=key.revoked_at)  # fmt: skip


@router.get("/keys", response_model=ApiKeyList)
def list_keys(account: AccountDep, session: SessionDep) -> ApiKeyList:
    """The account's API keys (their prefixes; a key itself is shown only when made)."""
    return ApiKeyList(
        keys=[_key_out(key) for key in accounts_repository.list_api_keys(session, account.id)]
    )


@router.post("/keys", status_code=201, response_model=NewApiKeyOut)
def create_key(account: AccountDep, session: SessionDep) -> NewApiKeyOut:
    """A new API key for the account, shown in this answer only."""
    new = accounts_service.create_account_key(session, account)
    session.refresh(new.api_key)
    return NewApiKeyOut(**_key_out(new.api_key).model_dump(), key=new.secret)


@router.delete("/keys/{key_id}", status_code=204)
def revoke_key(key_id: uuid.UUID, account: AccountDep, session: SessionDep) -> None:
    """Revoke a key of the account: it stops working at once. The last working key
    cannot be revoked (409): make another first."""
    accounts_service.revoke_account_key(session, account, key_id)
