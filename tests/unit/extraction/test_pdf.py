"""Reading PDFs: page counts, refusals (encrypted, damaged), pages rendered one at a time,
and each page's text layer where it has a real one."""

from __future__ import annotations

import io
import threading

import pytest
from PIL import Image

from core.errors import CorruptImage, EncryptedDocument
from extraction.contract import DocumentPage
from extraction.pdf import count_pages, is_pdf, render_pages
from tests.sample_images import jpeg_for, png_for
from tests.sample_pdfs import (
    LEFT_MARGIN,
    LETTER,
    damaged_page_pdf,
    empty_pdf,
    encrypted_pdf,
    form_pdf,
    line_top,
    rotated_pdf,
    scanned_pdf,
    text_pdf,
    turned_text_pdf,
)

NAME = "images[2] (scan.pdf)"
INVOICE = ["Invoice number 12345 dated 2024-05-01", "Total due: 42.00 EUR"]


def render(
    data: bytes,
    max_side: int = 1024,
    *,
    text_layer: bool = True,
    first: int = 1,
    last: int | None = None,
) -> list[DocumentPage]:
    pages = render_pages(
        data, max_side=max_side, name=NAME, text_layer=text_layer, first=first, last=last
    )
    return list(pages)


def picture(page: DocumentPage) -> Image.Image:
    image = Image.open(io.BytesIO(page.image.data))
    image.load()
    return image


def darkest(page: DocumentPage, box: tuple[float, float, float, float]) -> int:
    """The darkest grey level within ``box`` (fractions of the page): ink shows as < 128."""
    image = picture(page).convert("L")
    width, height = image.size
    crop = image.crop(
        (int(box[0] * width), int(box[1] * height), int(box[2] * width), int(box[3] * height))
    )
    low, _high = crop.getextrema()
    assert isinstance(low, int)
    return low


def test_a_pdf_is_known_by_its_header_even_after_some_junk() -> None:
    assert is_pdf(text_pdf([["x"]])[:1024])
    assert is_pdf(b"\r\n" * 100 + b"%PDF-1.7\n")
    assert not is_pdf(b" " * 1024 + b"%PDF-1.7\n")
    assert not is_pdf(png_for(1))
    assert not is_pdf(jpeg_for(1))
    assert not is_pdf(b"")


def test_page_counts_of_one_and_many_page_documents() -> None:
    assert count_pages(text_pdf([INVOICE]), name=NAME) == 1
    assert count_pages(text_pdf([[f"Page {n}"] for n in range(1, 38)]), name=NAME) == 37
    assert count_pages(scanned_pdf([INVOICE, INVOICE]), name=NAME) == 2


def test_an_encrypted_pdf_is_refused_naming_the_input() -> None:
    data = encrypted_pdf()
    with pytest.raises(EncryptedDocument) as refused:
        count_pages(data, name=NAME)
    assert refused.value.kind.code == "encrypted_pdf"
    assert refused.value.kind.http_status == 400
    assert not refused.value.kind.value.retryable
    assert refused.value.input == NAME
    assert refused.value.message.startswith(f"{NAME} is an encrypted PDF")
    assert "password" in refused.value.message
    # Rendering refuses it the same way, when its first page is asked for.
    with pytest.raises(EncryptedDocument):
        render(data)


def test_a_pdf_encrypted_only_against_changes_opens_without_a_password() -> None:
    data = encrypted_pdf([INVOICE], user_password=None)
    assert count_pages(data, name=NAME) == 1
    (page,) = render(data)
    assert page.text is not None
    assert page.text[0].text == INVOICE[0]


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"", "empty"),
        (text_pdf([INVOICE] * 3)[:300], "cut short"),
        (text_pdf([INVOICE] * 3)[:-40], "cut short"),
        (b"%PDF-1.7\n" + bytes(range(256)) * 8 + b"\n%%EOF\n", "not a PDF or it is damaged"),
        (empty_pdf(), "has no pages"),
    ],
    ids=["empty", "header-only", "cut-before-the-end", "garbage", "no-pages"],
)
def test_a_damaged_pdf_is_corrupt_naming_the_input(data: bytes, reason: str) -> None:
    with pytest.raises(CorruptImage) as refused:
        count_pages(data, name=NAME)
    assert refused.value.input == NAME
    assert refused.value.message.startswith(NAME)
    assert reason in refused.value.message
    with pytest.raises(CorruptImage):
        render(data)


def test_pages_come_in_order_fitting_max_side_as_jpeg() -> None:
    data = text_pdf([[f"Page {n} of the quarterly report for the board"] for n in (1, 2, 3)])
    pages = render(data, max_side=1024)
    assert [page.number for page in pages] == [1, 2, 3]
    for page in pages:
        assert page.image.media_type == "image/jpeg"
        # US letter is portrait: its height is the longer side, its width in proportion.
        assert page.image.height == 1024
        assert page.image.width == pytest.approx(1024 * 612 / 792, abs=1)
        assert picture(page).format == "JPEG"
        assert picture(page).size == (page.image.width, page.image.height)
        assert page.text is not None
        assert page.text[0].text.startswith(f"Page {page.number} of")


def test_a_range_of_pages_is_rendered_alone() -> None:
    data = text_pdf([[f"Page {n} of the quarterly report for the board"] for n in range(1, 6)])
    pages = render(data, first=2, last=3)
    assert [page.number for page in pages] == [2, 3]
    assert [page.text[0].text[:6] for page in pages if page.text] == ["Page 2", "Page 3"]
    with pytest.raises(ValueError, match="5 pages"):
        render(data, first=4, last=6)


