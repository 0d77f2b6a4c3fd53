"""Queries on jobs and their items. Every statement that touches these tables is here."""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import Any, cast

from sqlalchemy import (
    BindParameter,
    Integer,
    Table,
    and_,
    bindparam,
    case,
    delete,
    func,
    insert,
    or_,
    select,
    text,
    tuple_,
    update,
)
from sqlalchemy.orm import Session, defer

from db.models import Account, ItemStatus, Job, JobItem, JobStatus, Lane

ACTIVE_JOB_STATUSES = (JobStatus.QUEUED, JobStatus.RUNNING)


def add_job(session: Session, job: Job, items: Sequence[dict[str, Any]]) -> None:
    session.add(job)
    session.flush()
    # A Core executemany of one cached statement (psycopg pipelines it): a multi-row
    # VALUES would be compiled afresh for every job, and ORM objects cost far more.
    session.connection().execute(
        insert(cast(Table, JobItem.__table__)), [dict(row, job_id=job.id) for row in items]
    )


def get_job(session: Session, job_id: uuid.UUID) -> Job | None:
    # Always as the database has it: the counter UPDATEs do not refresh loaded objects.
    return session.get(Job, job_id, populate_existing=True)


def get_account_job(session: Session, job_id: uuid.UUID, account_id: uuid.UUID) -> Job | None:
    return session.scalars(
        select(Job).where(Job.id == job_id, Job.account_id == account_id)
    ).one_or_none()


def list_account_jobs(
    session: Session,
    account_id: uuid.UUID,
    *,
    status: str | None,
    created_after: datetime | None,
    created_before: datetime | None,
    before: tuple[datetime, uuid.UUID] | None,
    limit: int,
) -> list[Job]:
    """Newest first; ``before`` is the (created_at, id) of the last job of the previous page.

    Summaries only: the prompt and metadata (up to 100,000 characters and 16 KB a job) are
    not loaded, and reading them raises."""
    query = (
        select(Job)
        .where(Job.account_id == account_id)
        .options(defer(Job.prompt, raiseload=True), defer(Job.user_metadata, raiseload=True))
    )
    if status is not None:
        query = query.where(Job.status == status)
    if created_after is not None:
        query = query.where(Job.created_at >= created_after)
    if created_before is not None:
        query = query.where(Job.created_at < created_before)
    if before is not None:
        query = query.where(tuple_(Job.created_at, Job.id) < tuple_(*before))
    return list(session.scalars(query.order_by(Job.created_at.desc(), Job.id.desc()).limit(limit)))


def count_items_by_status(session: Session, job_id: uuid.UUID) -> dict[str, int]:
    rows = session.execute(
        select(JobItem.status, func.count())
        .where(JobItem.job_id == job_id)
        .group_by(JobItem.status)
    ).all()
    return {status: count for status, count in rows}


def list_items(
    session: Session,
    job_id: uuid.UUID,
    *,
    status: str | None,
    after_index: int,
    limit: int,
) -> list[JobItem]:
    query = select(JobItem).where(JobItem.job_id == job_id, JobItem.index > after_index)
    if status is not None:
        query = query.where(JobItem.status == status)
    return list(session.scalars(query.order_by(JobItem.index).limit(limit)))


def count_live_queued(session: Session, job_id: uuid.UUID) -> int:
    return int(
        session.execute(
            select(func.count())
            .select_from(JobItem)
            .where(
                JobItem.job_id == job_id,
                JobItem.status == ItemStatus.QUEUED,
                JobItem.lane == Lane.LIVE,
            )
        ).scalar_one()
    )


def item_ids_after(
    session: Session, job_id: uuid.UUID, after_index: int, limit: int
) -> list[tuple[uuid.UUID, int]]:
    rows = session.execute(
        select(JobItem.id, JobItem.index)
        .where(
            JobItem.job_id == job_id,
            JobItem.index > after_index,
            JobItem.status == ItemStatus.QUEUED,
        )
        .order_by(JobItem.index)
        .limit(limit)
    ).all()
    return [(row[0], row[1]) for row in rows]


def mark_dispatched(session: Session, job_id: uuid.UUID, now: datetime) -> None:
    session.execute(update(Job).where(Job.id == job_id).values(dispatched_at=now))


