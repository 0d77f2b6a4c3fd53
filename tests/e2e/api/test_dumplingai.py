"""The DumplingAI API end to end: the reference requests, every error, limits and formats."""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Callable
from datetime import timedelta
from typing import Any

import httpx
import pytest
from PIL import Image
from sqlalchemy import func, select

from tests.conftest import Caller, Stack, wait_for_job
from tests.sample_images import jpeg_for, png_for, size_for

MB = 1024 * 1024
URL = "/api/v1/extract-image"
PNG_HEADER = b"\x89PNG\r\n\x1a\n"


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _encode(fmt: str, size: tuple[int, int]) -> bytes:
    if fmt == "HEIF":
        import pillow_heif

        pillow_heif.register_heif_opener()
    out = io.BytesIO()
    Image.new("RGB", size, (200, 30, 90)).save(out, fmt)
    return out.getvalue()


def _size_json(index: int) -> dict[str, int]:
    width, height = size_for(index)
    return {"width": width, "height": height}


def _ok(response: httpx.Response) -> dict[str, Any]:
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "application/json"
    _assert_rate_limit_headers(response)
    body: dict[str, Any] = response.json()
    assert set(body) == {"results", "prompt", "imageCount", "creditUsage"}
    return body


def _error(response: httpx.Response, status: int) -> str:
    assert response.status_code == status, response.text
    _assert_rate_limit_headers(response)
    body = response.json()
    assert set(body) == {"error"}
    message: str = body["error"]
    return message


def _assert_rate_limit_headers(response: httpx.Response) -> None:
    assert int(response.headers["x-ratelimit-limit"]) > 0
    assert int(response.headers["x-ratelimit-remaining"]) >= 0


def _job_count(session_factory: Any) -> int:
    from db.models import Job

    with session_factory() as session:
        return int(session.scalar(select(func.count()).select_from(Job)) or 0)


def test_first_reference_example_two_urls_in_json_mode(caller: Caller, image_server: str) -> None:
    # The reference's curl example, with its https://example.com host replaced by a loopback one.
    body = {
        "inputMethod": "url",
        "images": [f"{image_server}/receipt.jpg", f"{image_server}/menu.png"],
        "prompt": "Summarize the totals and highlight any discounts.",
        "jsonMode": True,
    }
    response = caller.client.post(
        URL, content=json.dumps(body), headers={"Content-Type": "application/json"}
    )
    result = _ok(response)
    assert json.loads(result["results"]) == [_size_json(0), _size_json(1)]
    assert result["prompt"] == body["prompt"]
    assert result["imageCount"] == 2
    assert result["creditUsage"] == 12

    job = caller.client.get(response.headers["location"]).json()
    assert job["status"] == "succeeded"
    assert job["json_mode"] is True
    assert job["credits"]["captured"] == 12


def test_second_reference_example_one_url_as_text(
    caller: Caller, image_server: str, session_factory: Any
) -> None:
    body = {
        "inputMethod": "url",
        "images": [f"{image_server}/sample-image.jpg"],
        "prompt": "Describe the main elements in this image.",
        "jsonMode": False,
    }
    result = _ok(caller.client.post(URL, json=body))
    width, height = size_for(2)
    assert result == {
        "results": f"An image of {width}x{height} pixels.",
        "prompt": body["prompt"],
        "imageCount": 1,
        "creditUsage": 11,
    }
    from db.models import Job

    with session_factory() as session:
        assert session.scalars(select(Job.api)).all() == ["dumplingai"]


def test_several_images_as_text_are_headed_blocks_in_input_order(caller: Caller) -> None:
    images = [_b64(png_for(index)) for index in range(3)]
    result = _ok(
        caller.client.post(URL, json={"inputMethod": "base64", "images": images, "prompt": "x"})
    )
    blocks = [
        f"Image {index + 1}:\nAn image of {size_for(index)[0]}x{size_for(index)[1]} pixels."
        for index in range(3)
    ]
    assert result["results"] == "\n\n".join(blocks)
    assert result["creditUsage"] == 13


