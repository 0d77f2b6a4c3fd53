"""Request dependencies: the unit of work, the caller's account, the caller's job."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Annotated

from fastapi import Depends, Header, Request
from sqlalchemy.orm import Session, sessionmaker

from core import accounts as accounts_service
from core.errors import NotFound
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


def get_account(
    session: SessionDep, authorization: Annotated[str | None, Header()] = None
) -> Account:
    return accounts_service.authenticate(session, authorization)


AccountDep = Annotated[Account, Depends(get_account)]


def get_account_short(
    state: StateDep, authorization: Annotated[str | None, Header()] = None
) -> Account:
    """Authenticate in a session of its own, for routes that must not hold one open."""
    with unit_of_work(state.session_factory) as session:
        return accounts_service.authenticate(session, authorization)


ShortAccountDep = Annotated[Account, Depends(get_account_short)]


def get_owned_job(job_id: uuid.UUID, account: AccountDep, session: SessionDep) -> Job:
    job = jobs_repository.get_account_job(session, job_id, account.id)
    if job is None:
        # Another account's job is not found rather than forbidden: ids reveal nothing.
        raise NotFound(f"no job {job_id}", input="job_id")
    return job


JobDep = Annotated[Job, Depends(get_owned_job)]
