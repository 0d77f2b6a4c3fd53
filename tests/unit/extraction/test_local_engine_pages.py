"""The embedded engine on documents of several pages: real OCR (or a page's own text layer),
one answer from all pages, and evidence that names the page each value is printed on."""

from __future__ import annotations

import io
import json
from collections.abc import Iterator
from dataclasses import replace

import pytest
from PIL import Image

from extraction.contract import (
    DocumentPage,
    ExtractionRequest,
    ModelResult,
    PageSource,
    PreparedImage,
    PrintedLine,
)
from extraction.grounding import ground
from extraction.providers.local import LocalProvider
from tests.sample_images import font, printed_page

PROMPT = '{"invoice_no": "Invoice Number", "date": "Date", "total": "Total"}'
REQUEST = ExtractionRequest(prompt=PROMPT, json_mode=True)
Box = tuple[float, float, float, float]
Lines = list[tuple[int, int, str]]

PAGE_ONE: Lines = [
    (60, 40, "ACME TRADING LTD"),
    (60, 130, "Invoice Number: INV-7310"),
    (60, 180, "Date: 05/06/2024"),
    (60, 260, "Description"),
    (700, 260, "Amount"),
    (60, 310, "Blue Pen"),
    (700, 310, "5.60"),
    (60, 360, "Notebook A4"),
    (700, 360, "40.00"),
]
# Page two is rendered at one and a half times the size of page one (and its type with it):
# the engine scales it to page one's width.
PAGE_TWO: Lines = [
    (90, 60, "Stapler"),
    (1050, 60, "12.00"),
    (90, 135, "Printer paper"),
    (1050, 135, "25.35"),
    (90, 300, "Total"),
    (1050, 300, "82.95"),
]
PAGE_ONE_SIZE, PAGE_TWO_SIZE = (900, 640), (1350, 960)
PAGE_ONE_FONT, PAGE_TWO_FONT = 28, 42


def _png(image: Image.Image) -> PreparedImage:
    out = io.BytesIO()
    image.save(out, format="PNG")
    return PreparedImage(out.getvalue(), "image/png", image.width, image.height)


def _page(number: int, lines: Lines, size: tuple[int, int], font_size: int) -> DocumentPage:
    return DocumentPage(number, _png(printed_page(lines, size, font_size)))


def _drawn(lines: Lines, size: tuple[int, int], font_size: int) -> dict[str, Box]:
    """Where each line is drawn, as fractions of its page."""
    face = font(font_size)
    boxes = {}
    for x, y, text in lines:
        left, top, right, bottom = face.getbbox(text)
        width, height = size
        boxes[text] = (
            (x + left) / width,
            (y + top) / height,
            (x + right) / width,
            (y + bottom) / height,
        )
    return boxes


def _inside(box: list[float], drawn: Box, slack: float = 0.02) -> bool:
    return (
        box[0] >= drawn[0] - slack
        and box[1] >= drawn[1] - slack
        and box[2] <= drawn[2] + slack
        and box[3] <= drawn[3] + slack
    )


@pytest.fixture(scope="module")
def provider() -> Iterator[LocalProvider]:
    local = LocalProvider(threads=1)
    yield local
    local.close()


@pytest.fixture(scope="module")
def two_pages(provider: LocalProvider) -> ModelResult:
    def pages() -> Iterator[DocumentPage]:
        # A generator, as the PDF renderer hands pages over: one rendered at a time.
        yield _page(1, PAGE_ONE, PAGE_ONE_SIZE, PAGE_ONE_FONT)
        yield _page(2, PAGE_TWO, PAGE_TWO_SIZE, PAGE_TWO_FONT)

    return provider.extract_pages(pages(), REQUEST)


def test_one_answer_is_filled_from_both_pages(two_pages: ModelResult) -> None:
    assert json.loads(two_pages.content) == {
        "invoice_no": "INV-7310",
        "date": "05/06/2024",
        "total": "82.95",
    }
    assert two_pages.page_sources == (PageSource.OCR, PageSource.OCR)
    assert two_pages.raw["pages"] == 2


def test_evidence_names_the_page_each_value_is_printed_on(two_pages: ModelResult) -> None:
    assert two_pages.printed is not None
    evidence = ground(json.loads(two_pages.content), two_pages.printed)
    first = _drawn(PAGE_ONE, PAGE_ONE_SIZE, PAGE_ONE_FONT)
    second = _drawn(PAGE_TWO, PAGE_TWO_SIZE, PAGE_TWO_FONT)

    assert evidence["invoice_no"]["page"] == 1
    assert evidence["date"]["page"] == 1
    assert evidence["total"]["page"] == 2
    assert _inside(evidence["invoice_no"]["bbox"], first["Invoice Number: INV-7310"])
    assert _inside(evidence["date"]["bbox"], first["Date: 05/06/2024"])
    # As fractions of page two itself, not of the pages stacked together.
    assert _inside(evidence["total"]["bbox"], second["82.95"])
    assert all(found["grounded"] for found in evidence.values())