def test_one_image_in_json_mode_is_its_json_value(caller: Caller) -> None:
    body = {"inputMethod": "base64", "images": [_b64(jpeg_for(7))], "prompt": "x", "jsonMode": True}
    assert json.loads(_ok(caller.client.post(URL, json=body))["results"]) == _size_json(7)


@pytest.mark.parametrize(
    ("fmt", "size"),
    [("HEIF", (33, 21)), ("WEBP", (34, 22)), ("PPM", (35, 23)), ("TGA", (36, 24))],
)
def test_heic_webp_and_other_pillow_formats_are_read(
    caller: Caller, fmt: str, size: tuple[int, int]
) -> None:
    body = {
        "inputMethod": "base64",
        "images": [_b64(_encode(fmt, size))],
        "prompt": "x",
        "jsonMode": True,
    }
    result = _ok(caller.client.post(URL, json=body))
    assert json.loads(result["results"]) == {"width": size[0], "height": size[1]}


def test_get_lists_the_supported_formats_and_limits(caller: Caller) -> None:
    response = caller.client.get(URL)
    assert response.status_code == 200
    _assert_rate_limit_headers(response)
    body = response.json()
    assert body["supportedFormats"] == ["PNG", "JPEG", "WebP", "HEIC", "HEIF"]
    assert {"BMP", "GIF", "TIFF", "PPM"} <= set(body["convertedToPng"])
    assert body["limits"] == {
        "maxImages": 3000,
        "maxImageBytes": 20 * MB,
        "maxTotalBytes": 100 * MB,
        "maxOutputTokens": 8192,
    }


@pytest.mark.parametrize("source", ["ZAPIER", "mcp", "CLI"])
def test_request_source_is_kept_whatever_the_client_calls_itself(
    caller: Caller, source: str
) -> None:
    """The reference lists an enum, but DumplingAI's own clients send "mcp" and "CLI"."""
    body = {"inputMethod": "base64", "images": [_b64(png_for(0))], "prompt": "x"}
    response = caller.client.post(URL, json={**body, "requestSource": source})
    _ok(response)
    job = caller.client.get(response.headers["location"]).json()
    assert job["metadata"] == {"requestSource": source}


def test_a_request_source_past_64_characters_is_refused(caller: Caller) -> None:
    body = {"inputMethod": "base64", "images": [_b64(png_for(0))], "prompt": "x"}
    message = _error(caller.client.post(URL, json={**body, "requestSource": "x" * 65}), 400)
    assert "requestSource" in message
    assert "64" in message


def test_one_image_as_image_like_dumplingais_own_clients_send_it(
    caller: Caller, image_server: str
) -> None:
    """{"image": "<url or base64>"} is a one-element images; unknown fields are ignored."""
    for image in (_b64(png_for(4)), f"{image_server}/img/5.png"):
        method = "url" if image.startswith("http") else "base64"
        body = {"inputMethod": method, "image": image, "prompt": "x", "jsonMode": True,
                "requestSource": "mcp", "clientVersion": "1.2.3"}  # fmt: skip
        result = _ok(caller.client.post(URL, json=body))
        assert result["imageCount"] == 1
        assert json.loads(result["results"]) == _size_json(4 if method == "base64" else 5)
    both = {"inputMethod": "base64", "image": _b64(png_for(0)), "images": [_b64(png_for(1))],
            "prompt": "x"}  # fmt: skip
    assert "once" in _error(caller.client.post(URL, json=both), 400)