@dataclass(frozen=True, slots=True)
class ClaimedItem:
    id: uuid.UUID
    job_id: uuid.UUID
    index: int
    attempts: int
    source_kind: str
    source_url: str | None
    storage_key: str | None
    media_type: str | None
    # A document's pages (None: an image, or a URL not fetched yet) and the item's price.
    page_count: int | None
    credits: int


# The hot-path UPDATEs skip the ORM's synchronisation of loaded objects: nothing they touch
# is held in the session, and it costs a worker a few milliseconds an image.
_CORE = {"synchronize_session": False}


# The hot path's statements, built once: building them per call costs more than running them.
_items = cast(Table, JobItem.__table__)
_jobs = cast(Table, Job.__table__)
_now = bindparam("now", type_=_items.c.lease_expires_at.type)
# What a claim returns of each item: ClaimedItem's fields.
_CLAIMED = (
    _items.c.id,
    _items.c.job_id,
    _items.c.index,
    _items.c.attempts,
    _items.c.source_kind,
    _items.c.source_url,
    _items.c.storage_key,
    _items.c.media_type,
    _items.c.page_count,
    _items.c.credits,
)
_CLAIM = (
    update(_items)
    .where(
        _items.c.id.in_(
            select(_items.c.id)
            .where(
                _items.c.id.in_(bindparam("ids", expanding=True)),
                _items.c.attempts < bindparam("max_attempts"),
                _items.c.lane == Lane.LIVE,
                or_(
                    _items.c.status == ItemStatus.QUEUED,
                    and_(_items.c.status == ItemStatus.RUNNING, _items.c.lease_expires_at < _now),
                ),
            )
            .with_for_update(skip_locked=True)
            .scalar_subquery()
        )
    )
    .values(
        status=ItemStatus.RUNNING,
        attempts=_items.c.attempts + 1,
        lease_expires_at=bindparam("lease_until", type_=_items.c.lease_expires_at.type),
        started_at=func.coalesce(_items.c.started_at, _now),
    )
    .returning(*_CLAIMED)
)


def claim_items(
    session: Session,
    item_ids: Sequence[uuid.UUID],
    *,
    now: datetime,
    lease_until: datetime,
    max_attempts: int,
) -> list[ClaimedItem]:
    """Take the items that are queued, or whose previous holder's lease ran out.

    Items that are done, cancelled, out of attempts, or locked by another transaction at
    this moment (a claim of the same message delivered twice, a cancel) are left out. The
    rows are locked with SKIP LOCKED, so two claims or a claim and a cancel never wait on
    each other, let alone deadlock; the UPDATE makes the check and the take one step.
    """
    rows = session.connection().execute(
        _CLAIM,
        {"ids": list(item_ids), "max_attempts": max_attempts, "now": now,
         "lease_until": lease_until},
    )  # fmt: skip
    return sorted((ClaimedItem(*row) for row in rows), key=lambda item: item.index)


# The fair claim, step 1: the jobs of these providers that have queued images, with what
# the order needs. Running counts come from the running items (at most the model threads
# of every worker, a few hundred rows, found by their status index), so no counter has to
# be kept in step with every outcome. Dialect-neutral SQL: Postgres and SQLite.
_CLAIM_CANDIDATES = text("""
WITH running AS (
    SELECT i.job_id AS job_id, count(*) AS n
    FROM job_items i WHERE i.status = 'running' AND i.lane = 'live' GROUP BY i.job_id
), account_running AS (
    SELECT j.account_id AS account_id, sum(r.n) AS n
    FROM running r JOIN jobs j ON j.id = r.job_id GROUP BY j.account_id
)
SELECT j.id, j.account_id, j.priority, j.created_at,
       COALESCE(r.n, 0) AS job_running, COALESCE(ar.n, 0) AS account_running,
       a.max_in_flight
FROM jobs j
JOIN accounts a ON a.id = j.account_id
LEFT JOIN running r ON r.job_id = j.id
LEFT JOIN account_running ar ON ar.account_id = j.account_id
WHERE j.status IN ('queued', 'running') AND j.provider IN :providers
  AND EXISTS (SELECT 1 FROM job_items q
              WHERE q.job_id = j.id AND q.status = 'queued' AND q.lane = 'live')
""").bindparams(bindparam("providers", expanding=True))


@dataclass(frozen=True, slots=True)
class ClaimCandidate:
    """A job with queued images, and what the fair order needs of it."""

    job_id: uuid.UUID
    account_id: uuid.UUID
    priority: str
    created_at: datetime
    job_running: int
    account_running: int
    max_in_flight: int | None


