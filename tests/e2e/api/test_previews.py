"""POST /v1/previews: one page of a PDF drawn as a JPEG (what the web page shows of a
document), and the files it refuses, with nothing kept."""

from __future__ import annotations

import io
from collections.abc import Callable

import httpx
import pytest
from PIL import Image

from tests.conftest import Caller, Stack
from tests.sample_images import png_for
from tests.sample_pdfs import LEFT_MARGIN, LETTER, encrypted_pdf, line_top, text_pdf

# Once, with images in a folder: nothing is stored either way.
pytestmark = pytest.mark.one_store

TWO_PAGES = text_pdf([["Page one"], ["Page two", "Totals", "Due", "Total: 1017.40"]])


def _preview(
    client: httpx.Client, document: bytes, name: str = "two.pdf", **fields: str
) -> httpx.Response:
    return client.post(
        "/v1/previews", files={"file": (name, document, "application/pdf")}, data=fields
    )


def _inked(picture: Image.Image, line: int) -> bool:
    """Whether text is printed where sample_pdfs prints line ``line`` of a page."""
    width, height = picture.size
    left = round(LEFT_MARGIN / LETTER[0] * width)
    top, bottom = (round(line_top(index) * height) for index in (line, line + 1))
    band = picture.convert("L").crop((left, top, width // 2, bottom))
    return sum(band.histogram()[:100]) > 0  # any pixel darker than 100 of 255


def test_a_pdf_page_is_drawn_as_a_jpeg_with_the_page_count(
    make_caller: Callable[..., Caller], services: Stack
) -> None:
    caller = make_caller()
    before = caller.client.get("/v1/account").json()["balance"]
    response = _preview(caller.client, TWO_PAGES, page="2")
    assert response.status_code == 200, response.text
    assert response.headers["content-type"] == "image/jpeg"
    assert response.headers["x-page-count"] == "2"
    picture = Image.open(io.BytesIO(response.content))
    assert picture.format == "JPEG"
    # A letter page, its longer side 1600 pixels.
    assert picture.height == 1600
    assert picture.width / picture.height == pytest.approx(LETTER[0] / LETTER[1], abs=0.005)
    # Page 2 it is: its fourth line is printed, and page 1 has one line only.
    assert _inked(picture, 3)
    first = Image.open(io.BytesIO(_preview(caller.client, TWO_PAGES).content))
    assert _inked(first, 0)
    assert not _inked(first, 3)
    # Nothing charged, nothing kept.
    assert caller.client.get("/v1/account").json()["balance"] == before
    assert services.stored_files() == []


def test_previews_refuse_what_is_not_a_readable_pdf_page(
    make_caller: Callable[..., Caller], api_url: str, api_with: Callable[..., str]
) -> None:
    caller = make_caller()
    image = _preview(caller.client, png_for(1), name="photo.png")
    assert image.status_code == 400
    assert (image.json()["code"], image.json()["input"]) == ("unsupported_image_format", "file")
    assert "photo.png" in image.json()["detail"]

    past = _preview(caller.client, TWO_PAGES, page="3")
    assert past.status_code == 400
    assert (past.json()["code"], past.json()["input"]) == ("invalid_request", "page")
    assert "page 3 is past the end" in past.json()["detail"]
    assert "2 pages" in past.json()["detail"]

    locked = _preview(caller.client, encrypted_pdf(), name="locked.pdf")
    assert locked.status_code == 400
    assert locked.json()["code"] == "encrypted_pdf"
    assert "locked.pdf" in locked.json()["detail"]

    anonymous = httpx.post(
        f"{api_url}/v1/previews", files={"file": ("two.pdf", TWO_PAGES, "application/pdf")}
    )
    assert anonymous.status_code == 401

    # The size limit is the one on each file of a job.
    small = api_with(max_image_bytes=len(TWO_PAGES) - 1)
    headers = {"Authorization": f"Bearer {caller.key}"}
    with httpx.Client(base_url=small, headers=headers, timeout=30) as client:
        large = _preview(client, TWO_PAGES)
    assert large.status_code == 413
    assert (large.json()["code"], large.json()["input"]) == ("image_too_large", "file")