@pytest.mark.parametrize(
    ("body", "mentions"),
    [
        ({"inputMethod": "base64", "prompt": "x"}, "images"),
        ({"inputMethod": "base64", "images": [], "prompt": "x"}, "images"),
        ({"inputMethod": "base64", "images": ["aGVsbG8="]}, "prompt"),
        ({"inputMethod": "base64", "images": ["aGVsbG8="], "prompt": " "}, "prompt"),
        ({"images": ["aGVsbG8="], "prompt": "x"}, "inputMethod"),
        ({}, "inputMethod, images, prompt"),
        ({"inputMethod": "fax", "images": ["aGVsbG8="], "prompt": "x"}, "inputMethod"),
        ({"inputMethod": "url", "images": ["aGVsbG8="], "prompt": "x"}, "inputMethod"),
        ({"inputMethod": "base64", "images": ["https://example.com/a.png"], "prompt": "x"},
         "inputMethod"),
        ({"inputMethod": "base64", "images": ["not base64!"], "prompt": "x"}, "base64"),
        ({"inputMethod": "base64", "images": [_b64(b"just text")], "prompt": "x"}, "format"),
        ({"inputMethod": "url", "images": ["file:///etc/passwd"], "prompt": "x"}, "http"),
        ({"inputMethod": "base64", "images": "abc", "prompt": "x"}, "images"),
        ({"inputMethod": "base64", "images": [_b64(png_for(0))], "prompt": "x",
          "jsonMode": "maybe"}, "jsonMode"),
        ({"inputMethod": "base64", "images": [_b64(png_for(0))], "prompt": "x",
          "webhook_url": "ftp://x"}, "webhook_url"),
    ],
)  # fmt: skip
def test_bad_request_is_400_with_an_error(
    caller: Caller, session_factory: Any, body: dict[str, Any], mentions: str
) -> None:
    assert mentions in _error(caller.client.post(URL, json=body), 400)
    assert _job_count(session_factory) == 0


def test_body_that_is_not_json_is_400(caller: Caller) -> None:
    response = caller.client.post(
        URL, content=b"{oops", headers={"Content-Type": "application/json"}
    )
    assert "not valid JSON" in _error(response, 400)
    response = caller.client.post(URL, files={"images": ("a.png", png_for(0))})
    assert "application/json" in _error(response, 400)


def test_image_over_20_mb_is_400(caller: Caller, session_factory: Any) -> None:
    big = _b64(PNG_HEADER + b"\0" * (20 * MB + 1))
    body = {"inputMethod": "base64", "images": [_b64(png_for(0)), big], "prompt": "x"}
    message = _error(caller.client.post(URL, json=body), 400)
    assert "images[1]" in message
    assert "20 MB" in message
    assert _job_count(session_factory) == 0


@pytest.mark.one_store  # refused before anything is stored
def test_images_over_100_mb_in_all_are_400(caller: Caller, session_factory: Any) -> None:
    # Six images of 17 MB: each within its limit, together over 100 MB.
    one = _b64(PNG_HEADER + b"\0" * (17 * MB)).encode()
    body = b'{"inputMethod": "base64", "prompt": "x", "images": ["' + b'", "'.join([one] * 6)
    body += b'"]}'
    response = caller.client.post(URL, content=body, headers={"Content-Type": "application/json"})
    assert "100 MB" in _error(response, 400)
    assert _job_count(session_factory) == 0


@pytest.mark.one_store  # refused before anything is stored
def test_more_than_3000_images_are_400(caller: Caller, session_factory: Any) -> None:
    body = {"inputMethod": "base64", "images": [_b64(png_for(0))] * 3001, "prompt": "x"}
    assert "3000" in _error(caller.client.post(URL, json=body), 400)
    assert _job_count(session_factory) == 0


def test_bad_or_missing_key_is_401(api_url: str, caller: Caller) -> None:
    body = {"inputMethod": "base64", "images": [_b64(png_for(0))], "prompt": "x"}
    for headers in ({}, {"Authorization": "Bearer iek_wrong"}, {"Authorization": "Token x"}):
        for method in ("POST", "GET"):
            response = httpx.request(
                method, f"{api_url}{URL}", headers=headers, json=body, timeout=30
            )
            assert _error(response, 401) == "Invalid or missing Authorization header"