def claim_candidates(session: Session, providers: Sequence[str]) -> list[ClaimCandidate]:
    rows = session.execute(_CLAIM_CANDIDATES, {"providers": list(providers)})
    return [
        ClaimCandidate(
            job_id=row[0] if isinstance(row[0], uuid.UUID) else uuid.UUID(str(row[0])),
            account_id=row[1] if isinstance(row[1], uuid.UUID) else uuid.UUID(str(row[1])),
            priority=row[2],
            created_at=row[3] if isinstance(row[3], datetime) else datetime.fromisoformat(row[3]),
            job_running=int(row[4]),
            account_running=int(row[5]),
            max_in_flight=row[6],
        )
        for row in rows
    ]


# The fair claim, step 2: the first queued images of one job, by index (the index on
# job_id, status, index serves it), locked, then taken as claim_items takes them. Two
# statements: in one (UPDATE ... WHERE id IN (SELECT ... LIMIT n FOR UPDATE SKIP LOCKED))
# Postgres may run the subquery more than once, each time skipping the rows the last run
# locked, and claim more than n.
_FIRST_QUEUED = (
    select(_items.c.id)
    .where(
        _items.c.job_id == bindparam("claim_job_id"),
        _items.c.status == ItemStatus.QUEUED,
        _items.c.lane == Lane.LIVE,
        _items.c.attempts < bindparam("max_attempts"),
    )
    .order_by(_items.c.index)
    .limit(bindparam("claim_count"))
    .with_for_update(skip_locked=True)
)


def lock_account_running(session: Session, account_id: uuid.UUID) -> int:
    """Lock the account's row for this transaction and count its images in flight: claims
    for a capped account take turns, so two workers cannot both fill its last slot."""
    session.execute(select(Account.id).where(Account.id == account_id).with_for_update())
    return int(
        session.execute(
            select(func.count())
            .select_from(JobItem)
            .join(Job, Job.id == JobItem.job_id)
            .where(
                Job.account_id == account_id,
                JobItem.status == ItemStatus.RUNNING,
                JobItem.lane == Lane.LIVE,
            )
        ).scalar_one()
    )


def claim_from_job(
    session: Session,
    job_id: uuid.UUID,
    count: int,
    *,
    now: datetime,
    lease_until: datetime,
    max_attempts: int,
) -> list[ClaimedItem]:
    """Claim up to ``count`` of the job's queued images, first by index; rows another
    transaction holds are skipped (SKIP LOCKED), never waited for."""
    ids = list(
        session.connection()
        .execute(
            _FIRST_QUEUED,
            {"claim_job_id": job_id, "claim_count": count, "max_attempts": max_attempts},
        )
        .scalars()
    )
    if not ids:
        return []
    return claim_items(session, ids, now=now, lease_until=lease_until, max_attempts=max_attempts)


def images_ahead(session: Session, job: Job, priority_ranks: dict[str, int]) -> int:
    """Queued images of the job's provider that run before the job's next one: those of
    jobs with a higher priority, and of the same account's older jobs of its priority."""
    rank = case(priority_ranks, value=Job.priority)
    mine = priority_ranks[job.priority]
    return int(
        session.execute(
            select(func.count())
            .select_from(JobItem)
            .join(Job, Job.id == JobItem.job_id)
            .where(
                JobItem.status == ItemStatus.QUEUED,
                JobItem.lane == Lane.LIVE,
                Job.provider == job.provider,
                Job.status.in_(ACTIVE_JOB_STATUSES),
                Job.id != job.id,
                or_(
                    rank < mine,
                    and_(
                        rank == mine,
                        Job.account_id == job.account_id,
                        Job.created_at < job.created_at,
                    ),
                ),
            )
        ).scalar_one()
    )


def get_item(session: Session, item_id: uuid.UUID) -> JobItem | None:
    return session.get(JobItem, item_id)


def finish_item(
    session: Session,
    item_id: uuid.UUID,
    *,
    from_statuses: Sequence[str],
    attempt: int | None,
    values: dict[str, Any],
) -> bool:
    """Move an item to its end state; False when someone else already ended it."""
    query = (
        update(JobItem)
        .execution_options(**_CORE)
        .where(JobItem.id == item_id, JobItem.status.in_(from_statuses))
    )
    if attempt is not None:
        # Only the holder of the latest attempt may write the result.
        query = query.where(JobItem.attempts == attempt)
    result = session.execute(query.values(lease_expires_at=None, **values))
    return bool(result.rowcount)  # type: ignore[attr-defined]


