"""The u1 API end to end: every documented field and status code, over the real stack."""

from __future__ import annotations

import io
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from PIL import Image
from sqlalchemy import func, select

from tests.conftest import Caller, wait_for_job
from tests.sample_images import jpeg_for, png_for, size_for

MB = 1024 * 1024
URL = "/v1/ocr/image/extract"
# The example prompt of the u1 reference, with its JSON template.
REFERENCE_PROMPT = (
    "Please extract the information from the image using the following schema: "
    '{"invoice_no":"Invoice Number","date":"Invoice Date",'
    '"items":[{"name":"Item Name","total":"Amount"}]}'
)


def _encode(fmt: str, size: tuple[int, int] = (20, 20)) -> bytes:
    out = io.BytesIO()
    Image.new("RGB", size, (10, 120, 200)).save(out, fmt)
    return out.getvalue()


def _post(
    client: httpx.Client,
    image: tuple[str, bytes] | None = ("invoice.jpg", jpeg_for(0)),
    **fields: str | None,
) -> httpx.Response:
    """A u1 request as its clients send it; a field set to None is left out."""
    data = {"model": "u1-ocr-extract", "prompt": REFERENCE_PROMPT, **fields}
    # Text fields as file-less parts, so the body is multipart even without an image.
    parts: list[tuple[str, Any]] = [
        (name, (None, value)) for name, value in data.items() if value is not None
    ]
    if image:
        parts.append(("image", (image[0], image[1], "image/jpeg")))
    if not parts:  # httpx would send no body at all
        headers = {"Content-Type": "multipart/form-data; boundary=empty"}
        return client.post(URL, content=b"--empty--\r\n", headers=headers)
    return client.post(URL, files=parts)


def _base_resp(response: httpx.Response, http_status: int, code: int) -> str:
    assert response.status_code == http_status, response.text
    body = response.json()
    assert set(body) == {"content", "usage", "base_resp"}
    assert body["base_resp"]["status_code"] == code
    message: str = body["base_resp"]["status_msg"]
    return message


def _job_count(session_factory: Any) -> int:
    from db.models import Job

    with session_factory() as session:
        return int(session.scalar(select(func.count()).select_from(Job)) or 0)


def test_reference_request_returns_content_usage_and_success(
    caller: Caller, session_factory: Any
) -> None:
    response = caller.client.post(
        URL,
        data={"model": "u1-ocr-extract", "scene": "general", "prompt": REFERENCE_PROMPT},
        files={"image": ("invoice.jpg", jpeg_for(3), "image/jpeg")},
    )
    assert response.status_code == 200, response.text
    body = response.json()
    width, height = size_for(3)
    assert body["content"] == f"An image of {width}x{height} pixels."
    usage = body["usage"]
    assert usage["prompt_tokens"] > 0
    assert usage["completion_tokens"] > 0
    assert usage["total_tokens"] == usage["prompt_tokens"] + usage["completion_tokens"]
    assert body["base_resp"] == {"status_code": 0, "status_msg": "success"}

    # The same job is visible in the native API.
    job = caller.client.get(response.headers["location"]).json()
    assert job["status"] == "succeeded"
    assert job["prompt"] == REFERENCE_PROMPT
    assert job["scene"] == "general"
    assert job["model"] is None
    assert job["usage"]["total_tokens"] == usage["total_tokens"]
    from db.models import Job

    with session_factory() as session:
        assert session.scalars(select(Job.api)).all() == ["u1"]


@pytest.mark.parametrize(
    ("name", "data"),
    [("scan.png", png_for(5)), ("scan.bmp", _encode("BMP"))],
)
def test_png_and_bmp_are_accepted_with_the_medical_scene(
    caller: Caller, name: str, data: bytes
) -> None:
    response = _post(caller.client, (name, data), scene="medical")
    assert _base_resp(response, 200, 0) == "success"
    assert response.json()["content"].startswith("An image of ")
    assert caller.client.get(response.headers["location"]).json()["scene"] == "medical"


@pytest.mark.parametrize(
    ("drop", "named"),
    [
        ({"model"}, "model"),
        ({"prompt"}, "prompt"),
        ({"image"}, "image"),
        ({"model", "image", "prompt"}, "model, image, prompt"),
    ],
)
def test_missing_field_is_100001_naming_it(
    caller: Caller, session_factory: Any, drop: set[str], named: str
) -> None:
    image = None if "image" in drop else ("invoice.jpg", jpeg_for(0))
    fields: dict[str, Any] = {name: None for name in drop if name != "image"}
    message = _base_resp(_post(caller.client, image, **fields), 400, 100001)
    assert message.endswith(f": {named}")
    assert _job_count(session_factory) == 0


@pytest.mark.parametrize(
    ("fields", "named"),
    [
        ({"model": "gpt-4o"}, "model"),
        ({"model": ""}, "model"),
        ({"prompt": "   "}, "prompt"),
        ({"scene": "legal"}, "scene"),
        ({"webhook_url": "ftp://example.com"}, "webhook_url"),
    ],
)
def test_bad_field_is_100001_naming_it(
    caller: Caller, session_factory: Any, fields: dict[str, str], named: str
) -> None:
    message = _base_resp(_post(caller.client, ("invoice.jpg", jpeg_for(0)), **fields), 400, 100001)
    assert named in message
    assert _job_count(session_factory) == 0


def test_two_images_or_a_json_body_are_100001(caller: Caller) -> None:
    response = caller.client.post(
        URL,
        data={"model": "u1-ocr-extract", "prompt": "x"},
        files=[("image", ("a.jpg", jpeg_for(0))), ("image", ("b.jpg", jpeg_for(1)))],
    )
    assert "more than 1 image" in _base_resp(response, 400, 100001)
    response = caller.client.post(URL, json={"model": "u1-ocr-extract", "prompt": "x"})
    assert "multipart/form-data" in _base_resp(response, 400, 100001)


