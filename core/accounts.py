"""Accounts and API keys: keys are shown once and stored only as a SHA-256 hash.

Keys carry 256 bits of randomness, so a fast hash is enough: nobody can brute-force them,
and lookups by hash stay a single indexed query.
"""

from __future__ import annotations

import hashlib
import secrets
import uuid
from dataclasses import dataclass
from datetime import UTC, datetime

from sqlalchemy.orm import Session

from core import credits as credits_service
from core.errors import Conflict, InvalidRequest, NotFound, Unauthorized
from db import accounts as accounts_repository
from db.models import Account, ApiKey

KEY_PREFIX = "iek_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_account(session: Session, name: str, credits: int = 0) -> Account:
    if accounts_repository.get_account_by_name(session, name) is not None:
        raise Conflict(f"an account named {name!r} already exists", input="name")
    account = accounts_repository.add_account(session, name, 0)
    if credits:
        account.credit_balance = credits_service.grant(
            session, account.id, credits, note="initial credits"
        )
    return account


@dataclass(frozen=True, slots=True)
class NewKey:
    api_key: ApiKey
    secret: str


def get_account(session: Session, name: str) -> Account:
    account = accounts_repository.get_account_by_name(session, name)
    if account is None:
        raise NotFound(f"no account named {name!r}", input="name")
    return account


def set_rate_limit(session: Session, name: str, requests_per_minute: int | None) -> Account:
    """Give the account's keys their own limit of requests a minute each (None: the
    service's default)."""
    if requests_per_minute is not None and requests_per_minute < 1:
        raise InvalidRequest(
            "the rate limit is at least 1 request a minute", input="requests_per_minute"
        )
    account = get_account(session, name)
    account.rate_limit_per_minute = requests_per_minute
    session.flush()
    return account


def set_max_in_flight(session: Session, name: str, images: int | None) -> Account:
    """Let at most ``images`` of the account's images be on the model at once (None: no
    cap), so that one tenant cannot hold every model thread even when nobody else waits."""
    if images is not None and images < 1:
        raise InvalidRequest("the cap is at least 1 image in flight", input="max_in_flight")
    account = get_account(session, name)
    account.max_in_flight = images
    session.flush()
    return account


def revoke_key(session: Session, key_id: uuid.UUID) -> None:
    if not accounts_repository.revoke_api_key(session, key_id, datetime.now(UTC)):
        raise NotFound(f"no active key with id {key_id}", input="key_id")


def create_key(session: Session, account_name: str) -> NewKey:
    return create_account_key(session, get_account(session, account_name))


def revoke_account_key(session: Session, account: Account, key_id: uuid.UUID) -> None:
    """Revoke one of the account's own keys; its last working key stays (the account
    would lock itself out: make another first).

    The account's row is locked before its keys are counted: two keys revoking each other
    at once would otherwise both count two working keys and leave none."""
    accounts_repository.lock_account(session, account.id)
    keys = accounts_repository.list_api_keys(session, account.id)
    target = next((key for key in keys if key.id == key_id and key.revoked_at is None), None)
    if target is None:
        raise NotFound(f"no active key with id {key_id} in this account", input="key_id")
    if sum(key.revoked_at is None for key in keys) == 1:
        raise Conflict(
            "this is the account's last working key; create another before revoking it",
            input="key_id",
        )
    accounts_repository.revoke_api_key(session, key_id, datetime.now(UTC))


def create_account_key(session: Session, account: Account) -> NewKey:
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    api_key = accounts_repository.add_api_key(
        session, account.id, prefix=secret[:12], key_hash=hash_key(secret)
    )
    return NewKey(api_key=api_key, secret=secret)


def authenticate(session: Session, authorization: str | None) -> Account:
    """The account behind an ``Authorization: Bearer <key>`` header, or Unauthorized."""
    return authenticate_key(session, authorization)[0]


def authenticate_key(session: Session, authorization: str | None) -> tuple[Account, ApiKey]:
    """The account and the key behind an ``Authorization: Bearer <key>`` header."""
    if not authorization:
        raise Unauthorized("Invalid or missing Authorization header", input="Authorization")
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized("Invalid or missing Authorization header", input="Authorization")
    found = accounts_repository.get_account_by_key_hash(session, hash_key(key.strip()))
    if found is None:
        raise Unauthorized("Invalid or missing Authorization header", input="Authorization")
    return found
