"""Bodies of the account endpoints."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field


class RateLimitOut(BaseModel):
    requests_per_minute: int


class PriceOut(BaseModel):
    per_job: int
    per_image: int
    per_page: int = Field(default=1, description="Each page of a PDF.")


class LimitsOut(BaseModel):
    rate_limit: RateLimitOut
    max_images_per_job: int = Field(description="Images and PDF pages, together.")
    max_pages_per_document: int = Field(default=500, description="Pages of one PDF.")
    max_image_bytes: int
    max_job_bytes: int
    max_prompt_chars: int
    max_fields_bytes: int = Field(description="Every field but the images, together.")
    max_json_depth: int


class AccountOut(BaseModel):
    id: uuid.UUID
    name: str
    balance: int = Field(description="Credits available now (reservations already taken out).")
    price: PriceOut
    limits: LimitsOut
    created_at: datetime


class LedgerEntryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    # The entry's public id: the row id counts every account's entries. Read from the row
    # (public_id) on the server, from the JSON (id) in the SDK.
    id: uuid.UUID = Field(validation_alias=AliasChoices("public_id", "id"))
    kind: Literal["grant", "reserve", "capture", "refund"]
    amount: int
    delta: int = Field(description="Effect on the balance: grant +, reserve -, refund +, capture 0")
    balance_after: int
    job_id: uuid.UUID | None
    note: str | None
    created_at: datetime


class LedgerPage(BaseModel):
    entries: list[LedgerEntryOut]
    next_cursor: str | None


class ApiKeyOut(BaseModel):
    id: uuid.UUID
    prefix: str = Field(description="The key's first characters, to recognise it by.")
    created_at: datetime
    revoked_at: datetime | None


class NewApiKeyOut(ApiKeyOut):
    key: str = Field(description="The key itself: shown this once, store it now.")


class ApiKeyList(BaseModel):
    keys: list[ApiKeyOut]
