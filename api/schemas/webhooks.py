"""Request and response bodies of the webhooks API."""

from __future__ import annotations

import uuid
from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, Field

from db.models import WebhookEventType


class WebhookEndpointIn(BaseModel):
    url: str = Field(max_length=2000, description="An http(s) URL on a public address.")
    events: list[WebhookEventType] | None = Field(
        default=None, description="Events to receive; every job event when left out."
    )
    description: str | None = Field(default=None, max_length=500)


class WebhookEndpointOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: uuid.UUID
    url: str
    events: list[str]
    description: str | None
    enabled: bool = Field(description="False once the receiver answered 410 Gone.")
    disabled_at: datetime | None
    disabled_reason: str | None
    created_at: datetime


class WebhookEndpointList(BaseModel):
    endpoints: list[WebhookEndpointOut]


class PreviousSecretOut(BaseModel):
    created_at: datetime
    expires_at: datetime | None = Field(description="Requests are signed with it until then.")


class WebhookSecretOut(BaseModel):
    secret: str = Field(description="The current signing secret (whsec_...).")
    created_at: datetime
    previous: list[PreviousSecretOut] = Field(
        description="Secrets replaced by a rotation that still sign during the overlap."
    )


class WebhookAttemptOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    number: int
    attempted_at: datetime
    status_code: int | None
    latency_ms: int
    response_excerpt: str | None = Field(description="The first kilobyte of the answer.")
    error: str | None = Field(description="Why no answer came (refused, timeout, ...).")


class WebhookDeliveryOut(BaseModel):
    model_config = ConfigDict(from_attributes=True)

    id: str = Field(description="The webhook-id header: the same on every attempt and replay.")
    event_type: str
    url: str
    endpoint_id: uuid.UUID | None = Field(description="None for the job's own webhook_url.")
    job_id: uuid.UUID | None
    status: str = Field(description="pending, delivered, failed or disabled")
    attempt_count: int
    next_attempt_at: datetime | None
    created_at: datetime
    delivered_at: datetime | None
    payload: dict[str, Any]
    attempts: list[WebhookAttemptOut]


class WebhookDeliveryList(BaseModel):
    deliveries: list[WebhookDeliveryOut]
