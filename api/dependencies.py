"""Request dependencies: the unit of work, the caller's account, the caller's job."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session, sessionmaker

from api import rate_limiting
from api.result_streams import ResultStreams
from core import accounts as accounts_service
from core.errors import NotFound, Unauthorized
from core.rate_limits import RateLimiter
from core.settings import Settings
from core.storage import ImageStore
from db import jobs as jobs_repository
from db.engine import unit_of_work
from db.models import Account, Job


@dataclass(frozen=True, slots=True)
class AppState:
    settings: Settings
    session_factory: sessionmaker[Session]
    store: ImageStore
    rate_limiter: RateLimiter
    result_streams: ResultStreams = field(default_factory=ResultStreams)


def get_state(request: Request) -> AppState:
    state: AppState = request.app.state.imageextract
    return state


StateDep = Annotated[AppState, Depends(get_state)]


def get_session(state: StateDep) -> Iterator[Session]:
    with unit_of_work(state.session_factory) as session:
        yield session


# Function scope: the commit happens before the response goes out, so a client that
# polls right after a 202 finds what it was told exists.
SessionDep = Annotated[Session, Depends(get_session, scope="function")]


def authenticate(
    request: Request, state: AppState, session: Session, authorization: str | None
) -> Account:
    """Authenticate and count the request against its key's rate limit.

    Requests without a valid key are counted per client address, so that guessing keys
    is limited too.
    """
    try:
        account, api_key = accounts_service.authenticate_key(session, authorization)
    except Unauthorized:
        client = request.client.host if request.client else "unknown"
        rate_limiting.enforce(
            request,
            state.rate_limiter,
            f"anonymous:{client}",
            state.settings.anonymous_rate_limit_per_minute,
        )
        raise
    limit = account.rate_limit_per_minute or state.settings.rate_limit_per_minute
    rate_limiting.enforce(request, state.rate_limiter, f"key:{api_key.id}", limit)
    return account


def get_account(
    request: Request,
    state: StateDep,
    session: SessionDep,
    authorization: Annotated[str | None, Header()] = None,
) -> Account:
    return authenticate(request, state, session, authorization)


AccountDep = Annotated[Account, Depends(get_account)]


def get_account_short(
    request: Request, state: StateDep, authorization: Annotated[str | None, Header()] = None
) -> Account:
    """Authenticate in a session of its own, for routes that must not hold one open."""
    with unit_of_work(state.session_factory) as session:
        return authenticate(request, state, session, authorization)


ShortAccountDep = Annotated[Account, Depends(get_account_short)]


def get_owned_job(job_id: uuid.UUID, account: AccountDep, session: SessionDep) -> Job:
    job = jobs_repository.get_account_job(session, job_id, account.id)
    if job is None:
        # Another account's job is not found rather than forbidden: ids reveal nothing.
        raise NotFound(f"no job {job_id}", input="job_id")
    return job


JobDep = Annotated[Job, Depends(get_owned_job)]
