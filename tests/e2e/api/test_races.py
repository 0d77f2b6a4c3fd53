"""Requests that race each other (a double click, two keys at once) on the real stack."""

from __future__ import annotations

import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from tests.conftest import Caller, wait_for_job
from tests.sample_images import png_for

# Once, with images in a folder: what races here is rows in Postgres, not stored images.
pytestmark = pytest.mark.one_store


def _at_once(
    count: int, request: Callable[[httpx.Client], httpx.Response], **client: Any
) -> list[int]:
    """Send ``count`` requests together (each thread its own client, released by a barrier):
    their status codes."""
    barrier = threading.Barrier(count)

    def send(_index: int) -> int:
        with httpx.Client(timeout=60, **client) as own:
            barrier.wait()
            return request(own).status_code

    with ThreadPoolExecutor(count) as pool:
        return list(pool.map(send, range(count)))


def _assert_books_balance(session_factory: Any, job_id: str) -> None:
    """The account's balance is its ledger's sum, and the job's reservation is all captured
    or refunded, in its own counters and in the ledger."""
    from db.models import Account, CreditLedgerEntry, Job

    with session_factory() as session:
        job = session.get(Job, job_id)
        account = session.get(Account, job.account_id)
        ledger_sum = session.scalar(
            select(func.coalesce(func.sum(CreditLedgerEntry.delta), 0)).where(
                CreditLedgerEntry.account_id == account.id
            )
        )
        assert account.credit_balance == ledger_sum >= 0
        assert job.credits_captured + job.credits_refunded == job.credits_reserved
        rows = session.scalars(
            select(CreditLedgerEntry).where(CreditLedgerEntry.job_id == job.id)
        ).all()
        by_kind = {kind: sum(r.amount for r in rows if r.kind == kind)
                   for kind in ("reserve", "capture", "refund")}  # fmt: skip
        assert by_kind["reserve"] == job.credits_reserved
        assert by_kind["capture"] + by_kind["refund"] == by_kind["reserve"]


def test_ten_retries_at_once_reopen_the_job_once_and_the_books_balance(
    make_caller: Callable[..., Caller],
    worker_process: Any,
    fake_model: Callable[..., Any],
    session_factory: Any,
) -> None:
    caller = make_caller("acme", credits=100)
    fake_model(error_rate=1.0)
    files = [("images", (f"{i}.png", png_for(i), "image/png")) for i in range(3)]
    job_id = caller.client.post("/v1/jobs", files=files, data={"prompt": "x"}).json()["id"]
    assert wait_for_job(caller.client, job_id)["status"] == "failed"

    fake_model(error_rate=0.0)
    statuses = _at_once(
        10,
        lambda client: client.post(f"/v1/jobs/{job_id}/retry"),
        base_url=str(caller.client.base_url),
        headers=caller.client.headers,
    )
    assert sorted(statuses) == [202] + [409] * 9, statuses

    job = wait_for_job(caller.client, job_id, timeout=30)
    assert job["status"] == "succeeded"
    counts = job["counts"]
    assert all(count >= 0 for count in counts.values())
    assert counts["succeeded"] + counts["failed"] + counts["cancelled"] == job["item_count"] == 3
    # The first run's 13 refunded but for the job's 10; the retry reserved its 3 images once.
    assert job["credits"] == {"reserved": 16, "captured": 13, "refunded": 3}
    assert caller.client.get("/v1/account").json()["balance"] == 100 - 13
    _assert_books_balance(session_factory, job_id)


def test_two_keys_revoking_each_other_at_once_leave_one_working(
    make_caller: Callable[..., Caller], api_url: str
) -> None:
    for round_ in range(10):
        first = make_caller(f"owner-{round_}")
        second = first.client.post("/v1/account/keys").json()
        first_id = next(
            key["id"]
            for key in first.client.get("/v1/account/keys").json()["keys"]
            if key["id"] != second["id"]
        )
        # Each key revokes the other, together.
        pairs = [(first.key, second["id"]), (second["key"], first_id)]
        barrier = threading.Barrier(2)

        def revoke(pair: tuple[str, str], barrier: threading.Barrier = barrier) -> int:
            key, target = pair
            with httpx.Client(
                base_url=api_url, headers={"Authorization": f"Bearer {key}"}, timeout=30
            ) as client:
                barrier.wait()
                return client.delete(f"/v1/account/keys/{target}").status_code

        with ThreadPoolExecutor(2) as pool:
            statuses = list(pool.map(revoke, pairs))
        # One wins; the other is refused (409), or finds its own key revoked already (401).
        assert statuses.count(204) == 1, (round_, statuses)
        assert set(statuses) - {204} <= {401, 409}, (round_, statuses)
        working = [
            key
            for key in (first.key, second["key"])
            if httpx.get(
                f"{api_url}/v1/account", headers={"Authorization": f"Bearer {key}"}, timeout=30
            ).status_code
            == 200
        ]
        assert len(working) == 1, round_