@dataclass(frozen=True, slots=True)
class ItemEnd:
    """The end of one attempt at an item: the columns to write (ITEM_END_COLUMNS)."""

    item_id: uuid.UUID
    attempt: int
    values: dict[str, Any]


# Postgres: every outcome in one statement, the rows passed as one JSON document; RETURNING
# says which attempts were still current. (json, not jsonb: the parsed output keeps its
# key order; a JSON null becomes SQL NULL.)
_FINISH_ATTEMPTS_FROM_JSON = text("""
    UPDATE job_items AS i SET
        lease_expires_at = NULL, status = v.status, finished_at = v.finished_at,
        content = v.content, parsed = v.parsed, prompt_tokens = v.prompt_tokens,
        completion_tokens = v.completion_tokens, error_code = v.error_code,
        error_message = v.error_message, model_ms = v.model_ms, evidence = v.evidence,
        normalized = v.normalized, pages = v.pages
    FROM json_to_recordset(CAST(:rows AS json)) AS v(
        id uuid, attempt integer, status text, finished_at timestamptz, content text,
        parsed json, prompt_tokens integer, completion_tokens integer, error_code text,
        error_message text, model_ms integer, evidence json, normalized json, pages json)
    WHERE i.id = v.id AND i.attempts = v.attempt AND i.status = 'running'
    RETURNING i.id
""")
ITEM_END_COLUMNS = (
    "status", "finished_at", "content", "parsed", "prompt_tokens", "completion_tokens",
    "error_code", "error_message", "model_ms", "evidence", "normalized", "pages",
)  # fmt: skip


def _json_value(value: Any) -> Any:
    return value.isoformat() if isinstance(value, datetime) else value


def finish_attempts(session: Session, ends: Sequence[ItemEnd]) -> list[uuid.UUID]:
    """Write the outcomes of running attempts; returns the items whose attempt was current.

    An item that another worker re-claimed after this attempt's lease ran out is left to
    that worker.
    """
    if not ends:
        return []
    if session.get_bind().dialect.name == "postgresql":
        rows = json.dumps(
            [
                {"id": str(end.item_id), "attempt": end.attempt,
                 **{column: _json_value(end.values[column]) for column in ITEM_END_COLUMNS}}
                for end in ends
            ]
        )  # fmt: skip
        return list(
            session.connection().execute(_FINISH_ATTEMPTS_FROM_JSON, {"rows": rows}).scalars()
        )
    return [
        end.item_id
        for end in ends
        if finish_item(
            session,
            end.item_id,
            from_statuses=[ItemStatus.RUNNING],
            attempt=end.attempt,
            values=end.values,
        )
    ]


@dataclass(frozen=True, slots=True)
class JobProgress:
    finished: int
    item_count: int
    status: str
    account_id: uuid.UUID
    # Credits this change refunded (failed or cancelled images).
    refunded: int

    @property
    def complete(self) -> bool:
        return self.finished >= self.item_count


def _count(name: str) -> BindParameter[int]:
    return bindparam(name, type_=Integer())


_ADD_TO_COUNTERS = (
    update(_jobs)
    .where(_jobs.c.id == bindparam("job_id", type_=_jobs.c.id.type))
    .values(
        items_succeeded=_jobs.c.items_succeeded + _count("succeeded"),
        items_failed=_jobs.c.items_failed + _count("failed"),
        items_cancelled=_jobs.c.items_cancelled + _count("cancelled"),
        prompt_tokens=_jobs.c.prompt_tokens + _count("prompt_tokens"),
        completion_tokens=_jobs.c.completion_tokens + _count("completion_tokens"),
        credits_refunded=_jobs.c.credits_refunded + _count("refund"),
    )
    .returning(
        _jobs.c.items_succeeded + _jobs.c.items_failed + _jobs.c.items_cancelled,
        _jobs.c.item_count,
        _jobs.c.status,
        _jobs.c.account_id,
    )
)