def test_a_small_page_is_not_blown_up_past_300_dpi() -> None:
    # A 2 x 1 inch label: 300 dpi makes it 600 x 300 pixels, well under max_side.
    (page,) = render(text_pdf([[]], size=(144.0, 72.0)), max_side=4096)
    assert (page.image.width, page.image.height) == (600, 300)


def test_a_text_layer_gives_lines_where_they_are_printed() -> None:
    lines = [*INVOICE, "Payable within 30 days to account DE89 3704 0044 0532 0130 00"]
    (page,) = render(text_pdf([lines]))
    assert page.text is not None
    assert [line.text for line in page.text] == lines
    for index, line in enumerate(page.text):
        x0, y0, x1, y1 = line.box
        assert x0 == pytest.approx(LEFT_MARGIN / LETTER[0], abs=0.01)
        # The box holds the 12 point line: its top at the line's top, its height one line.
        assert y0 == pytest.approx(line_top(index), abs=0.01)
        assert y1 - y0 == pytest.approx(14 / LETTER[1], abs=0.005)
        assert x0 < x1 <= 1.0
        assert line.page == 1
        assert line.confidence == 1.0
    # The first line is printed near the top of the page, and its ink is in its box.
    assert page.text[0].box[1] < 0.2
    assert darkest(page, page.text[0].box) < 128


def test_lines_of_a_later_page_carry_that_page() -> None:
    pages = render(text_pdf([["Cover page of the quarterly report"], INVOICE]))
    assert pages[1].text is not None
    assert {line.page for line in pages[1].text} == {2}


def test_a_scanned_page_has_no_text_but_its_picture_shows_the_print() -> None:
    (page,) = render(scanned_pdf([INVOICE]), max_side=2048)
    assert page.text is None
    first_line = (LEFT_MARGIN / LETTER[0], line_top(0), 0.45, line_top(1))
    assert darkest(page, first_line) < 128
    assert darkest(page, (0.1, 0.5, 0.9, 0.9)) > 200  # blank paper below


def test_an_invisible_ocr_layer_over_a_scan_counts_as_text() -> None:
    (page,) = render(scanned_pdf([INVOICE], ocr_layer=True))
    assert page.text is not None
    assert [line.text for line in page.text] == INVOICE
    assert page.text[0].box[1] == pytest.approx(line_top(0), abs=0.01)


def test_a_scan_with_a_stamped_line_of_text_is_still_a_picture() -> None:
    (page,) = render(scanned_pdf([INVOICE], stamp="Received 2024-05-02 by the records office"))
    assert page.text is None


def test_no_text_is_read_when_not_asked_for() -> None:
    (page,) = render(text_pdf([INVOICE]), text_layer=False)
    assert page.text is None


def test_a_value_typed_into_a_form_field_is_in_the_text_and_the_picture() -> None:
    (page,) = render(form_pdf("Patient name:", "Ada Lovelace"), max_side=2048)
    assert page.text is not None
    texts = [line.text for line in page.text]
    assert "Patient name:" in texts
    assert "Ada Lovelace" in texts
    value = page.text[texts.index("Ada Lovelace")]
    assert value.box[0] == pytest.approx(242 / 612, abs=0.01)
    assert darkest(page, value.box) < 128


def test_a_page_turned_sideways_gives_boxes_on_the_picture_as_rendered() -> None:
    # /Rotate 90: the page shows landscape, its text running down the right-hand side.
    (page,) = render(rotated_pdf(text_pdf([INVOICE]), 90))
    assert page.image.width > page.image.height
    assert page.text is not None
    assert [line.text for line in page.text] == INVOICE
    x0, y0, x1, y1 = page.text[0].box
    assert x0 > 0.8
    assert y1 - y0 > 3 * (x1 - x0)
    assert darkest(page, page.text[0].box) < 128


def test_text_printed_sideways_is_read_as_whole_lines() -> None:
    # Turned a quarter counterclockwise: each line reads upwards, in a tall narrow box.
    (page,) = render(turned_text_pdf(INVOICE, 90))
    assert page.text is not None
    assert [line.text for line in page.text] == INVOICE
    for line in page.text:
        x0, y0, x1, y1 = line.box
        assert (y1 - y0) * LETTER[1] > 3 * (x1 - x0) * LETTER[0]
        assert darkest(page, line.box) < 128


def test_pages_are_rendered_only_as_they_are_asked_for() -> None:
    # Page 50 cannot be loaded: the first page comes all the same, before it is reached.
    pages = render_pages(damaged_page_pdf(good_pages=49), max_side=512, name=NAME)
    first = next(pages)
    assert first.number == 1
    assert first.text is None  # "Page 1": too little text to be a text layer
    remaining = list(range(2, 50))
    for number in remaining:
        assert next(pages).number == number
    with pytest.raises(CorruptImage) as refused:
        next(pages)
    assert refused.value.message.startswith(f"{NAME} page 50 cannot be rendered")
    assert refused.value.input == NAME


def test_documents_render_correctly_from_many_threads_at_once() -> None:
    documents = {
        n: text_pdf([[f"Document {n} page {p} of the thread test run"] for p in (1, 2, 3)])
        for n in range(6)
    }
    read: dict[int, list[str]] = {}

    def read_document(n: int) -> None:
        pages = render(documents[n], max_side=400)
        read[n] = [page.text[0].text if page.text else "" for page in pages]

    threads = [threading.Thread(target=read_document, args=(n,)) for n in documents]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert read == {
        n: [f"Document {n} page {p} of the thread test run" for p in (1, 2, 3)] for n in documents
    }