def test_usage_counts_the_prompt_once_and_every_page_image(
    provider: LocalProvider, two_pages: ModelResult
) -> None:
    one = provider.extract_pages([_page(1, PAGE_ONE, PAGE_ONE_SIZE, PAGE_ONE_FONT)], REQUEST)

    prompt_tokens = -(-len(PROMPT) // 4)
    first_image = one.usage.prompt_tokens - prompt_tokens
    assert two_pages.usage.prompt_tokens > prompt_tokens + first_image  # page two adds its own
    assert two_pages.usage.completion_tokens == -(-len(two_pages.content) // 4)


def test_a_page_with_a_text_layer_is_read_from_it_not_from_its_picture(
    provider: LocalProvider,
) -> None:
    # The picture is blank: whatever is filled in came from the text layer.
    blank = _png(Image.new("RGB", (900, 640), "white"))
    text = (
        PrintedLine("Invoice Number: INV-9921", (0.07, 0.20, 0.45, 0.24), 1.0),
        PrintedLine("Date: 14/02/2025", (0.07, 0.28, 0.32, 0.32), 1.0),
        PrintedLine("Total", (0.07, 0.70, 0.15, 0.74), 1.0),
        PrintedLine("1,204.50", (0.78, 0.70, 0.90, 0.74), 1.0),
    )

    result = provider.extract_pages([DocumentPage(1, blank, text)], REQUEST)

    assert json.loads(result.content) == {
        "invoice_no": "INV-9921",
        "date": "14/02/2025",
        "total": "1,204.50",
    }
    assert result.page_sources == (PageSource.TEXT_LAYER,)
    assert result.printed == tuple(replace(line, page=1) for line in text)
    assert result.printed is not None
    evidence = ground(json.loads(result.content), result.printed, result.how)
    # The payable total read from an exact text layer: the engine is sure of it.
    assert evidence["total"].pop("confidence") > 0.9
    assert evidence["total"] == {
        "bbox": [0.78, 0.7, 0.9, 0.74],
        "text": "1,204.50",
        "ocr_confidence": 1.0,
        "match": 1.0,
        "grounded": True,
        "page": 1,
    }


def test_one_page_gives_what_the_single_image_call_gives(provider: LocalProvider) -> None:
    page = _page(1, PAGE_ONE, PAGE_ONE_SIZE, PAGE_ONE_FONT)

    single = provider.extract(page.image, REQUEST)
    paged = provider.extract_pages([page], REQUEST)

    assert paged.content == single.content
    assert paged.usage == single.usage
    assert single.printed is not None
    assert paged.printed == tuple(replace(line, page=1) for line in single.printed)
    assert paged.page_sources == (PageSource.OCR,)


def test_the_foot_of_one_page_and_the_head_of_the_next_stay_apart(
    provider: LocalProvider,
) -> None:
    # Page one ends with a heading whose text went unwritten; page two starts with its
    # running header just under where that heading stands on the page above.
    pages = [
        _page(1, [(60, 40, "Terms: 30 days"), (60, 604, "Reference")], (900, 640), 28),
        _page(2, [(60, 4, "Page 2 of 2"), (560, 4, "ACME"), (60, 300, "Signed")], (900, 640), 28),
    ]

    text = provider.extract_pages(pages, ExtractionRequest(prompt="Read this."))
    filled = provider.extract_pages(pages, ExtractionRequest(prompt='{"ref": "Reference"}'))

    assert text.content.splitlines() == [
        "Terms: 30 days",
        "Reference",
        "Page 2 of 2 ACME",
        "Signed",
    ]
    # The next page's header is not the value of the heading above it.
    assert json.loads(filled.content) == {"ref": None}


def test_the_grounding_reader_reads_each_page_its_own_way(provider: LocalProvider) -> None:
    text = (PrintedLine("Total 82.95", (0.1, 0.5, 0.4, 0.55), 1.0),)
    pages = [
        _page(1, PAGE_ONE, PAGE_ONE_SIZE, PAGE_ONE_FONT),
        DocumentPage(2, _png(Image.new("RGB", (900, 640), "white")), text),
    ]

    printed, sources = provider.read_pages(iter(pages))

    assert sources == (PageSource.OCR, PageSource.TEXT_LAYER)
    assert {line.page for line in printed} == {1, 2}
    assert [line for line in printed if line.page == 2] == [replace(text[0], page=2)]
    evidence = ground({"invoice_no": "INV-7310", "total": "82.95"}, printed)
    assert (evidence["invoice_no"]["page"], evidence["total"]["page"]) == (1, 2)


def test_evidence_never_joins_lines_of_two_pages() -> None:
    # The same spot on two pages: one box over both would point at nothing on either.
    printed = [
        PrintedLine("Harbour Road", (0.1, 0.5, 0.3, 0.54), 1.0, page=1),
        PrintedLine("Springfield", (0.5, 0.5, 0.7, 0.54), 1.0, page=2),
    ]

    evidence = ground({"address": "Harbour Road Springfield", "town": "Springfield"}, printed)

    assert not evidence["address"]["grounded"]
    assert evidence["address"]["text"] != "Harbour Road Springfield"
    assert evidence["town"] == {
        "bbox": [0.5, 0.5, 0.7, 0.54],
        "text": "Springfield",
        "ocr_confidence": 1.0,
        "match": 1.0,
        "grounded": True,
        "confidence": None,
        "page": 2,
    }
