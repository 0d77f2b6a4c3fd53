"""The native jobs API end to end: real API, Postgres, Redis, worker process, fake model."""

from __future__ import annotations

import base64
import json
import time
from collections.abc import Callable
from typing import Any

import httpx
import pytest

from tests.conftest import Caller, Stack, wait_for_job
from tests.sample_images import jpeg_for, png_for, size_for


def _multipart(count: int, **fields: str) -> tuple[list[tuple[str, Any]], dict[str, str]]:
    files = [
        ("images", (f"img{index:04d}.png", png_for(index), "image/png")) for index in range(count)
    ]
    return files, {"prompt": "Describe the image", **fields}


def _results(caller: Caller, job_id: str) -> list[dict[str, Any]]:
    response = caller.client.get(f"/v1/jobs/{job_id}/results")
    assert response.status_code == 200
    assert response.headers["content-type"].startswith("application/jsonl")
    return [json.loads(line) for line in response.text.splitlines()]


def test_small_multipart_job_succeeds_with_results_and_usage(
    caller: Caller, services: Stack
) -> None:
    files, data = _multipart(3, json_mode="true", metadata='{"batch": "nightly"}')
    response = caller.client.post("/v1/jobs", files=files, data=data)
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert accepted["status"] == "queued"
    assert accepted["item_count"] == 3
    assert response.headers["location"] == accepted["url"]

    job = wait_for_job(caller.client, accepted["id"])
    assert job["status"] == "succeeded"
    assert job["counts"]["succeeded"] == 3
    assert job["progress"] == 1.0
    assert job["metadata"] == {"batch": "nightly"}
    assert job["usage"]["total_tokens"] > 0
    assert job["credits"] == {"reserved": 13, "captured": 13, "refunded": 0}

    items = caller.client.get(f"/v1/jobs/{accepted['id']}/items").json()["items"]
    assert [item["index"] for item in items] == [0, 1, 2]
    for item in items:
        width, height = size_for(item["index"])
        assert item["parsed"] == {"width": width, "height": height}
        assert item["source_name"] == f"img{item['index']:04d}.png"
        assert item["usage"]["total_tokens"] > 0
        assert item["timings"]["model_ms"] is not None
    assert services.stored_files() == []


@pytest.mark.timeout(600)
def test_3000_image_multipart_job_ends_in_input_order_with_no_file_left(
    caller: Caller, services: Stack
) -> None:
    files, data = _multipart(3000)
    response = caller.client.post("/v1/jobs", files=files, data=data)
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]

    job = wait_for_job(caller.client, job_id, timeout=400)
    assert job["status"] == "succeeded"
    assert job["counts"]["succeeded"] == 3000

    results = _results(caller, job_id)
    assert [row["index"] for row in results] == list(range(3000))
    for row in results:
        width, height = size_for(row["index"])
        assert row["status"] == "succeeded"
        assert row["content"] == f"An image of {width}x{height} pixels."

    pages, cursor = [], None
    while True:
        params = {"limit": 1000, **({"cursor": cursor} if cursor else {})}
        page = caller.client.get(f"/v1/jobs/{job_id}/items", params=params).json()
        pages.append(page["items"])
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert [len(page) for page in pages] == [1000, 1000, 1000]
    assert services.stored_files() == []


def test_json_job_with_base64_images(caller: Caller, services: Stack) -> None:
    images = [base64.b64encode(jpeg_for(index)).decode() for index in range(20)]
    images[3] = "data:image/jpeg;base64," + images[3]
    response = caller.client.post(
        "/v1/jobs",
        json={"input_method": "base64", "images": images, "prompt": "Read it", "json_mode": True},
    )
    assert response.status_code == 202, response.text
    job = wait_for_job(caller.client, response.json()["id"])
    assert job["status"] == "succeeded"
    results = _results(caller, job["id"])
    assert [row["parsed"] for row in results] == [
        {"width": size_for(i)[0], "height": size_for(i)[1]} for i in range(20)
    ]
    assert services.stored_files() == []


def test_json_job_with_urls_served_on_loopback(caller: Caller, image_server: str) -> None:
    urls = [f"{image_server}/img/{index}.png" for index in range(10)] + [f"{image_server}/missing"]
    response = caller.client.post(
        "/v1/jobs", json={"input_method": "url", "images": urls, "prompt": "Read it"}
    )
    assert response.status_code == 202, response.text
    job = wait_for_job(caller.client, response.json()["id"])
    assert job["status"] == "partially_succeeded"
    assert job["counts"] == {
        "queued": 0,
        "running": 0,
        "succeeded": 10,
        "failed": 1,
        "cancelled": 0,
    }
    assert job["credits"] == {"reserved": 21, "captured": 20, "refunded": 1}
    results = _results(caller, job["id"])
    assert [row["source_name"] for row in results[:2]] == ["0.png", "1.png"]
    assert results[10]["error"]["code"] == "image_fetch_failed"
    assert "404" in results[10]["error"]["message"]