def add_to_job_counters(
    session: Session,
    job_id: uuid.UUID,
    *,
    succeeded: int = 0,
    failed: int = 0,
    cancelled: int = 0,
    prompt_tokens: int = 0,
    completion_tokens: int = 0,
    refund: int = 0,
) -> JobProgress:
    """Add to the counters and read them back in the same statement (the fan-in).

    ``refund``: the credits of the failed and cancelled items among them (each item's own
    price: an image's, or a document's pages), counted as refunded here too.
    """
    counts = {"job_id": job_id, "succeeded": succeeded, "failed": failed, "cancelled": cancelled,
              "prompt_tokens": prompt_tokens, "completion_tokens": completion_tokens,
              "refund": refund}  # fmt: skip
    row = session.connection().execute(_ADD_TO_COUNTERS, counts).one()
    return JobProgress(
        finished=row[0], item_count=row[1], status=row[2], account_id=row[3], refunded=refund
    )


def price_document(
    session: Session, item_id: uuid.UUID, attempt: int, *, page_count: int, credits: int
) -> bool:
    """A fetched URL turned out to be a document: its pages and price, and the job's
    reservation grown by the difference. False when the attempt is no longer current."""
    item = session.execute(
        update(JobItem)
        .where(JobItem.id == item_id, JobItem.attempts == attempt,
               JobItem.status == ItemStatus.RUNNING)
        .values(page_count=page_count, credits=credits)
        .returning(JobItem.job_id)
        .execution_options(**_CORE)
    ).first()  # fmt: skip
    return item is not None


def add_reserved(session: Session, job_id: uuid.UUID, extra: int) -> None:
    session.execute(
        update(Job)
        .where(Job.id == job_id)
        .values(credits_reserved=Job.credits_reserved + extra)
        .execution_options(**_CORE)
    )


def credits_of(session: Session, item_ids: Sequence[uuid.UUID]) -> int:
    """What these items cost together (their prices, as set when they were accepted)."""
    if not item_ids:
        return 0
    total = session.scalar(select(func.sum(JobItem.credits)).where(JobItem.id.in_(item_ids)))
    return int(total or 0)


def mark_job_running(session: Session, job_id: uuid.UUID, now: datetime) -> None:
    session.execute(
        update(Job)
        .execution_options(**_CORE)
        .where(Job.id == job_id, Job.status == JobStatus.QUEUED)
        .values(status=JobStatus.RUNNING, started_at=now)
    )


def cancel_queued_items(
    session: Session, job_id: uuid.UUID, now: datetime
) -> list[tuple[uuid.UUID, str | None, int]]:
    """Cancel the job's queued items: each one's id, storage key and credits."""
    rows = session.execute(
        update(JobItem)
        .where(JobItem.job_id == job_id, JobItem.status == ItemStatus.QUEUED)
        .values(
            status=ItemStatus.CANCELLED,
            finished_at=now,
            error_code="cancelled",
            error_message="the job was cancelled before this image was sent to the model",
        )
        .returning(JobItem.id, JobItem.storage_key, JobItem.credits)
    ).all()
    return [(row[0], row[1], row[2]) for row in rows]


def storage_keys_of(session: Session, job_id: uuid.UUID, statuses: Sequence[str]) -> list[str]:
    return list(
        session.scalars(
            select(JobItem.storage_key).where(
                JobItem.job_id == job_id,
                JobItem.status.in_(statuses),
                JobItem.storage_key.is_not(None),
            )
        )
    )


def set_job_cancelled(session: Session, job_id: uuid.UUID, now: datetime) -> bool:
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.status.in_(ACTIVE_JOB_STATUSES))
        .values(status=JobStatus.CANCELLED, cancelled_at=now)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def set_job_finished(
    session: Session, job_id: uuid.UUID, *, status: str, now: datetime, values: dict[str, Any]
) -> bool:
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.finished_at.is_(None))
        .values(status=status, finished_at=now, **values)
    )
    return bool(result.rowcount)  # type: ignore[attr-defined]


def list_finished_items(
    session: Session, job_id: uuid.UUID, *, after_index: int, limit: int
) -> list[JobItem]:
    """A page of finished items in input order: those after ``after_index`` (keyset)."""
    return list(
        session.scalars(
            select(JobItem)
            .where(
                JobItem.job_id == job_id,
                JobItem.index > after_index,
                JobItem.status.in_((ItemStatus.SUCCEEDED, ItemStatus.FAILED, ItemStatus.CANCELLED)),
            )
            .order_by(JobItem.index)
            .limit(limit)
        )
    )


