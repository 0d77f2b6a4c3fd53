"""Credits, the ledger, rate limits, idempotency and the job list, on Postgres and Redis."""

from __future__ import annotations

import base64
import os
import subprocess
import sys
import threading
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import httpx
import pytest
from sqlalchemy import func, select

from tests.conftest import Caller, Stack, wait_for_job
from tests.sample_images import png_for

# Once, with images in a folder: credits, keys and limits do not depend on where images are stored.
pytestmark = pytest.mark.one_store


def _one_image(index: int = 0) -> list[tuple[str, Any]]:
    return [("images", (f"{index}.png", png_for(index), "image/png"))]


def _ledger(caller: Caller) -> list[dict[str, Any]]:
    return list(caller.client.get("/v1/account/ledger", params={"limit": 500}).json()["entries"])


def _assert_books_balance(session_factory: Any) -> None:
    """For every account the balance is the ledger's sum, and for every job
    captured + refunded = reserved in the ledger."""
    from db.models import Account, CreditLedgerEntry, Job

    with session_factory() as session:
        for account in session.scalars(select(Account)):
            total = session.scalar(
                select(func.coalesce(func.sum(CreditLedgerEntry.delta), 0)).where(
                    CreditLedgerEntry.account_id == account.id
                )
            )
            assert account.credit_balance == total >= 0
        for job in session.scalars(select(Job).where(Job.finished_at.is_not(None))):
            rows = session.scalars(
                select(CreditLedgerEntry).where(CreditLedgerEntry.job_id == job.id)
            ).all()
            by_kind = {kind: sum(r.amount for r in rows if r.kind == kind) for kind in
                       ("reserve", "capture", "refund")}  # fmt: skip
            assert (
                by_kind["capture"] + by_kind["refund"] == by_kind["reserve"] == job.credits_reserved
            )


def test_account_shows_balance_price_and_limits(make_caller: Callable[..., Caller]) -> None:
    caller = make_caller("acme", credits=500)
    account = caller.client.get("/v1/account").json()
    assert account["name"] == "acme"
    assert account["balance"] == 500
    assert account["price"] == {"per_job": 10, "per_image": 1, "per_page": 1}
    assert account["limits"]["max_images_per_job"] == 3000
    assert account["limits"]["max_pages_per_document"] == 500
    assert [(e["kind"], e["amount"], e["balance_after"]) for e in _ledger(caller)] == [
        ("grant", 500, 500)
    ]


def test_ledger_pages_by_opaque_ids_that_tell_nothing_of_other_accounts(
    make_caller: Callable[..., Caller], session_factory: Any
) -> None:
    """Entry ids were the table's global counter: one account's next id showed how many
    entries every other account had made since."""
    other = make_caller("other", credits=10)
    for amount in range(5):
        _grant(session_factory, other.name, amount + 1)
    caller = make_caller("acme", credits=10)
    for amount in range(4):
        _grant(session_factory, caller.name, amount + 1)
    first = caller.client.get("/v1/account/ledger", params={"limit": 3}).json()
    second = caller.client.get(
        "/v1/account/ledger", params={"limit": 3, "cursor": first["next_cursor"]}
    ).json()
    entries = first["entries"] + second["entries"]
    assert [entry["amount"] for entry in entries] == [4, 3, 2, 1, 10]
    assert second["next_cursor"] is None
    for entry in entries:
        assert uuid.UUID(entry["id"]).version == 4
    # Another account's cursor is not one this account was given.
    other_page = other.client.get("/v1/account/ledger", params={"limit": 1}).json()
    refused = caller.client.get("/v1/account/ledger", params={"cursor": other_page["next_cursor"]})
    assert refused.status_code == 400
    assert refused.json()["input"] == "cursor"


def _grant(session_factory: Any, account_name: str, amount: int) -> None:
    from core import accounts as accounts_service
    from core import credits as credits_service
    from db.engine import unit_of_work

    with unit_of_work(session_factory) as session:
        account = accounts_service.get_account(session, account_name)
        credits_service.grant(session, account.id, amount)


def test_a_job_reserves_its_price_and_refunds_failed_images(
    make_caller: Callable[..., Caller], worker_process: Any, session_factory: Any
) -> None:
    caller = make_caller("acme", credits=100)
    files = [
        ("images", ("ok.png", png_for(0), "image/png")),
        ("images", ("bad.jpg", b"\xff\xd8\xff\xe0broken", "image/jpeg")),
        ("images", ("ok2.png", png_for(2), "image/png")),
    ]
    response = caller.client.post("/v1/jobs", files=files, data={"prompt": "x"})
    assert response.status_code == 202
    assert caller.client.get("/v1/account").json()["balance"] == 100 - 13
    job = wait_for_job(caller.client, response.json()["id"])
    assert job["credits"] == {"reserved": 13, "captured": 12, "refunded": 1}
    assert caller.client.get("/v1/account").json()["balance"] == 88
    kinds = [(e["kind"], e["amount"], e["delta"]) for e in _ledger(caller)]
    assert kinds == [
        ("capture", 12, 0),
        ("refund", 1, 1),
        ("reserve", 13, -13),
        ("grant", 100, 100),
    ]
    _assert_books_balance(session_factory)


