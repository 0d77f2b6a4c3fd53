"""Webhooks: per-account endpoints, the signing secret, a job's deliveries, replay."""

from __future__ import annotations

import uuid
from typing import Annotated

from fastapi import APIRouter, Query, Request, Response
from fastapi.responses import JSONResponse
from sqlalchemy.orm import Session

from api.dependencies import AccountDep, JobDep, SessionDep, StateDep
from api.schemas.webhooks import (
    PreviousSecretOut,
    WebhookDeliveryList,
    WebhookDeliveryOut,
    WebhookEndpointIn,
    WebhookEndpointList,
    WebhookEndpointOut,
    WebhookSecretOut,
)
from core import webhooks as webhooks_service
from core.errors import NotFound
from db import webhooks as webhooks_repository
from db.models import Account, WebhookDelivery, WebhookEndpoint

router = APIRouter(prefix="/v1", tags=["webhooks"])


def endpoint_out(endpoint: WebhookEndpoint) -> WebhookEndpointOut:
    return WebhookEndpointOut.model_validate(endpoint)


def delivery_out(delivery: WebhookDelivery) -> WebhookDeliveryOut:
    """With its attempts, which the repository loads with it."""
    return WebhookDeliveryOut.model_validate(delivery)


def secret_out(secrets: webhooks_service.AccountSecrets) -> WebhookSecretOut:
    return WebhookSecretOut(
        secret=secrets.current.secret,
        created_at=secrets.current.created_at,
        previous=[
            PreviousSecretOut(created_at=s.created_at, expires_at=s.expires_at)
            for s in secrets.previous
        ],
    )


def _owned_endpoint(session: Session, account: Account, endpoint_id: uuid.UUID) -> WebhookEndpoint:
    endpoint = webhooks_repository.get_account_endpoint(session, endpoint_id, account.id)
    if endpoint is None:
        raise NotFound(f"no webhook endpoint {endpoint_id}", input="endpoint_id")
    return endpoint


@router.post("/webhook-endpoints", status_code=201, response_model=WebhookEndpointOut)
def create_endpoint(
    request: Request,
    body: WebhookEndpointIn,
    account: AccountDep,
    session: SessionDep,
    state: StateDep,
) -> JSONResponse:
    """Receive the chosen events of every job of this account at ``url``."""
    endpoint = webhooks_service.create_endpoint(
        session,
        state.settings,
        account.id,
        url=body.url,
        events=body.events,
        description=body.description,
    )
    location = str(request.url_for("get_endpoint", endpoint_id=endpoint.id))
    return JSONResponse(
        endpoint_out(endpoint).model_dump(mode="json"),
        status_code=201,
        headers={"Location": location},
    )


@router.get("/webhook-endpoints", response_model=WebhookEndpointList)
def list_endpoints(account: AccountDep, session: SessionDep) -> WebhookEndpointList:
    return WebhookEndpointList(
        endpoints=[endpoint_out(e) for e in webhooks_repository.list_endpoints(session, account.id)]
    )


@router.get("/webhook-endpoints/{endpoint_id}", response_model=WebhookEndpointOut)
def get_endpoint(
    endpoint_id: uuid.UUID, account: AccountDep, session: SessionDep
) -> WebhookEndpointOut:
    return endpoint_out(_owned_endpoint(session, account, endpoint_id))


@router.post("/webhook-endpoints/{endpoint_id}/enable", response_model=WebhookEndpointOut)
def enable_endpoint(
    endpoint_id: uuid.UUID, account: AccountDep, session: SessionDep
) -> WebhookEndpointOut:
    """Turn an endpoint that was disabled (it answered 410 Gone) back on."""
    endpoint = _owned_endpoint(session, account, endpoint_id)
    webhooks_service.enable_endpoint(session, endpoint)
    return endpoint_out(endpoint)


@router.delete("/webhook-endpoints/{endpoint_id}", status_code=204)
def delete_endpoint(endpoint_id: uuid.UUID, account: AccountDep, session: SessionDep) -> Response:
    """Delete the endpoint; its deliveries still pending are not sent."""
    webhooks_service.delete_endpoint(session, _owned_endpoint(session, account, endpoint_id))
    return Response(status_code=204)


@router.get("/webhook-secret", response_model=WebhookSecretOut)
def get_secret(account: AccountDep, session: SessionDep) -> WebhookSecretOut:
    """The account's signing secret (made on first use) for verifying webhooks."""
    return secret_out(webhooks_service.account_secrets(session, account.id))


@router.post("/webhook-secret/rotate", response_model=WebhookSecretOut)
def rotate_secret(account: AccountDep, session: SessionDep, state: StateDep) -> WebhookSecretOut:
    """A new signing secret; the previous one keeps signing for the overlap period."""
    return secret_out(webhooks_service.rotate_secret(session, state.settings, account.id))


@router.get("/jobs/{job_id}/webhooks", response_model=WebhookDeliveryList)
def list_job_webhooks(job: JobDep, session: SessionDep) -> WebhookDeliveryList:
    """The job's webhook deliveries, each with its attempts."""
    return WebhookDeliveryList(
        deliveries=[
            delivery_out(d) for d in webhooks_repository.list_job_deliveries(session, job.id)
        ]
    )


@router.get("/account/webhook-deliveries", response_model=WebhookDeliveryList)
def list_recent_deliveries(
    account: AccountDep, session: SessionDep, limit: Annotated[int, Query(ge=1, le=200)] = 20
) -> WebhookDeliveryList:
    """The account's latest webhook deliveries, newest first, each with its attempts."""
    return WebhookDeliveryList(
        deliveries=[
            delivery_out(d)
            for d in webhooks_repository.list_account_deliveries(session, account.id, limit)
        ]
    )


@router.post(
    "/webhook-deliveries/{delivery_id}/replay", status_code=202, response_model=WebhookDeliveryOut
)
def replay_delivery(
    delivery_id: str, account: AccountDep, session: SessionDep
) -> WebhookDeliveryOut:
    """Send the delivery again now, with the same webhook-id and payload."""
    delivery = webhooks_repository.get_account_delivery(session, delivery_id, account.id)
    if delivery is None:
        raise NotFound(f"no webhook delivery {delivery_id}", input="delivery_id")
    webhooks_service.replay_delivery(session, delivery)
    # Read again: the replay changed the row with an UPDATE the loaded object did not see.
    return delivery_out(
        webhooks_repository.get_account_delivery(session, delivery_id, account.id) or delivery
    )
