"""The OpenAPI document is the contract: every route and both submit body forms are in it."""

from __future__ import annotations

import httpx
import pytest

# Once, with images in a folder: the schema does not depend on where images are stored.
pytestmark = pytest.mark.one_store


def test_openapi_lists_the_jobs_api(api_url: str) -> None:
    document = httpx.get(f"{api_url}/openapi.json").json()
    paths = document["paths"]
    assert set(paths) >= {
        "/v1/jobs",
        "/v1/jobs/{job_id}",
        "/v1/jobs/{job_id}/items",
        "/v1/jobs/{job_id}/results",
    }
    body = paths["/v1/jobs"]["post"]["requestBody"]["content"]
    assert body["multipart/form-data"]["schema"]["properties"]["images"]["maxItems"] == 3000
    assert body["application/json"]["schema"]["required"] == ["input_method", "images", "prompt"]
    assert "delete" in paths["/v1/jobs/{job_id}"]


def test_health_needs_no_key(api_url: str) -> None:
    assert httpx.get(f"{api_url}/healthz").json() == {"status": "ok"}