def iter_finished_items(
    session: Session, job_id: uuid.UUID, *, batch: int = 200
) -> Iterator[JobItem]:
    """Finished items in input order, read in batches so a 3000-item job streams."""
    after = -1
    while True:
        rows = list_finished_items(session, job_id, after_index=after, limit=batch)
        if not rows:
            return
        yield from rows
        after = rows[-1].index
        session.expunge_all()


def items_with_expired_lease(
    session: Session, now: datetime, limit: int
) -> list[tuple[uuid.UUID, str]]:
    """Running items whose worker stopped renewing them, with their job's provider."""
    rows = session.execute(
        select(JobItem.id, Job.provider)
        .join(Job, Job.id == JobItem.job_id)
        .where(JobItem.status == ItemStatus.RUNNING, JobItem.lease_expires_at < now)
        .limit(limit)
    ).all()
    return [(row[0], row[1]) for row in rows]


def undispatched_jobs(session: Session, created_before: datetime) -> list[uuid.UUID]:
    return list(
        session.scalars(
            select(Job.id).where(
                Job.dispatched_at.is_(None),
                Job.status.in_(ACTIVE_JOB_STATUSES),
                Job.created_at < created_before,
            )
        )
    )


def jobs_with_queued_items(
    session: Session, dispatched_before: datetime
) -> list[tuple[uuid.UUID, str]]:
    """Active jobs dispatched a while ago that still have queued items, with their provider."""
    rows = session.execute(
        select(Job.id, Job.provider).where(
            Job.status.in_(ACTIVE_JOB_STATUSES),
            Job.dispatched_at < dispatched_before,
            select(JobItem.id)
            .where(JobItem.job_id == Job.id, JobItem.status == ItemStatus.QUEUED)
            .exists(),
        )
    ).all()
    return [(row[0], row[1]) for row in rows]


def unfinalized_complete_jobs(session: Session) -> list[uuid.UUID]:
    return list(
        session.scalars(
            select(Job.id).where(
                Job.finished_at.is_(None),
                Job.items_succeeded + Job.items_failed + Job.items_cancelled >= Job.item_count,
            )
        )
    )


def live_storage_keys(session: Session, job_ids: Sequence[uuid.UUID]) -> set[str]:
    """Keys of items that may still need their file: queued or running."""
    return set(
        session.scalars(
            select(JobItem.storage_key).where(
                JobItem.job_id.in_(job_ids),
                JobItem.status.in_((ItemStatus.QUEUED, ItemStatus.RUNNING)),
                JobItem.storage_key.is_not(None),
            )
        )
    )


def retryable_failed_items(
    session: Session, job_id: uuid.UUID, codes: Sequence[str]
) -> list[JobItem]:
    return list(
        session.scalars(
            select(JobItem)
            .where(
                JobItem.job_id == job_id,
                JobItem.status == ItemStatus.FAILED,
                JobItem.error_code.in_(codes),
            )
            .order_by(JobItem.index)
        )
    )


_ANSWER_COLUMNS = (
    "content", "parsed", "prompt_tokens", "completion_tokens", "model_ms", "normalized", "pages",
)  # fmt: skip


def update_current_attempt(
    session: Session,
    item_id: uuid.UUID,
    attempt: int,
    values: dict[str, Any],
    *,
    lane: Lane | None = None,
) -> bool:
    """Update an item only while it is running under ``attempt`` (and, given ``lane``, in
    that lane); True when it was."""
    query = update(JobItem).where(
        JobItem.id == item_id,
        JobItem.status == ItemStatus.RUNNING,
        JobItem.attempts == attempt,
    )
    if lane is not None:
        query = query.where(JobItem.lane == lane)
    found = session.execute(query.values(**values).returning(JobItem.id)).scalar_one_or_none()
    return found is not None


def store_answers(
    session: Session,
    answers: Sequence[tuple[uuid.UUID, int, dict[str, Any]]],
    *,
    lease_until: datetime,
) -> list[tuple[uuid.UUID, int]]:
    """Write a model's answers on running attempts without ending them, with a new lease;
    returns the (item, attempt) pairs that were still current."""
    return [
        (item_id, attempt)
        for item_id, attempt, values in answers
        if update_current_attempt(
            session, item_id, attempt,
            {"lease_expires_at": lease_until, **{c: values[c] for c in _ANSWER_COLUMNS}},
        )
    ]  # fmt: skip