def test_cancel_stops_the_job_and_keeps_what_finished(
    caller: Caller, services: Stack, fake_model: Callable[..., dict[str, Any]]
) -> None:
    fake_model(latency=0.5)
    files, data = _multipart(300)
    job_id = caller.client.post("/v1/jobs", files=files, data=data).json()["id"]
    deadline = time.monotonic() + 60
    while caller.client.get(f"/v1/jobs/{job_id}").json()["counts"]["succeeded"] < 5:
        assert time.monotonic() < deadline
        time.sleep(0.1)

    cancelled = caller.client.delete(f"/v1/jobs/{job_id}")
    assert cancelled.status_code == 200
    assert cancelled.json()["status"] == "cancelled"

    job = wait_for_job(caller.client, job_id)
    assert job["status"] == "cancelled"
    counts = job["counts"]
    assert counts["succeeded"] >= 5
    assert counts["cancelled"] > 0
    assert counts["succeeded"] + counts["cancelled"] == 300
    assert job["credits"]["refunded"] == counts["cancelled"]
    # Only images that were not cancelled ever reached the model.
    calls = httpx.get(f"{services.model_url}/_stats").json()["calls"]
    assert calls.get("ok", 0) == counts["succeeded"]
    results = _results(caller, job_id)
    assert sum(row["status"] == "succeeded" for row in results) == counts["succeeded"]
    assert services.stored_files() == []
    assert caller.client.delete(f"/v1/jobs/{job_id}").status_code == 409


def test_job_of_one_account_is_not_found_for_another(
    caller: Caller, make_caller: Callable[..., Caller]
) -> None:
    files, data = _multipart(1)
    job_id = caller.client.post("/v1/jobs", files=files, data=data).json()["id"]
    other = make_caller("other")
    for method, path in [
        ("GET", f"/v1/jobs/{job_id}"),
        ("GET", f"/v1/jobs/{job_id}/items"),
        ("GET", f"/v1/jobs/{job_id}/results"),
        ("DELETE", f"/v1/jobs/{job_id}"),
    ]:
        response = other.client.request(method, path)
        assert response.status_code == 404, (method, path)
        assert response.json()["code"] == "not_found"
    assert caller.client.get(f"/v1/jobs/{job_id}").status_code == 200


def test_requests_without_a_valid_key_are_refused(api_url: str, caller: Caller) -> None:
    for headers in ({}, {"Authorization": "Bearer iek_wrong"}, {"Authorization": "Basic x"}):
        response = httpx.post(f"{api_url}/v1/jobs", headers=headers, json={})
        assert response.status_code == 401
        assert response.headers["content-type"] == "application/problem+json"
        assert response.json()["input"] == "Authorization"


def test_wait_returns_the_results_when_the_job_ends_in_time(
    caller: Caller, fake_model: Callable[..., dict[str, Any]]
) -> None:
    files, data = _multipart(2, json_mode="true")
    response = caller.client.post("/v1/jobs", params={"wait": 30}, files=files, data=data)
    assert response.status_code == 200, response.text
    job = response.json()
    assert job["status"] == "succeeded"
    assert [row["parsed"] for row in job["results"]] == [
        {"width": 16, "height": 16},
        {"width": 17, "height": 16},
    ]

    fake_model(latency=3)
    response = caller.client.post("/v1/jobs", params={"wait": 0.5}, files=files, data=data)
    assert response.status_code == 202
    assert response.json()["status"] == "queued"


def test_metadata_up_to_its_limit_is_kept_and_left_out_of_the_list(caller: Caller) -> None:
    # 15 KB of JSON: under the 16 KB limit (over it: see test_hostile_input.py).
    metadata = {"batch": "nightly", "note": "m" * 15 * 1024}
    image = base64.b64encode(png_for(0)).decode()
    response = caller.client.post(
        "/v1/jobs",
        json={"input_method": "base64", "images": [image], "prompt": "x", "metadata": metadata},
    )
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    assert caller.client.get(f"/v1/jobs/{job_id}").json()["metadata"] == metadata
    # A page of 500 summaries stays small: none carries its job's metadata.
    summaries = caller.client.get("/v1/jobs", params={"limit": 500}).json()["jobs"]
    assert [summary["id"] for summary in summaries] == [job_id]
    assert "metadata" not in summaries[0]