@pytest.mark.parametrize(
    ("data", "fmt"),
    [
        (_encode("GIF"), "GIF"),
        (_encode("WEBP"), "WEBP"),
        (_encode("TIFF"), "TIFF"),
        (b"%PDF-1.7 not an image at all", None),
    ],
)
def test_format_other_than_jpg_png_bmp_is_261001_by_its_bytes(
    caller: Caller, session_factory: Any, data: bytes, fmt: str | None
) -> None:
    # Named and typed as a JPEG: only the bytes count.
    message = _base_resp(_post(caller.client, ("photo.jpg", data)), 400, 261001)
    assert "image (photo.jpg)" in message
    assert "JPEG, PNG, BMP" in message
    if fmt:
        assert fmt in message
    assert _job_count(session_factory) == 0


def test_heic_is_261001(caller: Caller) -> None:
    import pillow_heif

    pillow_heif.register_heif_opener()
    message = _base_resp(_post(caller.client, ("photo.jpg", _encode("HEIF"))), 400, 261001)
    assert "HEI" in message


def test_image_over_10_mb_is_261002_and_10_mb_exactly_passes_the_size_check(
    caller: Caller, session_factory: Any
) -> None:
    header = jpeg_for(0)[:200]
    over = header + b"\0" * (10 * MB + 1 - len(header))
    message = _base_resp(_post(caller.client, ("big.jpg", over)), 400, 261002)
    assert "10 MB" in message
    assert _job_count(session_factory) == 0
    # Exactly 10 MB is within the limit; these bytes then fail to decode.
    exact = header + b"\0" * (10 * MB - len(header))
    _base_resp(_post(caller.client, ("big.jpg", exact)), 400, 261003)


@pytest.mark.parametrize(
    "data",
    [
        jpeg_for(0, size=(400, 300))[:700],  # truncated
        b"\xff\xd8\xff\xe0" + b"garbage " * 200,  # a JPEG header, then nonsense
        _encode("PNG")[:60],  # truncated PNG
    ],
)
def test_corrupt_image_is_261003(caller: Caller, data: bytes) -> None:
    response = _post(caller.client, ("scan.jpg", data))
    assert "cannot be decoded" in _base_resp(response, 400, 261003)
    # The job exists and failed; the worker found the damage.
    assert caller.client.get(response.headers["location"]).json()["status"] == "failed"


def test_upstream_model_timeout_is_261101(
    caller: Caller, fake_model: Callable[..., dict[str, Any]]
) -> None:
    # The worker's model timeout is 2 s in the tests; the fake model hangs longer each time.
    fake_model(timeout_rate=1.0, hang=5)
    message = _base_resp(_post(caller.client), 504, 261101)
    assert "did not answer in time" in message


def test_wait_running_out_is_261101_and_the_job_keeps_running(
    caller: Caller, settings: Any, fake_model: Callable[..., dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setattr(settings, "sync_wait", timedelta(seconds=0.5))
    # Longer than the wait, well inside the stack's 2 s model timeout (a 2 s answer raced it).
    fake_model(latency=1)
    response = _post(caller.client)
    message = _base_resp(response, 504, 261101)
    assert "keeps running" in message
    job_url = message.rsplit(" ", 1)[-1]
    job = wait_for_job(caller.client, job_url.rsplit("/", 1)[-1])
    assert job["status"] == "succeeded"


def test_model_server_errors_are_261999(
    caller: Caller, fake_model: Callable[..., dict[str, Any]]
) -> None:
    fake_model(error_rate=1.0)
    message = _base_resp(_post(caller.client), 500, 261999)
    assert "500" in message


def test_bad_or_missing_key_is_401_with_base_resp(api_url: str, caller: Caller) -> None:
    for headers in ({}, {"Authorization": "Bearer iek_wrong"}, {"Authorization": "Basic x"}):
        client = httpx.Client(base_url=api_url, headers=headers, timeout=30)
        with client:
            response = _post(client)
        assert _base_resp(response, 401, 1004) == "Invalid or missing Authorization header"
        assert response.headers["www-authenticate"] == "Bearer"


@pytest.mark.parametrize(
    ("fields", "params"),
    [
        ({"async": "true"}, {}),
        ({}, {"async": "true"}),
        ({"webhook_url": "http://127.0.0.1:9/hook"}, {}),
    ],
)
def test_async_or_webhook_returns_the_job_at_once(
    caller: Caller, fields: dict[str, str], params: dict[str, str]
) -> None:
    response = caller.client.post(
        URL,
        params=params,
        data={"model": "u1-ocr-extract", "prompt": "Read it", **fields},
        files={"image": ("invoice.jpg", jpeg_for(0), "image/jpeg")},
    )
    assert response.status_code == 202, response.text
    body = response.json()
    assert body["base_resp"] == {"status_code": 0, "status_msg": "accepted"}
    assert body["item_count"] == 1
    assert body["credits_reserved"] == 11
    assert response.headers["location"] == body["url"]
    job = wait_for_job(caller.client, body["id"])
    assert job["status"] == "succeeded"
    assert job["webhook_url"] == fields.get("webhook_url")


def test_bad_async_query_is_100001(caller: Caller) -> None:
    response = caller.client.post(
        URL,
        params={"async": "perhaps"},
        data={"model": "u1-ocr-extract", "prompt": "x"},
        files={"image": ("a.jpg", jpeg_for(0), "image/jpeg")},
    )
    assert "async" in _base_resp(response, 400, 100001)
