"""PDFs end to end: uploaded or fetched, priced per page, read by the model whole (document
mode) or page by page (pages mode), each value's evidence on its page; and the PDFs that are
refused at the door, with nothing charged or kept."""

from __future__ import annotations

import json
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from extraction.pdf import render_pages
from tests import stack
from tests.conftest import Caller, Stack, wait_for_job
from tests.sample_images import png_for
from tests.sample_pdfs import encrypted_pdf, scanned_pdf, text_pdf

TEMPLATE = 'Read the size: {"width": "Width", "height": "Height"}'
# US letter pages rendered with their longer side at IMAGEEXTRACT_MAX_IMAGE_SIDE (2048).
PAGE_HEIGHT = 2048


def _page_width(document: bytes) -> int:
    first = next(render_pages(document, max_side=PAGE_HEIGHT, name="test"))
    return first.image.width


def _post(caller: Caller, files: list[tuple[str, Any]], **fields: str) -> httpx.Response:
    return caller.client.post(
        "/v1/jobs", files=files, data={"prompt": TEMPLATE, "json_mode": "true", **fields}
    )


def _items(caller: Caller, job_id: str) -> list[dict[str, Any]]:
    return list(caller.client.get(f"/v1/jobs/{job_id}/items").json()["items"])


def _images_per_call(services: Stack) -> list[int]:
    return list(httpx.get(f"{services.model_url}/_stats").json()["images"])


def test_a_pdf_is_one_result_from_all_its_pages_each_value_grounded_on_its_page(
    caller: Caller, services: Stack, cpu_worker_process: Path
) -> None:
    width = _page_width(text_pdf([["x"]]))
    # Each page prints enough to count as a real text layer (20 characters or more).
    document = text_pdf(
        [["Invoice 7 of Northwind Traders", f"Width: {width} px"],
         ["Totals of invoice 7, continued", f"Height: {PAGE_HEIGHT} px"]]
    )  # fmt: skip
    files = [("images", ("scan.png", png_for(3), "image/png")),
             ("images", ("invoice.pdf", document, "application/pdf"))]  # fmt: skip
    response = _post(caller, files, grounding="true")
    assert response.status_code == 202, response.text
    # 10 per job, 1 for the image, 1 for each of the PDF's two pages.
    assert response.json()["credits_reserved"] == 13
    job = wait_for_job(caller.client, response.json()["id"])
    assert job["status"] == "succeeded", job
    assert job["document_mode"] == "document"
    assert job["credits"] == {"reserved": 13, "captured": 13, "refunded": 0}

    image, pdf = _items(caller, job["id"])
    assert image["page_count"] is None
    assert all(entry["page"] is None for entry in image["evidence"].values())
    # Both pages went to the model in one request; it answered for the document.
    assert sorted(_images_per_call(services)) == [1, 2]
    assert pdf["page_count"] == 2
    assert pdf["pages"] == [{"page": 1, "source": "image"}, {"page": 2, "source": "image"}]
    assert pdf["parsed"] == {"width": str(width), "height": str(PAGE_HEIGHT)}
    # The grounding reader read the PDF's text layer: each value on the page it is printed.
    for path, page, line in (("width", 1, 1), ("height", 2, 1)):
        found = pdf["evidence"][path]
        assert found["grounded"] is True, found
        assert found["page"] == page
        assert found["ocr_confidence"] == 1.0
        _x0, y0, _x1, y1 = found["bbox"]
        top = (72 + line * 18) / 792
        assert top - 0.02 <= y0 < y1 <= top + 0.04
    assert services.stored_files() == []


# The first test reads a stored PDF on both stores; these need one.
@pytest.mark.one_store
def test_pages_mode_gives_one_result_per_page(caller: Caller, services: Stack) -> None:
    document = scanned_pdf([["page one"], ["page two"], ["page three"]])
    response = _post(caller, [("images", ("scan.pdf", document, "application/pdf"))],
                     document_mode="pages")  # fmt: skip
    assert response.status_code == 202, response.text
    job = wait_for_job(caller.client, response.json()["id"])
    assert job["status"] == "succeeded", job
    assert job["document_mode"] == "pages"
    (item,) = _items(caller, job["id"])
    width = _page_width(document)
    page = {"width": str(width), "height": str(PAGE_HEIGHT)}
    assert item["parsed"] == [page, page, page]
    assert json.loads(item["content"]) == item["parsed"]
    assert [entry["page"] for entry in item["pages"]] == [1, 2, 3]
    assert _images_per_call(services) == [1, 1, 1]
    assert job["credits"]["captured"] == 13


