"""Grounding a remote model's answer on the real stack: the model answers on the model
queue, the image is read on the cpu queue, and each value gets its evidence."""

from __future__ import annotations

import io
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import httpx
from PIL import Image, ImageDraw

from tests.conftest import Caller, Stack, wait_for_job
from tests.sample_images import font

TEMPLATE = 'Read the size: {"width": "Width", "height": "Height"}'
SIZE = (480, 320)


def _printed_size() -> tuple[bytes, dict[str, tuple[float, float, float, float]]]:
    """A PNG of 480 x 320 pixels that prints its own size (which the fake model answers),
    and where each line is drawn, as fractions of the image."""
    image = Image.new("RGB", SIZE, "white")
    draw = ImageDraw.Draw(image)
    face = font(28)
    boxes = {}
    for y, text in ((60, "Width: 480 px"), (180, "Height: 320 px")):
        draw.text((40, y), text, fill="black", font=face)
        left, top, right, bottom = draw.textbbox((40, y), text, font=face)
        boxes[text] = (left / SIZE[0], top / SIZE[1], right / SIZE[0], bottom / SIZE[1])
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue(), boxes


def _submit(caller: Caller, data: bytes, **fields: str) -> dict[str, Any]:
    response = caller.client.post(
        "/v1/jobs",
        files=[("images", ("size.png", data, "image/png"))],
        data={"prompt": TEMPLATE, "json_mode": "true", **fields},
    )
    assert response.status_code == 202, response.text
    return wait_for_job(caller.client, response.json()["id"])


def test_a_remote_models_answer_gets_evidence_where_each_value_is_printed(
    caller: Caller, services: Stack, cpu_worker_process: Path
) -> None:
    data, boxes = _printed_size()
    job = _submit(caller, data, grounding="true")
    assert job["status"] == "succeeded"
    assert job["grounding"] is True
    item = caller.client.get(f"/v1/jobs/{job['id']}/items").json()["items"][0]
    assert item["parsed"] == {"width": "480", "height": "320"}
    for path, drawn in (("width", "Width: 480 px"), ("height", "Height: 320 px")):
        found = item["evidence"][path]
        assert found["grounded"] is True
        # A remote model says nothing of how it found a value: no confidence is made up.
        assert found["confidence"] is None
        assert drawn.split()[1] in found["text"]
        _x0, y0, _x1, y1 = found["bbox"]
        # On the line where the value is printed.
        assert boxes[drawn][1] - 0.03 <= y0 < y1 <= boxes[drawn][3] + 0.03
    results = caller.client.get(f"/v1/jobs/{job['id']}/results").text.splitlines()
    assert json.loads(results[0])["evidence"] == item["evidence"]
    assert services.stored_files() == []


def test_values_the_image_does_not_print_are_marked_not_grounded(
    caller: Caller, cpu_worker_process: Path
) -> None:
    blank = io.BytesIO()
    Image.new("RGB", SIZE, "white").save(blank, format="PNG")
    job = _submit(caller, blank.getvalue(), grounding="true")
    item = caller.client.get(f"/v1/jobs/{job['id']}/items").json()["items"][0]
    assert item["status"] == "succeeded"
    assert {path: e["grounded"] for path, e in item["evidence"].items()} == {
        "width": False, "height": False,
    }  # fmt: skip


def test_grounding_is_off_by_default_for_a_remote_model(
    caller: Caller, services: Stack, fake_model: Callable[..., Any]
) -> None:
    data, _ = _printed_size()
    job = _submit(caller, data)
    assert job["grounding"] is False
    item = caller.client.get(f"/v1/jobs/{job['id']}/items").json()["items"][0]
    assert item["evidence"] is None
    stats = httpx.get(f"{services.model_url}/_stats").json()
    assert stats["calls"] == {"ok": 1}