def test_too_few_credits_is_402_with_balance_and_price_and_creates_nothing(
    make_caller: Callable[..., Caller], session_factory: Any, services: Stack
) -> None:
    from db.models import Job

    caller = make_caller("poor", credits=12)
    files = [("images", (f"{i}.png", png_for(i), "image/png")) for i in range(3)]
    response = caller.client.post("/v1/jobs", files=files, data={"prompt": "x"})
    assert response.status_code == 402
    body = response.json()
    assert body["code"] == "insufficient_credits"
    assert (body["balance"], body["price"]) == (12, 13)
    assert caller.client.get("/v1/account").json()["balance"] == 12
    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 0
    assert services.stored_files() == []


def test_50_racing_submissions_never_overdraw(
    make_caller: Callable[..., Caller], session_factory: Any
) -> None:
    # Each job costs 11; 220 credits pay for exactly 20 of the 50.
    caller = make_caller("racer", credits=220)
    barrier = threading.Barrier(50)

    def submit(index: int) -> int:
        with httpx.Client(base_url=str(caller.client.base_url), headers=caller.client.headers,
                          timeout=60) as client:  # fmt: skip
            barrier.wait()
            return client.post(
                "/v1/jobs", files=_one_image(index), data={"prompt": "x"}
            ).status_code

    with ThreadPoolExecutor(50) as pool:
        statuses = list(pool.map(submit, range(50)))
    assert statuses.count(202) == 20
    assert statuses.count(402) == 30
    assert caller.client.get("/v1/account").json()["balance"] == 0
    _assert_books_balance(session_factory)


def test_every_response_carries_rate_limit_fields_and_429_past_the_limit(
    make_caller: Callable[..., Caller], api_url: str, services: Stack
) -> None:
    caller = make_caller("limited")
    subprocess.run(
        [sys.executable, "-m", "cli", "accounts", "set-rate-limit", "limited", "3"],
        env={**os.environ, **services.env}, check=True, capture_output=True,
    )  # fmt: skip
    seen = []
    for _ in range(3):
        response = caller.client.get("/v1/jobs/00000000-0000-0000-0000-000000000000")
        assert response.status_code == 404
        seen.append(response.headers)
    assert [h["x-ratelimit-remaining"] for h in seen] == ["2", "1", "0"]
    assert seen[0]["x-ratelimit-limit"] == "3"
    assert int(seen[0]["x-ratelimit-reset"]) <= 60
    assert seen[0]["ratelimit-policy"] == '"default";q=3;w=60'
    assert seen[0]["ratelimit"].startswith('"default";r=2;t=')

    over = caller.client.get("/v1/account")
    assert over.status_code == 429
    assert over.json()["code"] == "rate_limited"
    assert 1 <= int(over.headers["retry-after"]) <= 60
    assert over.headers["x-ratelimit-remaining"] == "0"

    anonymous = httpx.get(f"{api_url}/v1/account")
    assert anonymous.status_code == 401
    assert "x-ratelimit-limit" in anonymous.headers


def test_same_idempotency_key_and_body_returns_the_same_job_and_charges_once(
    make_caller: Callable[..., Caller], worker_process: Any
) -> None:
    caller = make_caller("acme", credits=100)
    headers = {"Idempotency-Key": "nightly-2026-11-21"}
    first = caller.client.post(
        "/v1/jobs", files=_one_image(), data={"prompt": "x"}, headers=headers
    )
    again = caller.client.post(
        "/v1/jobs", files=_one_image(), data={"prompt": "x"}, headers=headers
    )
    assert first.status_code == again.status_code == 202
    assert first.json()["id"] == again.json()["id"]
    assert caller.client.get("/v1/account").json()["balance"] == 89
    assert len(caller.client.get("/v1/jobs").json()["jobs"]) == 1

    other = caller.client.post(
        "/v1/jobs", files=_one_image(1), data={"prompt": "x"}, headers=headers
    )
    assert other.status_code == 422
    assert other.json()["code"] == "idempotency_key_reused"
    assert caller.client.get("/v1/account").json()["balance"] == 89


@pytest.fixture
def slow_body() -> Iterator[tuple[threading.Event, Callable[[], Iterator[bytes]]]]:
    release = threading.Event()

    def body() -> Iterator[bytes]:
        yield b'{"input_method": "base64", "prompt": "x", "images": ['
        release.wait(30)
        yield b'"' + base64.b64encode(png_for(0)) + b'"]}'

    yield release, body
    release.set()