def release_attempts(
    session: Session, attempts: Sequence[tuple[uuid.UUID, int, str]]
) -> list[uuid.UUID]:
    """Running attempts back to queued, their attempt uncounted, with the reason kept as
    its error (internal_error) until the item ends. Only the current attempt's holder can
    do this."""
    return [
        item_id
        for item_id, attempt, reason in attempts
        if update_current_attempt(
            session, item_id, attempt,
            {"status": ItemStatus.QUEUED, "attempts": JobItem.attempts - 1,
             "lease_expires_at": None, "error_code": "internal_error", "error_message": reason},
        )
    ]  # fmt: skip


def requeue_failed_items(session: Session, item_ids: Sequence[uuid.UUID]) -> set[uuid.UUID]:
    """Put those of the items that are still failed back in the queue, afresh; returns them.

    Their rows are locked first, in index order: two retries at once (a double click) then
    take turns, and the second, once the first commits, finds them no longer failed and
    requeues (and prices) nothing.
    """
    if not item_ids:
        return set()
    failed = list(
        session.scalars(
            select(JobItem.id)
            .where(JobItem.id.in_(item_ids), JobItem.status == ItemStatus.FAILED)
            .order_by(JobItem.index)
            .with_for_update()
        )
    )
    if not failed:
        return set()
    session.execute(
        update(JobItem)
        .where(JobItem.id.in_(failed))
        .values(
            status=ItemStatus.QUEUED, attempts=0, lease_expires_at=None, content=None,
            parsed=None, evidence=None, normalized=None, prompt_tokens=0, completion_tokens=0,
            error_code=None, error_message=None, started_at=None, finished_at=None, model_ms=None,
        )
    )  # fmt: skip
    return set(failed)


def reopen_job(session: Session, job_id: uuid.UUID, *, retried: int, extra_credits: int) -> bool:
    """Reopen an ended job for ``retried`` of its failed images; False when it has not
    ended (another retry reopened it first): then nothing changes."""
    result = session.execute(
        update(Job)
        .where(Job.id == job_id, Job.finished_at.is_not(None))
        .values(
            # Running at once: workers that ran the job before do not mark it again.
            status=JobStatus.RUNNING, finished_at=None, results_expire_at=None,
            dispatched_at=None,
            items_failed=Job.items_failed - retried,
            credits_reserved=Job.credits_reserved + extra_credits,
        )
    )  # fmt: skip
    return bool(result.rowcount)  # type: ignore[attr-defined]


def cancel_unfinished_items(session: Session, job_id: uuid.UUID, now: datetime) -> tuple[int, int]:
    """Cancel queued and running items (running ones' results will be dropped): how many,
    and their credits together."""
    credits = session.execute(
        update(JobItem)
        .where(
            JobItem.job_id == job_id,
            JobItem.status.in_((ItemStatus.QUEUED, ItemStatus.RUNNING)),
        )
        .values(status=ItemStatus.CANCELLED, finished_at=now, lease_expires_at=None,
                error_code="cancelled", error_message="the job was purged")
        .returning(JobItem.credits)
    ).scalars().all()  # fmt: skip
    return len(credits), sum(credits)


def delete_items(session: Session, job_id: uuid.UUID) -> None:
    session.execute(delete(JobItem).where(JobItem.job_id == job_id))


def mark_purged(session: Session, job_id: uuid.UUID, now: datetime) -> None:
    session.execute(update(Job).where(Job.id == job_id).values(purged_at=now))


def jobs_past_retention(session: Session, now: datetime, limit: int) -> list[uuid.UUID]:
    """Ids of ended jobs whose results TTL ran out and that still hold results, soonest
    expired first (by the partial index ix_jobs_results_expire_at)."""
    return list(
        session.scalars(
            select(Job.id)
            .where(Job.results_expire_at < now, Job.purged_at.is_(None))
            .order_by(Job.results_expire_at)
            .limit(limit)
        )
    )


def kept_failed_keys(
    session: Session, job_ids: Sequence[uuid.UUID], codes: Sequence[str], finished_after: datetime
) -> set[str]:
    """Files kept for /retry: retryable failures of jobs that ended recently."""
    return set(
        session.scalars(
            select(JobItem.storage_key)
            .join(Job, Job.id == JobItem.job_id)
            .where(
                JobItem.job_id.in_(job_ids),
                JobItem.status == ItemStatus.FAILED,
                JobItem.error_code.in_(codes),
                JobItem.storage_key.is_not(None),
                Job.purged_at.is_(None),
                or_(Job.finished_at.is_(None), Job.finished_at > finished_after),
            )
        )
    )
