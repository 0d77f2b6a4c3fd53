"""Readiness and metrics, as an operator's monitoring would read them."""

from __future__ import annotations

import httpx

from tests.conftest import Caller, wait_for_job
from tests.sample_images import png_for


def test_readyz_checks_database_broker_and_storage(api_url: str) -> None:
    response = httpx.get(f"{api_url}/readyz")
    assert response.status_code == 200
    assert response.json() == {
        "status": "ready",
        "checks": {"database": "ok", "broker": "ok", "storage": "ok"},
    }


def test_metrics_count_items_failures_and_model_latency(caller: Caller, api_url: str) -> None:
    files = [
        ("images", ("ok.png", png_for(0), "image/png")),
        ("images", ("bad.jpg", b"\xff\xd8\xff\xe0oops", "image/jpeg")),
    ]
    job_id = caller.client.post("/v1/jobs", files=files, data={"prompt": "x"}).json()["id"]
    wait_for_job(caller.client, job_id)

    text = httpx.get(f"{api_url}/metrics").text
    lines = set(text.splitlines())
    assert 'imageextract_jobs{status="partially_succeeded"} 1.0' in lines
    assert 'imageextract_items{status="succeeded"} 1.0' in lines
    assert 'imageextract_item_failures{code="corrupt_image"} 1.0' in lines
    assert "imageextract_model_latency_seconds_count 1.0" in lines
    assert 'imageextract_model_latency_seconds_bucket{le="+Inf"} 1.0' in lines
    assert 'imageextract_queue_depth{queue="model"} 0.0' in lines
