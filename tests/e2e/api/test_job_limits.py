"""Every limit and bad input is refused whole, with a clear error, and creates nothing."""

from __future__ import annotations

import base64
from typing import Any

import pytest
from sqlalchemy import func, select

from tests.conftest import Caller, Stack
from tests.sample_images import png_for

MB = 1024 * 1024
PNG_HEADER = b"\x89PNG\r\n\x1a\n"


def _assert_nothing_created(session_factory: Any, services: Stack) -> None:
    from db.models import Job, JobItem

    with session_factory() as session:
        assert session.scalar(select(func.count()).select_from(Job)) == 0
        assert session.scalar(select(func.count()).select_from(JobItem)) == 0
    assert services.stored_files() == []


def _problem(response: Any, status: int, code: str) -> dict[str, Any]:
    assert response.status_code == status, response.text
    assert response.headers["content-type"] == "application/problem+json"
    body: dict[str, Any] = response.json()
    assert body["code"] == code
    assert body["status"] == status
    return body


def test_image_over_20_mb_is_refused_naming_it(
    caller: Caller, services: Stack, session_factory: Any
) -> None:
    files = [
        ("images", ("ok.png", png_for(0), "image/png")),
        ("images", ("huge.png", PNG_HEADER + b"\0" * (20 * MB), "image/png")),
    ]
    response = caller.client.post("/v1/jobs", files=files, data={"prompt": "x"})
    body = _problem(response, 413, "image_too_large")
    assert body["input"] == "images[1]"
    assert "huge.png" in body["detail"]
    assert "20 MB" in body["detail"]
    _assert_nothing_created(session_factory, services)


def test_job_over_100_mb_is_refused(caller: Caller, services: Stack, session_factory: Any) -> None:
    chunk = PNG_HEADER + b"\0" * (18 * MB)
    files = [("images", (f"part{i}.png", chunk, "image/png")) for i in range(6)]
    response = caller.client.post("/v1/jobs", files=files, data={"prompt": "x"})
    body = _problem(response, 413, "job_too_large")
    assert "100 MB" in body["detail"]
    assert "part5.png" in body["detail"]
    _assert_nothing_created(session_factory, services)


def test_more_than_3000_images_are_refused(
    caller: Caller, services: Stack, session_factory: Any
) -> None:
    tiny = png_for(1)
    files = [("images", (f"{i}.png", tiny, "image/png")) for i in range(3001)]
    response = caller.client.post("/v1/jobs", files=files, data={"prompt": "x"})
    body = _problem(response, 400, "too_many_images")
    assert "3000" in body["detail"]
    _assert_nothing_created(session_factory, services)


@pytest.mark.parametrize(
    ("payload", "name", "code"),
    [
        # A PDF is read (its pages are counted at the door): this one is broken.
        (b"%PDF-1.7 not an image", "report.pdf", "corrupt_image"),
        (b"%!PS-Adobe-3.0 not an image", "report.ps", "unsupported_image_format"),
        (b"just some text", "notes.txt", "unsupported_image_format"),
        (b"", "empty.png", "corrupt_image"),
    ],
)
def test_bad_upload_is_refused_naming_it(
    caller: Caller, services: Stack, session_factory: Any, payload: bytes, name: str, code: str
) -> None:
    files = [
        ("images", ("a.png", png_for(0), "image/png")),
        ("images", ("b.png", png_for(1), "image/png")),
        # The declared content type is ignored: the bytes decide.
        ("images", (name, payload, "image/png")),
    ]
    response = caller.client.post("/v1/jobs", files=files, data={"prompt": "x"})
    body = _problem(response, 400, code)
    assert body["input"] == "images[2]"
    assert name in body["detail"]
    _assert_nothing_created(session_factory, services)


@pytest.mark.parametrize(
    ("data", "input_name", "code"),
    [
        ({}, "prompt", "missing_field"),
        ({"prompt": "  "}, "prompt", "missing_field"),
        ({"prompt": "x", "scene": "legal"}, "scene", "invalid_request"),
        ({"prompt": "x", "json_mode": "maybe"}, "json_mode", "invalid_request"),
        ({"prompt": "x", "metadata": "[1, 2]"}, "metadata", "invalid_request"),
        ({"prompt": "x", "webhook_url": "ftp://x"}, "webhook_url", "invalid_request"),
    ],
)
def test_bad_fields_are_refused_naming_them(
    caller: Caller,
    services: Stack,
    session_factory: Any,
    data: dict[str, str],
    input_name: str,
    code: str,
) -> None:
    files = [("images", ("a.png", png_for(0), "image/png"))]
    response = caller.client.post("/v1/jobs", files=files, data=data)
    body = _problem(response, 400, code)
    assert body["input"] == input_name
    _assert_nothing_created(session_factory, services)


def test_multipart_without_images_is_refused(caller: Caller) -> None:
    response = caller.client.post("/v1/jobs", files={"prompt": (None, "x")})
    assert _problem(response, 400, "missing_field")["input"] == "images"


@pytest.mark.parametrize(
    ("body", "input_name"),
    [
        ({"input_method": "url", "images": ["aGVsbG8="], "prompt": "x"}, "images[0]"),
        ({"input_method": "base64", "images": ["https://example.com/a.png"], "prompt": "x"},
         "images[0]"),
        ({"input_method": "base64", "images": ["not base64 at all!"], "prompt": "x"}, "images[0]"),
        ({"input_method": "url", "images": ["file:///etc/passwd"], "prompt": "x"}, "images[0]"),
        ({"input_method": "fax", "images": [], "prompt": "x"}, "input_method"),
        ({"input_method": "base64", "images": "abc", "prompt": "x"}, "images"),
    ],
)  # fmt: skip
def test_bad_json_jobs_are_refused_naming_the_input(
    caller: Caller, services: Stack, session_factory: Any, body: dict[str, Any], input_name: str
) -> None:
    response = caller.client.post("/v1/jobs", json=body)
    assert _problem(response, 400, response.json()["code"])["input"] == input_name
    _assert_nothing_created(session_factory, services)


def test_base64_image_over_the_limit_is_refused(
    caller: Caller, services: Stack, session_factory: Any
) -> None:
    big = base64.b64encode(PNG_HEADER + b"\0" * (21 * MB)).decode()
    response = caller.client.post(
        "/v1/jobs", json={"input_method": "base64", "images": [big], "prompt": "x"}
    )
    assert _problem(response, 413, "image_too_large")["input"] == "images[0]"
    _assert_nothing_created(session_factory, services)


def test_body_that_is_not_json_or_multipart_is_refused(caller: Caller) -> None:
    response = caller.client.post(
        "/v1/jobs", content=b"{oops", headers={"Content-Type": "application/json"}
    )
    assert "not valid JSON" in _problem(response, 400, "invalid_request")["detail"]
    response = caller.client.post("/v1/jobs", content=b"hi", headers={"Content-Type": "text/plain"})
    assert _problem(response, 400, "invalid_request")["input"] == "Content-Type"
