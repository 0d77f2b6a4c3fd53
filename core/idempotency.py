"""Idempotency-Key on submit endpoints.

A key is claimed before the body is read, so a second request with the same key while the
first is still streaming gets 409. Once the job is created the key is bound to it and to
a fingerprint of the request; a retry with the same key and the same request gets the
original job (no second charge), the same key with another request gets 422. Keys live
``idempotency_ttl`` (24 h).
"""

from __future__ import annotations

import hashlib
import json
import uuid
from dataclasses import dataclass
from typing import Any

from sqlalchemy.orm import Session

from core.errors import Conflict, IdempotencyKeyReused, InvalidRequest
from core.jobs import StagedImage, utcnow
from core.settings import Settings
from db import idempotency as idempotency_repository

MAX_KEY_CHARS = 255


@dataclass(frozen=True, slots=True)
class Claim:
    """This request holds the key and will create the job."""

    id: uuid.UUID


@dataclass(frozen=True, slots=True)
class Replay:
    """The key was used before: answer with that job if the request is the same."""

    job_id: uuid.UUID
    fingerprint: str


def fingerprint(route: str, fields: dict[str, Any], images: list[StagedImage]) -> str:
    """What makes two requests the same: the route, the fields, and each image's bytes (or
    URL) and file name, in order. The name counts: results and CSV rows carry it, so the
    same bytes under another name are another request."""
    digest = hashlib.sha256()
    digest.update(route.encode())
    digest.update(json.dumps(fields, sort_keys=True, default=str).encode())
    for image in images:
        what = [image.sha256 or image.source_url or "", image.source_name]
        digest.update(json.dumps(what).encode() + b"\n")
    return digest.hexdigest()


def claim(session: Session, settings: Settings, account_id: uuid.UUID, key: str) -> Claim | Replay:
    if not key or len(key) > MAX_KEY_CHARS:
        raise InvalidRequest(
            f"Idempotency-Key must be 1 to {MAX_KEY_CHARS} characters", input="Idempotency-Key"
        )
    now = utcnow()
    for _attempt in range(2):
        claim_id = idempotency_repository.insert_claim(
            session, account_id, key, now, now + settings.idempotency_ttl
        )
        if claim_id is not None:
            return Claim(claim_id)
        existing = idempotency_repository.get(session, account_id, key)
        if existing is None:
            continue  # released between our insert and our read: try once more
        expired = existing.expires_at < now
        abandoned = (
            existing.job_id is None
            and existing.created_at < now - settings.idempotency_claim_timeout
        )
        if expired or abandoned:
            idempotency_repository.remove(session, existing.id)
            continue
        if existing.job_id is None or existing.fingerprint is None:
            raise Conflict(
                "a request with this Idempotency-Key is still in progress; retry when it ends",
                input="Idempotency-Key",
            )
        return Replay(job_id=existing.job_id, fingerprint=existing.fingerprint)
    raise Conflict("this Idempotency-Key is contended; retry", input="Idempotency-Key")


def check_replay(replay: Replay, request_fingerprint: str) -> None:
    if replay.fingerprint != request_fingerprint:
        raise IdempotencyKeyReused(
            "this Idempotency-Key was used for a different request",
            input="Idempotency-Key",
        )


def bind(session: Session, claimed: Claim, request_fingerprint: str, job_id: uuid.UUID) -> None:
    idempotency_repository.bind(session, claimed.id, request_fingerprint, job_id)


def release(session: Session, claimed: Claim) -> None:
    idempotency_repository.remove(session, claimed.id)