def test_every_image_failing_is_500(
    caller: Caller, image_server: str, fake_model: Callable[..., dict[str, Any]]
) -> None:
    body = {"inputMethod": "url", "images": [f"{image_server}/missing.jpg"], "prompt": "x"}
    message = _error(caller.client.post(URL, json=body), 500)
    assert message.startswith("Failed to extract image data: ")
    assert "404" in message

    fake_model(error_rate=1.0)
    body = {"inputMethod": "base64", "images": [_b64(png_for(0))] * 2, "prompt": "x"}
    message = _error(caller.client.post(URL, json=body), 500)
    assert message.startswith("Failed to extract image data: none of the 2 images")


def test_some_images_failing_leaves_gaps_and_refunds_them(
    caller: Caller, image_server: str
) -> None:
    images = [
        f"{image_server}/img/0.png",
        f"{image_server}/missing.png",
        f"{image_server}/img/2.png",
    ]
    body = {"inputMethod": "url", "images": images, "prompt": "x", "jsonMode": True}
    result = _ok(caller.client.post(URL, json=body))
    assert json.loads(result["results"]) == [_size_json(0), None, _size_json(2)]
    assert result["imageCount"] == 3
    assert result["creditUsage"] == 12

    result = _ok(caller.client.post(URL, json={**body, "jsonMode": False}))
    blocks = result["results"].split("\n\n")
    assert blocks[0] == "Image 1 (0.png):\nAn image of 16x16 pixels."
    assert blocks[1].startswith("Image 2 (missing.png):\n[failed: ")
    assert blocks[2] == "Image 3 (2.png):\nAn image of 18x16 pixels."


def test_wait_running_out_is_500_and_the_job_keeps_running(
    caller: Caller, settings: Any, fake_model: Callable[..., dict[str, Any]],
    monkeypatch: pytest.MonkeyPatch,
) -> None:  # fmt: skip
    monkeypatch.setattr(settings, "sync_wait", timedelta(seconds=0.5))
    # Longer than the wait, well inside the stack's 2 s model timeout (a 2 s answer raced it).
    fake_model(latency=1)
    body = {"inputMethod": "base64", "images": [_b64(png_for(0))], "prompt": "x"}
    message = _error(caller.client.post(URL, json=body), 500)
    assert "keeps running" in message
    job = wait_for_job(caller.client, message.rsplit("/", 1)[-1])
    assert job["status"] == "succeeded"


@pytest.mark.parametrize(
    ("extra", "params"),
    [
        ({"async": True}, {}),
        ({}, {"async": "true"}),
        ({"webhook_url": "http://127.0.0.1:9/hook"}, {}),
        ({"webhookUrl": "http://127.0.0.1:9/hook"}, {}),
    ],
)
def test_async_or_webhook_returns_the_job_at_once(
    caller: Caller, extra: dict[str, Any], params: dict[str, str]
) -> None:
    body = {"inputMethod": "base64", "images": [_b64(png_for(0))] * 2, "prompt": "x", **extra}
    response = caller.client.post(URL, params=params, json=body)
    assert response.status_code == 202, response.text
    accepted = response.json()
    assert set(accepted) == {"id", "url", "status", "item_count", "credits_reserved"}
    assert accepted["item_count"] == 2
    assert accepted["credits_reserved"] == 12
    assert response.headers["location"] == accepted["url"]
    job = wait_for_job(caller.client, accepted["id"])
    assert job["status"] == "succeeded"
    assert job["webhook_url"] == (extra.get("webhook_url") or extra.get("webhookUrl"))


# 3000 images through S3 are test_jobs.py's 3000-image job; this one is the compatible
# API's intake of as many, which is the same on either store.
@pytest.mark.one_store
@pytest.mark.timeout(300)
def test_3000_base64_images_in_json_mode(caller: Caller, services: Stack) -> None:
    images = [_b64(png_for(index)) for index in range(3000)]
    body = {"inputMethod": "base64", "images": images, "prompt": "Size?", "jsonMode": True}
    result = _ok(caller.client.post(URL, json=body, timeout=280))
    assert result["imageCount"] == 3000
    assert result["creditUsage"] == 3010
    assert json.loads(result["results"]) == [_size_json(index) for index in range(3000)]
    assert services.stored_files() == []
