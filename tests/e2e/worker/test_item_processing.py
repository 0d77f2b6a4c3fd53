"""How items end when the model or the image misbehaves, through the real worker."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import httpx

from tests.conftest import Caller, Stack, wait_for_job
from tests.sample_images import jpeg_for, png_for


def _submit(caller: Caller, files: list[tuple[str, Any]], **data: str) -> dict[str, Any]:
    response = caller.client.post("/v1/jobs", files=files, data={"prompt": "Read", **data})
    assert response.status_code == 202, response.text
    return wait_for_job(caller.client, response.json()["id"])


def _items(caller: Caller, job_id: str) -> list[dict[str, Any]]:
    return list(caller.client.get(f"/v1/jobs/{job_id}/items").json()["items"])


def test_poison_images_fail_their_own_item_and_the_rest_succeed(
    caller: Caller, services: Stack
) -> None:
    files = [
        ("images", ("good.png", png_for(0), "image/png")),
        ("images", ("truncated.jpg", jpeg_for(1, size=(300, 300))[:400], "image/jpeg")),
        ("images", ("fake.png", b"\x89PNG\r\n\x1a\n" + b"nope" * 20, "image/png")),
        ("images", ("good2.jpg", jpeg_for(3), "image/jpeg")),
    ]
    job = _submit(caller, files)
    assert job["status"] == "partially_succeeded"
    assert job["credits"] == {"reserved": 14, "captured": 12, "refunded": 2}
    items = _items(caller, job["id"])
    assert [item["status"] for item in items] == ["succeeded", "failed", "failed", "succeeded"]
    assert items[1]["error"]["code"] == "corrupt_image"
    assert "images[1]" in items[1]["error"]["message"]
    assert items[2]["error"]["code"] == "corrupt_image"
    # A poison image is not retried: one attempt, and the model never saw it.
    assert items[1]["attempts"] == 1
    calls = httpx.get(f"{services.model_url}/_stats").json()["calls"]
    assert calls == {"ok": 2}


def test_model_errors_past_retries_fail_items_as_upstream_errors(
    caller: Caller, fake_model: Callable[..., Any]
) -> None:
    fake_model(error_rate=1.0)
    job = _submit(caller, [("images", ("a.png", png_for(0), "image/png"))])
    assert job["status"] == "failed"
    assert job["credits"]["refunded"] == 1
    item = _items(caller, job["id"])[0]
    assert item["error"]["code"] == "upstream_error"
    assert "500" in item["error"]["message"]


def test_model_timeouts_fail_items_as_model_timeout(
    caller: Caller, fake_model: Callable[..., Any]
) -> None:
    fake_model(timeout_rate=1.0, hang=5)
    job = _submit(caller, [("images", ("a.png", png_for(0), "image/png"))])
    assert job["status"] == "failed"
    assert _items(caller, job["id"])[0]["error"]["code"] == "model_timeout"


def test_transient_failures_are_retried_and_every_item_succeeds(
    caller: Caller, fake_model: Callable[..., Any]
) -> None:
    fake_model(fail_next=5, rate_limit_next=5, retry_after=0.2)
    files = [("images", (f"{i}.png", png_for(i), "image/png")) for i in range(30)]
    job = _submit(caller, files)
    assert job["status"] == "succeeded"


def test_malformed_json_in_json_mode_is_asked_again(
    caller: Caller, fake_model: Callable[..., Any]
) -> None:
    fake_model(malformed_next=1)
    job = _submit(caller, [("images", ("a.png", png_for(5), "image/png"))], json_mode="true")
    assert job["status"] == "succeeded"
    assert _items(caller, job["id"])[0]["parsed"] == {"width": 21, "height": 16}


def test_model_that_never_returns_json_fails_the_item_clearly(
    caller: Caller, fake_model: Callable[..., Any]
) -> None:
    fake_model(malformed_rate=1.0)
    job = _submit(caller, [("images", ("a.png", png_for(5), "image/png"))], json_mode="true")
    item = _items(caller, job["id"])[0]
    assert item["error"]["code"] == "invalid_model_output"
    assert "valid JSON" in item["error"]["message"]


TEMPLATE = 'Read the size: {"width": "Width", "height": "Height"}'


def test_an_answer_that_does_not_fit_the_schema_is_asked_again_with_what_was_wrong(
    caller: Caller, services: Stack, fake_model: Callable[..., Any]
) -> None:
    fake_model(misshaped_next=1)
    files = [("images", ("a.png", png_for(5), "image/png"))]
    job = _submit(caller, files, json_mode="true", prompt=TEMPLATE)
    assert job["status"] == "succeeded"
    item = _items(caller, job["id"])[0]
    # The template's values describe text: the answer's numbers come back as text.
    assert item["parsed"] == {"width": "21", "height": "16"}
    stats = httpx.get(f"{services.model_url}/_stats").json()
    assert stats["calls"] == {"misshaped": 1, "ok": 2}  # a misshaped answer is an "ok" call too
    assert stats["formats"] == {"json_schema": 2}
    # Both calls are paid for.
    assert item["usage"]["completion_tokens"] > len(item["content"]) // 4


def test_an_answer_that_never_fits_fails_and_keeps_the_raw_answer(
    caller: Caller, fake_model: Callable[..., Any]
) -> None:
    fake_model(misshaped_rate=1.0)
    files = [("images", ("a.png", png_for(5), "image/png"))]
    job = _submit(caller, files, json_mode="true", prompt=TEMPLATE)
    item = _items(caller, job["id"])[0]
    assert item["status"] == "failed"
    assert item["error"]["code"] == "invalid_model_output"
    assert "width should be string, not an object" in item["error"]["message"]
    assert item["content"] == '{"width": {"px": 21}, "height": [16]}'
    assert item["parsed"] is None


def test_one_worker_process_keeps_many_model_calls_in_flight(
    caller: Caller, services: Stack, fake_model: Callable[..., Any]
) -> None:
    fake_model(latency=1.0)
    files = [("images", (f"{i}.png", png_for(i), "image/png")) for i in range(64)]
    job = _submit(caller, files)
    assert job["status"] == "succeeded"
    # The test worker has 32 model threads in one process; a pool of one call at a time
    # would never have more than one request open at the model, and no more than 32 may be.
    stats = httpx.get(f"{services.model_url}/_stats").json()
    assert 16 <= stats["max_in_flight"] <= 32


def test_messages_delivered_twice_run_each_image_once(
    caller: Caller, services: Stack, fake_model: Callable[..., Any], session_factory: Any
) -> None:
    from sqlalchemy import select

    from core import broker
    from core.broker import Queue, TaskName
    from db.models import JobItem

    fake_model(latency=0.2)
    files = [("images", (f"{i}.png", png_for(i), "image/png")) for i in range(40)]
    response = caller.client.post("/v1/jobs", files=files, data={"prompt": "Read"})
    assert response.status_code == 202, response.text
    job_id = response.json()["id"]
    with session_factory() as session:
        ids = [
            str(item_id)
            for item_id in session.scalars(
                select(JobItem.id).where(JobItem.job_id == job_id).order_by(JobItem.index)
            )
        ]
    # The same items again, in other groupings than dispatch's, while the job runs.
    for start in range(0, len(ids), 7):
        broker.send(TaskName.PROCESS_ITEMS, ids[start : start + 7], queue=Queue.MODEL)
    job = wait_for_job(caller.client, job_id)
    assert job["status"] == "succeeded"
    assert job["counts"]["succeeded"] == 40
    assert httpx.get(f"{services.model_url}/_stats").json()["calls"] == {"ok": 40}
    assert {item["attempts"] for item in _items(caller, job_id)} == {1}
