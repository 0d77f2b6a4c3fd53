"""The batch lane on the real stack: jobs with mode batch go through the fake model's Batch
API (files, batches, output and error files over HTTP), polled by a real beat, recorded by
a real worker; failed and expired lines run once more as live calls."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx

from tests.conftest import METRICS_TOKEN, Caller, Stack, wait_for_job
from tests.e2e.worker.test_grounding import TEMPLATE as SIZE_TEMPLATE
from tests.e2e.worker.test_grounding import _printed_size
from tests.sample_images import png_for, size_for

TEMPLATE = '{"width": "Width", "height": "Height"}'


def _submit(caller: Caller, count: int, **fields: str) -> str:
    response = caller.client.post(
        "/v1/jobs",
        files=[("images", (f"{index}.png", png_for(index), "image/png")) for index in range(count)],
        data={"prompt": TEMPLATE, "json_mode": "true", "mode": "batch", **fields},
    )
    assert response.status_code == 202, response.text
    return str(response.json()["id"])


def _stats(services: Stack) -> dict[str, Any]:
    return dict(httpx.get(f"{services.model_url}/_stats", timeout=5).json())


def _until(what: str, check: Callable[[], Any], timeout: float = 60) -> Any:
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise TimeoutError(f"still not {what} after {timeout} s")
        time.sleep(0.1)


def _items(caller: Caller, job_id: str) -> list[dict[str, Any]]:
    return list(caller.client.get(f"/v1/jobs/{job_id}/items?limit=100").json()["items"])


def _ledger(caller: Caller, job_id: str) -> list[tuple[str, int]]:
    entries = caller.client.get("/v1/account/ledger").json()["entries"]
    return sorted((e["kind"], e["amount"]) for e in entries if e.get("job_id") == job_id)


def test_a_batch_job_runs_through_the_batch_api_not_live_calls(
    caller: Caller, services: Stack, beat_process: Path
) -> None:
    job_id = _submit(caller, 12)
    job = wait_for_job(caller.client, job_id)
    assert job["status"] == "succeeded"
    assert job["mode"] == "batch"
    # Five lines per provider batch at most here: 5 + 5 + 2, each recorded.
    batches = job["provider_batches"]
    assert sorted(b["request_counts"]["total"] for b in batches) == [2, 5, 5]
    assert all(b["status"] == "completed" and b["recorded"] and b["id"] for b in batches)
    assert job["estimated_completion_at"] is None
    items = sorted(_items(caller, job_id), key=lambda item: item["index"])
    assert [item["parsed"] for item in items] == [
        {"width": str(size_for(index)[0]), "height": str(size_for(index)[1])} for index in range(12)
    ]
    assert all(item["usage"]["prompt_tokens"] > 0 for item in items)
    assert job["usage"]["total_tokens"] == sum(item["usage"]["total_tokens"] for item in items)
    stats = _stats(services)
    assert stats["calls"].get("ok", 0) == 0  # not one live call
    assert stats["calls"]["batch_ok"] == 12
    # The strict schema travels in each request line, as in a live call.
    assert stats["formats"] == {"json_schema": 12}
    # Images left storage once their lines were uploaded; the provider's files (inputs,
    # outputs) are deleted once the results are in.
    assert services.stored_files() == []
    _until("the provider's files deleted", lambda: _stats(services)["batches"]["files"] == 0)
    assert job["credits"]["captured"] == 10 + 12 * job_price_per_image(job)


def job_price_per_image(job: dict[str, Any]) -> int:
    return int((job["credits"]["reserved"] - 10) / job["item_count"])


def test_failed_expired_and_misshaped_lines_run_once_more_live(
    caller: Caller,
    services: Stack,
    beat_process: Path,
    fake_model: Callable[..., dict[str, Any]],
) -> None:
    # The first provider batch expires with half its lines run; in the next, two lines
    # fail with a 500 and one answer does not fit the schema.
    fake_model(batch_expire_next=1)
    first = _submit(caller, 4)
    wait_for_job(caller.client, first)
    fake_model(batch_fail_next=2, misshaped_next=1)
    second = _submit(caller, 5)
    for job_id, count in ((first, 4), (second, 5)):
        job = wait_for_job(caller.client, job_id)
        assert job["status"] == "succeeded", job["counts"]
        assert job["counts"]["succeeded"] == count
        for item in _items(caller, job_id):
            width, height = size_for(item["index"])
            assert item["parsed"] == {"width": str(width), "height": str(height)}
            assert item["error"] is None
    statuses = [b["status"] for b in caller.client.get(f"/v1/jobs/{first}").json()
                ["provider_batches"]]  # fmt: skip
    assert statuses == ["expired"]
    calls = _stats(services)["calls"]
    # Live calls: the 2 expired lines, the 2 failed ones, the misshaped one. No more.
    assert calls["ok"] == 5
    assert calls["batch_ok"] == 2 + 3
    assert calls["batch_error"] == 2
    assert services.stored_files() == []


def test_cancel_cancels_the_provider_batch_and_refunds_what_it_did_not_run(
    caller: Caller,
    services: Stack,
    beat_process: Path,
    api_url: str,
    fake_model: Callable[..., dict[str, Any]],
) -> None:
    fake_model(batch_hold=1)
    job_id = _submit(caller, 3)

    def in_progress() -> dict[str, Any] | None:
        job = caller.client.get(f"/v1/jobs/{job_id}").json()
        batches = job["provider_batches"]
        return job if batches and batches[0]["status"] == "in_progress" else None

    job = _until("in progress at the provider", in_progress)
    assert job["status"] == "running"
    assert job["counts"]["running"] == 3
    assert job["estimated_completion_at"] is not None
    # The provider holds the images now: none is left in our storage.
    assert services.stored_files() == []
    metrics = httpx.get(
        f"{api_url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    ).text
    assert 'imageextract_provider_batches_open{status="in_progress"} 1.0' in metrics

    assert caller.client.delete(f"/v1/jobs/{job_id}").status_code == 200
    job = wait_for_job(caller.client, job_id)
    assert job["status"] == "cancelled"
    assert job["counts"]["cancelled"] == 3
    assert job["provider_batches"][0]["status"] == "cancelled"
    assert _stats(services)["batches"]["lines_run"] == 0
    # Everything but the per-job price came back.
    assert job["credits"]["captured"] == 10
    assert _ledger(caller, job_id) == sorted(
        [("reserve", job["credits"]["reserved"]), ("refund", job["credits"]["reserved"] - 10),
         ("capture", 10)]
    )  # fmt: skip
    _until("the provider's files deleted", lambda: _stats(services)["batches"]["files"] == 0)


def test_grounding_reads_the_image_back_from_the_providers_copy(
    caller: Caller, services: Stack, beat_process: Path, cpu_worker_process: Path
) -> None:
    data, _boxes = _printed_size()
    response = caller.client.post(
        "/v1/jobs",
        files=[("images", ("size.png", data, "image/png"))],
        data={"prompt": SIZE_TEMPLATE, "json_mode": "true", "mode": "batch", "grounding": "true"},
    )
    assert response.status_code == 202, response.text
    job = wait_for_job(caller.client, response.json()["id"])
    assert job["status"] == "succeeded"
    item = _items(caller, job["id"])[0]
    assert item["parsed"] == {"width": "480", "height": "320"}
    assert item["evidence"]["width"]["grounded"] is True
    assert item["evidence"]["height"]["grounded"] is True
    assert services.stored_files() == []


def test_the_batch_price_is_half_the_live_price_rounded_up_or_its_own_setting(
    caller: Caller, api_with: Callable[..., str]
) -> None:
    headers = {"Authorization": f"Bearer {caller.key}"}
    files = [("images", (f"{i}.png", png_for(i), "image/png")) for i in range(3)]
    for changes, per_image in (
        ({"credits_per_image": 5}, 3),
        ({"credits_per_image": 5, "batch_price_per_image": 1}, 1),
    ):
        url = api_with(**changes)
        response = httpx.post(
            f"{url}/v1/jobs", headers=headers, files=files,
            data={"prompt": TEMPLATE, "mode": "batch"},
        )  # fmt: skip
        assert response.status_code == 202, response.text
        assert response.json()["credits_reserved"] == 10 + 3 * per_image
        live = httpx.post(f"{url}/v1/jobs", headers=headers, files=files, data={"prompt": TEMPLATE})
        assert live.json()["credits_reserved"] == 10 + 3 * 5


def test_mode_batch_needs_a_provider_with_a_batch_api(
    caller: Caller, api_with: Callable[..., str]
) -> None:
    url = api_with(model_provider="local")
    response = httpx.post(
        f"{url}/v1/jobs", headers={"Authorization": f"Bearer {caller.key}"},
        files=[("images", ("0.png", png_for(0), "image/png"))],
        data={"prompt": TEMPLATE, "mode": "batch"},
    )  # fmt: skip
    assert response.status_code == 400
    problem = response.json()
    assert problem["input"] == "mode"
    assert "Batch API" in problem["detail"]
    bad = caller.client.post(
        "/v1/jobs", files=[("images", ("0.png", png_for(0), "image/png"))],
        data={"prompt": TEMPLATE, "mode": "overnight"},
    )  # fmt: skip
    assert bad.status_code == 400
    assert bad.json()["input"] == "mode"


def test_a_batch_whose_builder_died_before_noting_it_is_found_at_the_provider_not_sent_twice(
    caller: Caller,
    services: Stack,
    beat_process: Path,
    session_factory: Any,
    fake_model: Callable[..., dict[str, Any]],
) -> None:
    from datetime import UTC, datetime, timedelta

    from sqlalchemy import update

    from db.engine import unit_of_work
    from db.models import ProviderBatch

    fake_model(batch_hold=1)
    job_id = _submit(caller, 3)
    _until(
        "in progress at the provider",
        lambda: caller.client.get(f"/v1/jobs/{job_id}").json()["provider_batches"],
    )
    # As if its builder was killed between creating the batch at the provider and noting
    # its id: the row is still building, its lease run out.
    with unit_of_work(session_factory) as session:
        session.execute(
            update(ProviderBatch)
            .where(ProviderBatch.job_id == job_id)
            .values(status="building", provider_batch_id=None, provider_status=None,
                    lease_expires_at=datetime.now(UTC) - timedelta(seconds=1))
        )  # fmt: skip
    _until(
        "adopted",
        lambda: caller.client.get(f"/v1/jobs/{job_id}").json()["provider_batches"][0]["id"],
    )
    fake_model(batch_hold=0)
    job = wait_for_job(caller.client, job_id)
    assert job["status"] == "succeeded"
    assert len(job["provider_batches"]) == 1
    assert _stats(services)["batches"]["created"] == 1
    assert _stats(services)["calls"]["batch_ok"] == 3


def test_purging_a_running_batch_job_cancels_its_batch_and_deletes_the_providers_files(
    caller: Caller,
    services: Stack,
    beat_process: Path,
    fake_model: Callable[..., dict[str, Any]],
) -> None:
    fake_model(batch_hold=1)
    job_id = _submit(caller, 2)
    _until(
        "in progress at the provider",
        lambda: caller.client.get(f"/v1/jobs/{job_id}").json()["provider_batches"],
    )
    purged = caller.client.delete(f"/v1/jobs/{job_id}", params={"purge": "true"})
    assert purged.status_code == 200
    assert purged.json()["purged_at"] is not None
    _until("cancelled at the provider", lambda: _stats(services)["batches"]["statuses"] == {
        "cancelled": 1})  # fmt: skip
    _until("the provider's files deleted", lambda: _stats(services)["batches"]["files"] == 0)
    assert _stats(services)["batches"]["lines_run"] == 0
    assert caller.client.get(f"/v1/jobs/{job_id}/items").status_code == 410