@pytest.fixture
def pdf_server() -> Iterator[str]:
    """Serves /three.pdf (a three-page scan) on loopback."""
    document = scanned_pdf([["one"], ["two"], ["three"]])

    def answer(path: str) -> stack.Reply:
        if path == "/three.pdf":
            return 200, {"Content-Type": "application/pdf"}, document
        return 404, {}, b""

    with stack.http_server(answer) as url:
        yield url


@pytest.mark.one_store
def test_a_pdf_by_url_is_priced_by_its_pages_once_fetched(
    make_caller: Callable[..., Caller], worker_process: Path, pdf_server: str
) -> None:
    rich, poor = make_caller("rich"), make_caller("poor", credits=12)
    body = {"prompt": TEMPLATE, "json_mode": True, "input_method": "url",
            "images": [f"{pdf_server}/three.pdf"]}  # fmt: skip
    accepted = rich.client.post("/v1/jobs", json=body).json()
    # Not known to be a PDF yet: priced as one image.
    assert accepted["credits_reserved"] == 11
    job = wait_for_job(rich.client, accepted["id"])
    assert job["status"] == "succeeded", job
    assert job["credits"] == {"reserved": 13, "captured": 13, "refunded": 0}
    assert _items(rich, job["id"])[0]["page_count"] == 3
    assert rich.client.get("/v1/account").json()["balance"] == 1_000_000 - 13

    # 12 credits cover the job as one image (11), not its three pages (13).
    job = wait_for_job(poor.client, poor.client.post("/v1/jobs", json=body).json()["id"])
    assert job["status"] == "failed"
    (item,) = _items(poor, job["id"])
    assert item["error"]["code"] == "insufficient_credits", item
    assert job["credits"] == {"reserved": 11, "captured": 10, "refunded": 1}
    assert poor.client.get("/v1/account").json()["balance"] == 2


def test_pdfs_that_cannot_run_are_refused_at_the_door_with_nothing_charged_or_kept(
    caller: Caller, services: Stack, api_with: Callable[..., str]
) -> None:
    before = caller.client.get("/v1/account").json()["balance"]
    good = ("images", ("ok.png", png_for(1), "image/png"))
    three = text_pdf([["one"], ["two"], ["three"]])
    cases = [
        (encrypted_pdf(), "encrypted_pdf", "encrypted PDF"),
        (three[: len(three) // 2], "corrupt_image", "cannot be read"),
        (b"%PDF-1.7\n" + b"\x00" * 300 + b"\n%%EOF\n", "corrupt_image", "cannot be read"),
    ]
    for document, code, words in cases:
        response = _post(caller, [good, ("images", ("scan.pdf", document, "application/pdf"))])
        assert response.status_code == 400, response.text
        problem = response.json()
        assert (problem["code"], problem["input"]) == (code, "images[1]")
        assert "images[1] (scan.pdf)" in problem["detail"]
        assert words in problem["detail"]

    # Limits: pages per document, and pages and images per job, both named.
    small = httpx.Client(
        base_url=api_with(max_pages_per_document=2, max_images_per_job=3),
        headers={"Authorization": f"Bearer {caller.key}"},
    )
    with small:
        long = [("images", ("long.pdf", three, "application/pdf"))]
        response = small.post("/v1/jobs", files=long, data={"prompt": TEMPLATE})
        assert response.status_code == 400
        assert response.json()["code"] == "too_many_pages"
        assert response.json()["input"] == "images[0]"
        assert "has 3 pages; a document takes at most 2" in response.json()["detail"]
        two = text_pdf([["one"], ["two"]])
        files = [good, good, ("images", ("two.pdf", two, "application/pdf"))]
        response = small.post("/v1/jobs", files=files, data={"prompt": TEMPLATE})
        assert response.status_code == 400
        assert response.json()["code"] == "too_many_pages"
        assert "4 pages and images" in response.json()["detail"]
        # Documents run live: the Batch API lane takes images.
        response = small.post("/v1/jobs", files=[("images", ("two.pdf", two, "application/pdf"))],
                              data={"prompt": TEMPLATE, "mode": "batch"})  # fmt: skip
        assert response.status_code == 400
        assert response.json()["input"] == "images[0]"

    # The compatible APIs keep their documented formats: a PDF is not an image there.
    u1 = caller.client.post(
        "/v1/ocr/image/extract",
        files=[("image", ("scan.pdf", three, "application/pdf"))],
        data={"model": "u1-ocr-extract", "prompt": "Read it"},
    )
    assert u1.json()["base_resp"]["status_code"] == 261001
    assert caller.client.get("/v1/account").json()["balance"] == before
    assert caller.client.get("/v1/jobs").json()["jobs"] == []
    assert services.stored_files() == []
