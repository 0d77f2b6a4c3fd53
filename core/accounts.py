"""Accounts and API keys: keys are shown once and stored only as a SHA-256 hash.

Keys carry 256 bits of randomness, so a fast hash is enough: nobody can brute-force them,
and lookups by hash stay a single indexed query.
"""

from __future__ import annotations

import hashlib
import secrets
from dataclasses import dataclass

from sqlalchemy.orm import Session

from core.errors import Conflict, NotFound, Unauthorized
from db import accounts as accounts_repository
from db.models import Account, ApiKey

KEY_PREFIX = "iek_"


def hash_key(key: str) -> str:
    return hashlib.sha256(key.encode()).hexdigest()


def create_account(session: Session, name: str, credits: int = 0) -> Account:
    if accounts_repository.get_account_by_name(session, name) is not None:
        raise Conflict(f"an account named {name!r} already exists", input="name")
    return accounts_repository.add_account(session, name, credits)


@dataclass(frozen=True, slots=True)
class NewKey:
    api_key: ApiKey
    secret: str


def create_key(session: Session, account_name: str) -> NewKey:
    account = accounts_repository.get_account_by_name(session, account_name)
    if account is None:
        raise NotFound(f"no account named {account_name!r}", input="name")
    secret = KEY_PREFIX + secrets.token_urlsafe(32)
    api_key = accounts_repository.add_api_key(
        session, account.id, prefix=secret[:12], key_hash=hash_key(secret)
    )
    return NewKey(api_key=api_key, secret=secret)


def authenticate(session: Session, authorization: str | None) -> Account:
    """The account behind an ``Authorization: Bearer <key>`` header, or Unauthorized."""
    if not authorization:
        raise Unauthorized("Invalid or missing Authorization header", input="Authorization")
    scheme, _, key = authorization.partition(" ")
    if scheme.lower() != "bearer" or not key.strip():
        raise Unauthorized("Invalid or missing Authorization header", input="Authorization")
    found = accounts_repository.get_account_by_key_hash(session, hash_key(key.strip()))
    if found is None:
        raise Unauthorized("Invalid or missing Authorization header", input="Authorization")
    return found[0]
