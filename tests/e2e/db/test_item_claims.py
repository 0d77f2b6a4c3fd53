"""Claiming items and writing their outcomes on real Postgres: held items are not taken
twice, locked ones are skipped without waiting, and a late attempt writes nothing."""

from __future__ import annotations

import uuid
from datetime import timedelta
from typing import Any

from sqlalchemy import select, text, update

from tests.conftest import Stack


def _job_with_items(session_factory: Any, count: int) -> list[uuid.UUID]:
    """A job and its queued items, written directly: no dispatch, so no worker takes them."""
    from core import accounts as accounts_service
    from core.jobs import utcnow
    from db import jobs as jobs_repository
    from db.engine import unit_of_work
    from db.models import Job

    with unit_of_work(session_factory) as session:
        account = accounts_service.create_account(session, "claims", 100)
        job = Job(
            account_id=account.id, status="queued", api="native", prompt="x", json_mode=False,
            scene="general", provider="openai", item_count=count, credits_reserved=0,
            created_at=utcnow(),
        )  # fmt: skip
        ids = [uuid.uuid4() for _ in range(count)]
        jobs_repository.add_job(
            session,
            job,
            [
                {"id": item_id, "index": index, "status": "queued", "source_kind": "upload",
                 "source_name": f"{index}.png", "storage_key": f"{job.id}/{index:05d}"}
                for index, item_id in enumerate(ids)
            ],
        )  # fmt: skip
    return ids


def _claim(session_factory: Any, ids: list[uuid.UUID], lease: timedelta) -> dict[uuid.UUID, int]:
    from core.jobs import utcnow
    from db import jobs as jobs_repository
    from db.engine import unit_of_work

    now = utcnow()
    with unit_of_work(session_factory) as session:
        claimed = jobs_repository.claim_items(
            session, ids, now=now, lease_until=now + lease, max_attempts=3
        )
    return {item.id: item.attempts for item in claimed}


def test_held_items_are_not_claimed_again_and_a_late_attempt_writes_nothing(
    services: Stack, session_factory: Any
) -> None:
    from core.jobs import utcnow
    from db import jobs as jobs_repository
    from db.engine import unit_of_work
    from db.models import JobItem

    ids = _job_with_items(session_factory, 3)
    assert _claim(session_factory, ids, timedelta(minutes=10)) == dict.fromkeys(ids, 1)
    # A second delivery of the same message finds them held.
    assert _claim(session_factory, ids, timedelta(minutes=10)) == {}
    # The first holder of ids[0] stalls past its lease; another worker takes it over.
    with unit_of_work(session_factory) as session:
        session.execute(
            update(JobItem)
            .where(JobItem.id == ids[0])
            .values(lease_expires_at=utcnow() - timedelta(seconds=1))
        )
    assert _claim(session_factory, ids, timedelta(minutes=10)) == {ids[0]: 2}

    # The first worker writes all three outcomes: two are still its own, one is not.
    values = dict.fromkeys(jobs_repository.ITEM_END_COLUMNS) | {
        "status": "succeeded", "finished_at": utcnow(), "content": "first worker",
        "parsed": {"b": 1, "a": [None]}, "prompt_tokens": 3, "completion_tokens": 4,
    }  # fmt: skip
    with unit_of_work(session_factory) as session:
        written = jobs_repository.finish_attempts(
            session, [jobs_repository.ItemEnd(item_id, 1, values) for item_id in ids]
        )
    assert set(written) == set(ids[1:])
    with session_factory() as session:
        query = select(JobItem.id, JobItem.status, JobItem.parsed, JobItem.error_code)
        rows = {row[0]: tuple(row[1:]) for row in session.execute(query.where(JobItem.id.in_(ids)))}
    assert rows == {
        ids[0]: ("running", None, None),
        ids[1]: ("succeeded", {"b": 1, "a": [None]}, None),
        ids[2]: ("succeeded", {"b": 1, "a": [None]}, None),
    }
    # The parsed output keeps its keys in the model's order.
    with session_factory() as session:
        stored = session.execute(text("SELECT parsed::text FROM job_items WHERE id = :id"),
                                 {"id": ids[1]}).scalar_one()  # fmt: skip
    assert stored == '{"b": 1, "a": [null]}'


def test_a_claim_skips_items_another_transaction_holds_instead_of_waiting(
    services: Stack, session_factory: Any
) -> None:
    from db.models import JobItem

    ids = _job_with_items(session_factory, 2)
    with session_factory() as holder:
        # A cancel (or another claim) in progress holds the first item's row.
        holder.execute(select(JobItem.id).where(JobItem.id == ids[0]).with_for_update())
        assert _claim(session_factory, ids, timedelta(minutes=10)) == {ids[1]: 1}
        holder.rollback()
    assert _claim(session_factory, ids, timedelta(minutes=10)) == {ids[0]: 1}