def test_a_request_in_flight_with_the_same_key_gets_409(
    make_caller: Callable[..., Caller],
    slow_body: tuple[threading.Event, Callable[[], Iterator[bytes]]],
    session_factory: Any,
) -> None:
    from db.models import IdempotencyKey

    caller = make_caller("acme", credits=100)
    release, body = slow_body
    headers = {"Idempotency-Key": "k1", "Content-Type": "application/json"}
    results: list[httpx.Response] = []
    first = threading.Thread(
        target=lambda: results.append(
            caller.client.post("/v1/jobs", content=body(), headers=headers)
        )
    )
    first.start()
    try:
        # Wait until the first request holds the key (it is still sending its body).
        deadline = time.monotonic() + 10
        while True:
            with session_factory() as session:
                if session.scalar(select(func.count()).select_from(IdempotencyKey)):
                    break
            assert time.monotonic() < deadline
            time.sleep(0.05)
        second = caller.client.post(
            "/v1/jobs", json={"input_method": "base64", "images": [], "prompt": "x"},
            headers={"Idempotency-Key": "k1"},
        )  # fmt: skip
        assert second.status_code == 409
        assert "still in progress" in second.json()["detail"]
    finally:
        release.set()
        first.join(30)
    assert results[0].status_code == 202


def test_revoked_keys_stop_working_and_granted_credits_show(
    make_caller: Callable[..., Caller], services: Stack, session_factory: Any
) -> None:
    from db.models import ApiKey

    caller = make_caller("acme", credits=10)
    env = {**os.environ, **services.env}
    granted = subprocess.run(
        [sys.executable, "-m", "cli", "credits", "grant", "acme", "40", "--note", "top-up"],
        env=env, capture_output=True, text=True, check=True,
    )  # fmt: skip
    assert "balance 50" in granted.stdout
    assert _ledger(caller)[0]["note"] == "top-up"
    with session_factory() as session:
        key_id = session.scalars(select(ApiKey.id)).one()
    subprocess.run([sys.executable, "-m", "cli", "keys", "revoke", str(key_id)],
                   env=env, check=True, capture_output=True)  # fmt: skip
    assert caller.client.get("/v1/account").status_code == 401


def test_job_list_filters_by_status_and_time_and_pages(
    make_caller: Callable[..., Caller], worker_process: Any
) -> None:
    caller = make_caller("acme", credits=1000)
    ids = []
    for index in range(5):
        response = caller.client.post("/v1/jobs", files=_one_image(index), data={"prompt": "x"})
        ids.append(response.json()["id"])
    for job_id in ids:
        wait_for_job(caller.client, job_id)
    cancelled_job = caller.client.post("/v1/jobs", files=_one_image(), data={"prompt": "x"})
    ids.append(cancelled_job.json()["id"])
    caller.client.delete(f"/v1/jobs/{ids[-1]}")

    page1 = caller.client.get("/v1/jobs", params={"limit": 4}).json()
    page2 = caller.client.get(
        "/v1/jobs", params={"limit": 4, "cursor": page1["next_cursor"]}
    ).json()
    assert [job["id"] for job in page1["jobs"] + page2["jobs"]] == ids[::-1]
    assert page2["next_cursor"] is None

    succeeded = caller.client.get("/v1/jobs", params={"status": "succeeded"}).json()["jobs"]
    assert {job["id"] for job in succeeded} == set(ids[:5])
    created = page1["jobs"][0]["created_at"]
    later = caller.client.get("/v1/jobs", params={"created_after": created}).json()["jobs"]
    assert [job["id"] for job in later] == [ids[-1]]
    assert (
        caller.client.get("/v1/jobs", params={"created_after": "2026-01-01T00:00:00"}).status_code
        == 400
    )

    other = make_caller("other")
    assert other.client.get("/v1/jobs").json()["jobs"] == []


def test_an_account_makes_lists_and_revokes_its_own_keys(
    make_caller: Callable[..., Caller], api_url: str
) -> None:
    owner, other = make_caller("owner"), make_caller("other")
    made = owner.client.post("/v1/account/keys")
    assert made.status_code == 201
    new = made.json()
    assert new["key"].startswith(new["prefix"])
    listed = owner.client.get("/v1/account/keys").json()["keys"]
    assert listed[0]["id"] == new["id"]
    assert all("key" not in key for key in listed)
    assert len(listed) == 2
    # The new key works; another account cannot revoke it.
    with httpx.Client(base_url=api_url, headers={"Authorization": f"Bearer {new['key']}"}) as c:
        assert c.get("/v1/account").json()["name"] == "owner"
        assert other.client.delete(f"/v1/account/keys/{new['id']}").status_code == 404
        # Revoked with the first key: it stops working at once.
        assert owner.client.delete(f"/v1/account/keys/{new['id']}").status_code == 204
        assert c.get("/v1/account").status_code == 401
    listed = owner.client.get("/v1/account/keys").json()["keys"]
    first = next(key for key in listed if key["id"] != new["id"])
    # The last working key stays: the account would lock itself out.
    refused = owner.client.delete(f"/v1/account/keys/{first['id']}")
    assert refused.status_code == 409
    assert "last working key" in refused.json()["detail"]
