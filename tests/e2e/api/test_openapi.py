"""The OpenAPI document is the contract: every route and both submit body forms are in it,
and its page at /docs comes whole from this server."""

from __future__ import annotations

import re
from pathlib import PurePosixPath
from urllib.parse import urljoin

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


def test_docs_page_needs_no_other_host(api_url: str) -> None:
    page = httpx.get(f"{api_url}/docs")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    # No address of another host anywhere in the page, not even in its inline script.
    assert all(
        url.startswith(f"{api_url}/") for url in re.findall(r"https?://[^\s\"'<>]+", page.text)
    )
    references = re.findall(r'(?:src|href)="([^"]*)"', page.text)
    kinds = {".js": "text/javascript", ".css": "text/css", ".png": "image/png"}
    assert {PurePosixPath(reference).suffix for reference in references} == set(kinds)
    for reference in references:
        url = urljoin(f"{api_url}/docs", reference)
        assert url.startswith(f"{api_url}/"), reference
        asset = httpx.get(url)
        assert asset.status_code == 200, reference
        assert asset.headers["content-type"].startswith(kinds[PurePosixPath(reference).suffix])
        assert asset.content
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "'unsafe-inline'" not in policy
    assert "http" not in policy
    assert httpx.get(f"{api_url}/docs/assets/..%2F__init__.py").status_code == 404
