"""Retry, purge, retention and the upkeep sweep, on the real stack."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterator
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import insert, select, update

from tests.conftest import Caller, Stack, wait_for_job
from tests.sample_images import png_for


@pytest.fixture
def runtime(settings: Any) -> Iterator[Any]:
    """What a worker process holds, built here to run the upkeep functions directly."""
    from worker.runtime import build_runtime

    built = build_runtime(settings)
    yield built
    built.close()


def _put(store: Any, key: str, data: bytes) -> None:
    upload = store.open_for_write(key)
    upload.write(data)
    upload.finish().result()


def _submit(caller: Caller, count: int, **data: str) -> str:
    files = [("images", (f"{i}.png", png_for(i), "image/png")) for i in range(count)]
    response = caller.client.post("/v1/jobs", files=files, data={"prompt": "x", **data})
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def test_retry_runs_failed_images_again_charging_only_for_them(
    make_caller: Callable[..., Caller],
    worker_process: Any,
    fake_model: Callable[..., Any],
    services: Stack,
) -> None:
    caller = make_caller("acme", credits=100)
    fake_model(error_rate=1.0)
    job_id = _submit(caller, 3)
    job = wait_for_job(caller.client, job_id)
    assert job["status"] == "failed"
    assert caller.client.get("/v1/account").json()["balance"] == 100 - 10
    # Files of images that failed for a passing reason stay, so they can run again.
    assert len(services.stored_files()) == 3

    fake_model(error_rate=0.0)
    retried = caller.client.post(f"/v1/jobs/{job_id}/retry")
    assert retried.status_code == 202, retried.text
    assert retried.json()["status"] == "running"
    job = wait_for_job(caller.client, job_id)
    assert job["status"] == "succeeded"
    assert job["counts"]["succeeded"] == 3
    assert job["credits"] == {"reserved": 16, "captured": 13, "refunded": 3}
    assert caller.client.get("/v1/account").json()["balance"] == 100 - 13
    assert services.stored_files() == []
    assert caller.client.post(f"/v1/jobs/{job_id}/retry").status_code == 409


def test_retry_leaves_images_that_are_themselves_broken(caller: Caller) -> None:
    files = [("images", ("bad.jpg", b"\xff\xd8\xff\xe0broken", "image/jpeg"))]
    job_id = caller.client.post("/v1/jobs", files=files, data={"prompt": "x"}).json()["id"]
    wait_for_job(caller.client, job_id)
    response = caller.client.post(f"/v1/jobs/{job_id}/retry")
    assert response.status_code == 409
    assert "corrupt_image" in response.json()["detail"]


def test_purge_removes_results_and_images_at_once(
    caller: Caller, services: Stack, fake_model: Callable[..., Any]
) -> None:
    finished = _submit(caller, 2)
    wait_for_job(caller.client, finished)
    response = caller.client.delete(f"/v1/jobs/{finished}", params={"purge": "true"})
    assert response.status_code == 200
    assert response.json()["purged_at"] is not None
    for path in ("items", "results"):
        gone = caller.client.get(f"/v1/jobs/{finished}/{path}")
        assert gone.status_code == 410
        assert gone.json()["code"] == "gone"

    fake_model(latency=2)
    running = _submit(caller, 20)
    time.sleep(0.5)
    purged = caller.client.delete(f"/v1/jobs/{running}", params={"purge": "true"}).json()
    assert purged["status"] == "cancelled"
    assert purged["finished_at"] is not None
    assert (
        purged["credits"]["captured"] + purged["credits"]["refunded"]
        == purged["credits"]["reserved"]
    )
    deadline = time.monotonic() + 10
    while services.stored_files() and time.monotonic() < deadline:
        time.sleep(0.1)
    assert services.stored_files() == []


def test_results_are_purged_when_their_ttl_runs_out(
    caller: Caller, runtime: Any, session_factory: Any
) -> None:
    from db.models import Job

    kept = _submit(caller, 1)
    short = _submit(caller, 1, results_ttl="60")
    for job_id in (kept, short):
        wait_for_job(caller.client, job_id)
    assert caller.client.get(f"/v1/jobs/{short}").json()["results_expire_at"] is not None
    # The clock moves on: the short job ended two minutes ago.
    with session_factory() as session:
        job = session.get(Job, uuid.UUID(short))
        session.execute(
            update(Job)
            .where(Job.id == job.id)
            .values(
                finished_at=job.finished_at - timedelta(minutes=2),
                results_expire_at=job.results_expire_at - timedelta(minutes=2),
            )
        )
        session.commit()
    from worker import maintenance

    report = maintenance.sweep(runtime)
    assert report.jobs_purged == 1
    assert caller.client.get(f"/v1/jobs/{short}/results").status_code == 410
    assert caller.client.get(f"/v1/jobs/{short}").json()["purged_at"] is not None
    assert caller.client.get(f"/v1/jobs/{kept}/results").status_code == 200
    too_short = caller.client.post(
        "/v1/jobs",
        files=[("images", ("a.png", png_for(0), "image/png"))],
        data={"prompt": "x", "results_ttl": "10"},
    )
    assert too_short.status_code == 400


def test_the_sweep_purges_every_expired_job_and_only_those(
    runtime: Any, session_factory: Any
) -> None:
    """Fifty jobs whose results expired, ended after a thousand that keep theirs for 90
    days: one sweep purges exactly the fifty."""
    from core import accounts as accounts_service
    from core import jobs as jobs_service
    from db.engine import unit_of_work
    from db.models import Job

    with unit_of_work(session_factory) as session:
        account_id = accounts_service.create_account(session, "acme").id

    def add_jobs(count: int, ttl_seconds: int, **values: Any) -> set[uuid.UUID]:
        ids = [uuid.uuid4() for _ in range(count)]
        rows = [
            {"id": job_id, "account_id": account_id, "status": "running", "prompt": "x",
             "provider": "openai", "item_count": 0, "results_ttl_seconds": ttl_seconds}
            | values
            for job_id in ids
        ]  # fmt: skip
        with unit_of_work(session_factory) as session:
            session.execute(insert(Job), rows)
        return set(ids)

    def end_jobs(count: int, ttl_seconds: int) -> set[uuid.UUID]:
        ids = add_jobs(count, ttl_seconds)
        with unit_of_work(session_factory) as session:
            for job_id in ids:
                jobs_service.finalize_job(session, runtime.settings, job_id)
        return ids

    # Ended yesterday, kept 90 days: written in one statement, as finalize_job would.
    yesterday = jobs_service.utcnow() - timedelta(days=1)
    long_lived = add_jobs(
        1000, 90 * 24 * 3600, status="succeeded", finished_at=yesterday,
        results_expire_at=yesterday + timedelta(days=90),
    )  # fmt: skip
    expired = end_jobs(50, 0)
    recent = end_jobs(20, 3600)
    from worker import maintenance

    assert maintenance.sweep(runtime).jobs_purged == 50
    with session_factory() as session:
        purged = set(session.scalars(select(Job.id).where(Job.purged_at.is_not(None))))
    assert purged == expired
    assert not purged & (long_lived | recent)
    assert maintenance.sweep(runtime).jobs_purged == 0


def test_sweep_deletes_old_orphan_files_and_keeps_new_ones(
    runtime: Any, services: Stack, worker_process: Any
) -> None:
    from worker import maintenance

    old_key, new_key = f"{uuid.uuid4()}/00000", f"{uuid.uuid4()}/00000"
    _put(runtime.store, old_key, b"leftover")
    # Object stores keep the time of writing to the second: the old one is 2 s older.
    time.sleep(2.1)
    _put(runtime.store, new_key, b"leftover")
    assert maintenance.sweep(runtime, orphan_age=timedelta(seconds=1.5)).files_deleted == 1
    assert services.stored_files() == [new_key]


def test_an_item_whose_worker_vanished_runs_again_after_its_lease(
    caller: Caller, runtime: Any, session_factory: Any
) -> None:
    from core import jobs as jobs_service
    from db.models import Job, JobItem

    job_id = _submit(caller, 1)
    wait_for_job(caller.client, job_id)
    # Make it look as if a worker took the item and died: running, lease run out, and its
    # image still in storage.
    expired = jobs_service.utcnow() - timedelta(seconds=1)
    _put(runtime.store, f"{job_id}/00000", png_for(0))
    with session_factory() as session:
        session.execute(
            update(JobItem)
            .where(JobItem.job_id == uuid.UUID(job_id))
            .values(status="running", content=None, lease_expires_at=expired)
        )
        session.execute(
            update(Job).where(Job.id == uuid.UUID(job_id)).values(
                status="running", finished_at=None, items_succeeded=0,
            )
        )  # fmt: skip
        session.commit()
    from worker import maintenance

    assert maintenance.sweep(runtime).leases_reclaimed == 1
    job = wait_for_job(caller.client, job_id)
    assert job["status"] == "succeeded"
    item = caller.client.get(f"/v1/jobs/{job_id}/items").json()["items"][0]
    assert item["attempts"] == 2
    assert item["content"] is not None


def test_files_left_by_a_worker_that_died_after_recording_go_when_the_job_ends(
    caller: Caller, runtime: Any, session_factory: Any, services: Stack
) -> None:
    from core import broker
    from core.broker import TaskName
    from db.models import Job

    job_id = _submit(caller, 2)
    wait_for_job(caller.client, job_id)
    # As if a worker recorded the second image's success and was killed before deleting
    # its file: the job is complete but not finalized, and the file is still there.
    _put(runtime.store, f"{job_id}/00001", png_for(1))
    with session_factory() as session:
        session.execute(
            update(Job).where(Job.id == uuid.UUID(job_id)).values(
                status="running", finished_at=None,
            )
        )  # fmt: skip
        session.commit()
    broker.send(TaskName.FINALIZE_JOB, job_id)
    assert wait_for_job(caller.client, job_id)["status"] == "succeeded"
    deadline = time.monotonic() + 10
    while services.stored_files() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert services.stored_files() == []
