"""Readiness and metrics, as an operator's monitoring would read them."""

from __future__ import annotations

from typing import Any

import httpx

from tests import stack
from tests.conftest import METRICS_TOKEN, Caller, wait_for_job
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

    text = httpx.get(
        f"{api_url}/metrics", headers={"Authorization": f"Bearer {METRICS_TOKEN}"}
    ).text
    lines = set(text.splitlines())
    assert 'imageextract_jobs{status="partially_succeeded"} 1.0' in lines
    assert 'imageextract_items{status="succeeded"} 1.0' in lines
    assert 'imageextract_item_failures{code="corrupt_image"} 1.0' in lines
    assert "imageextract_model_latency_seconds_count 1.0" in lines
    assert 'imageextract_model_latency_seconds_bucket{le="+Inf"} 1.0' in lines
    assert 'imageextract_queue_depth{queue="model"} 0.0' in lines


def test_metrics_want_the_operators_token_not_an_account_key(caller: Caller, api_url: str) -> None:
    """The counts span every account: an account's key does not open them."""
    for headers in ({}, {"Authorization": f"Bearer {caller.key}"}):
        response = httpx.get(f"{api_url}/metrics", headers=headers)
        assert response.status_code == 401
        assert response.json()["code"] == "unauthorized"
        assert "IMAGEEXTRACT_METRICS_TOKEN" in response.json()["detail"]


def test_metrics_are_off_without_a_token(settings: Any) -> None:
    from api.app import create_app

    app = create_app(settings.model_copy(update={"metrics_token": None}))
    response = stack.asgi_request(
        app, "GET", "/metrics", headers={"Authorization": "Bearer anything"}
    )
    assert response.status_code == 404
    assert "set IMAGEEXTRACT_METRICS_TOKEN" in response.json()["detail"]


def test_readyz_does_not_tell_strangers_why_a_check_failed(settings: Any) -> None:
    """/readyz needs no key, so a failing check says "down"; the reason goes to the log."""
    from api.app import create_app

    broken = settings.model_copy(
        update={"database_url": "postgresql+psycopg://nobody@127.0.0.1:1/none"}
    )
    response = stack.asgi_request(create_app(broken), "GET", "/readyz")
    assert response.status_code == 503
    assert response.json()["checks"]["database"] == "down"
    assert "127.0.0.1" not in response.text
