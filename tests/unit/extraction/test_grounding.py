"""Grounding: each value of an answer found where it is printed, on a generated receipt
whose text positions are known, read by the OCR engine we ship; made-up values are not."""

from __future__ import annotations

import io
from collections.abc import Iterator

import pytest
from PIL import Image, ImageDraw

from extraction.contract import PrintedLine
from extraction.grounding import amounts_in, dates_in, ground
from extraction.providers.local import LocalProvider
from tests.sample_images import font

WIDTH, HEIGHT = 900, 700
# (x, y, text): where each line is drawn, in pixels.
RECEIPT = [
    (60, 40, "GREENLEAF MARKET"),
    (60, 90, "12 Harbour Road, Springfield"),
    (60, 170, "Invoice No: INV-20451"),
    (60, 220, "Date: 13/01/2020"),
    (60, 300, "Olive oil 1L"),
    (620, 300, "12.90"),
    (60, 350, "Sourdough bread"),
    (620, 350, "4.50"),
    (60, 450, "TOTAL"),
    (620, 450, "1,017.40"),
    (60, 520, "Cash tendered"),
    (620, 520, "1,020.00"),
]
FONT_SIZE = 30
Box = tuple[float, float, float, float]


def _receipt() -> tuple[bytes, dict[str, Box]]:
    """The PNG and each line's box as fractions of the image."""
    image = Image.new("RGB", (WIDTH, HEIGHT), "white")
    draw = ImageDraw.Draw(image)
    face = font(FONT_SIZE)
    boxes = {}
    for x, y, text in RECEIPT:
        draw.text((x, y), text, fill="black", font=face)
        left, top, right, bottom = draw.textbbox((x, y), text, font=face)
        boxes[text] = (left / WIDTH, top / HEIGHT, right / WIDTH, bottom / HEIGHT)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue(), boxes


@pytest.fixture(scope="module")
def printed() -> Iterator[tuple[tuple[PrintedLine, ...], dict[str, Box]]]:
    data, boxes = _receipt()
    reader = LocalProvider(threads=1)
    yield reader.read(data), boxes
    reader.close()


def _inside(box: list[float], drawn: Box, slack: float = 0.02) -> bool:
    """The evidence box lies within the drawn text's box (give or take OCR's margins)."""
    return (
        box[0] >= drawn[0] - slack
        and box[1] >= drawn[1] - slack
        and box[2] <= drawn[2] + slack
        and box[3] <= drawn[3] + slack
    )


ANSWER = {
    "store": "Greenleaf Market",
    "address": "12 Harbour Road, Springfield",
    "invoice_no": "INV-20451",
    "date": "2020-01-13",
    "items": [{"name": "Olive oil 1L", "total": 12.9}, {"name": "Sourdough Bread", "total": "4.5"}],
    "total": "1017.40",
}


def test_every_true_value_is_grounded_in_the_box_where_it_is_printed(
    printed: tuple[tuple[PrintedLine, ...], dict[str, Box]],
) -> None:
    lines, boxes = printed
    evidence = ground(ANSWER, lines)
    expected = {
        "store": "GREENLEAF MARKET",
        "address": "12 Harbour Road, Springfield",
        "invoice_no": "Invoice No: INV-20451",
        "date": "Date: 13/01/2020",
        "items[0].name": "Olive oil 1L",
        "items[0].total": "12.90",
        "items[1].name": "Sourdough bread",
        "items[1].total": "4.50",
        "total": "1,017.40",
    }
    assert sorted(evidence) == sorted(expected)
    for path, drawn_text in expected.items():
        found = evidence[path]
        assert found["grounded"], (path, found)
        assert found["match"] >= 0.8
        assert 0 < found["ocr_confidence"] <= 1
        assert _inside(found["bbox"], boxes[drawn_text]), (path, found, boxes[drawn_text])
    # A value inside a longer line: the box narrows to it, the text is the printed run.
    assert evidence["invoice_no"]["text"] == "INV-20451"
    assert evidence["invoice_no"]["bbox"][0] > boxes["Invoice No: INV-20451"][0] + 0.1


def test_values_that_are_not_printed_are_not_grounded(
    printed: tuple[tuple[PrintedLine, ...], dict[str, Box]],
) -> None:
    lines, _ = printed
    made_up = {
        "store": "Bluewater Foods",  # another shop
        "date": "2020-01-16",  # three days later
        "total": "1119.14",  # ten per cent more
        "invoice_no": "INV-20415",  # two digits swapped
    }
    evidence = ground(made_up, lines)
    assert {path: found["grounded"] for path, found in evidence.items()} == {
        "store": False, "date": False, "total": False, "invoice_no": False,
    }  # fmt: skip


def test_nulls_and_empty_values_have_no_evidence(
    printed: tuple[tuple[PrintedLine, ...], dict[str, Box]],
) -> None:
    lines, _ = printed
    assert ground({"store": None, "note": "", "items": []}, lines) == {}


@pytest.mark.parametrize(
    ("printed_text", "value"),
    [("1.234,50", "1234.5"), ("RM 1 234,50", "1234.50"), ("$1,234.50", "1234.5"), ("1234", "1234")],
)
def test_amounts_match_in_any_layout(printed_text: str, value: str) -> None:
    assert amounts_in(value) <= amounts_in(printed_text)


@pytest.mark.parametrize(
    "printed_text",
    ["13/01/2020", "2020-01-13", "13.01.20", "Jan 13, 2020", "13 janvier 2020", "20200113"],
)
def test_dates_match_in_any_layout(printed_text: str) -> None:
    assert dates_in("2020-01-13") <= dates_in(printed_text)
